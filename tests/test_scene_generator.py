"""The synthetic scene generator: EPIC-Diff layout, determinism and ground-truth consistency."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataparsers.annotations import LabelledPolygon, _parse_via2, load_mask, rasterize
from divff_nerfstudio.synthetic import SceneConfig, write_scene
from divff_nerfstudio.synthetic.scene import COLOURS, SHAPES, KitchenClip
from divff_nerfstudio.synthetic.surfaces import ACTOR_ID

TINY = SceneConfig(seed=11, frames=10, width=64, height=40, objects=2, supersample=1)


def _files(root: Path):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_vocabulary_is_rich_enough():
    assert len(COLOURS) >= 8 and len(SHAPES) >= 6


def test_same_seed_same_bytes_other_seed_other_scene(tmp_path):
    a = _files(write_scene(tmp_path / "a", TINY))
    b = _files(write_scene(tmp_path / "b", TINY))
    assert a == b
    other = SceneConfig(**{**TINY.__dict__, "seed": 12})
    c = _files(write_scene(tmp_path / "c", other))
    assert a.keys() == c.keys()
    assert a[Path("meta.json")] != c[Path("meta.json")]


def test_refuses_to_overwrite_without_flag(tmp_path):
    write_scene(tmp_path / "s", TINY)
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_scene(tmp_path / "s", TINY)
    write_scene(tmp_path / "s", TINY, overwrite=True)


def test_layout_and_splits(small_scene):
    meta = json.loads((small_scene / "meta.json").read_text())
    ids = meta["ids_all"]
    assert len(ids) == 20 and ids == sorted(ids) and np.all(np.diff(ids) == 4)  # sparse ids
    tr, vl, te = (set(meta[f"ids_{s}"]) for s in ("train", "val", "test"))
    assert tr | vl | te == set(ids) and not (tr & vl) and not (tr & te) and not (vl & te)
    assert len(te) == 2 and len(vl) == 2
    for key in ("images", "poses", "nears", "fars"):
        assert sorted(int(k) for k in meta[key]) == ids
    for i in ids:
        assert (small_scene / "frames" / meta["images"][str(i)]).is_file()
        assert 0 < meta["nears"][str(i)] < meta["fars"][str(i)]
    annotated = sorted(p.name for p in (small_scene / "annotations").iterdir())
    assert annotated == sorted(meta["images"][str(i)] for i in te)


def test_masks_mark_objects_and_actor(small_scene):
    meta = json.loads((small_scene / "meta.json").read_text())
    for i in meta["ids_test"]:
        name = meta["images"][str(i)]
        labels = np.load(small_scene / "gt" / f"{Path(name).stem}.npz")["labels"]
        mask = load_mask(small_scene / "annotations" / name, (96, 64))
        np.testing.assert_array_equal(mask, labels > 0)
        assert (labels == ACTOR_ID).any(), "the hands should be in view"


def test_label_polygons_cover_the_objects(small_scene):
    meta = json.loads((small_scene / "meta.json").read_text())
    truth = json.loads((small_scene / "gt" / "scene.json").read_text())
    names = {o["id"]: o["label"] for o in truth["objects"]}
    via = _parse_via2(json.loads((small_scene / "object_annotations" / "te.json").read_text()), Path("te.json"))
    polygons = {Path(f).name: p for f, p in via}
    seen = 0
    for i in meta["ids_test"]:
        name = meta["images"][str(i)]
        labels = np.load(small_scene / "gt" / f"{Path(name).stem}.npz")["labels"]
        masks = rasterize(polygons[name], (96, 64))
        for obj_id, label in names.items():
            truth_mask = labels == obj_id
            if truth_mask.sum() < 10:
                continue
            seen += 1
            iou = (masks[label] & truth_mask).sum() / (masks[label] | truth_mask).sum()
            assert iou > 0.75, (name, label, iou)
    assert seen > 0


def test_reprojection_of_object_centres(small_scene):
    """A known 3D point (an object's centre) projects through K and the pose onto that object, at
    the depth the ground-truth depth map says (the visible surface is in front of the centre)."""
    meta = json.loads((small_scene / "meta.json").read_text())
    truth = json.loads((small_scene / "gt" / "scene.json").read_text())
    K = np.array(meta["intrinsics"])
    checked = 0
    for i in meta["ids_test"]:
        name = meta["images"][str(i)]
        gt = np.load(small_scene / "gt" / f"{Path(name).stem}.npz")
        c2w = np.array(meta["poses"][str(i)])
        for obj in truth["objects"]:
            centre = np.array(obj["positions"][str(i)])
            cam = (centre - c2w[:, 3]) @ c2w[:, :3]  # OpenGL camera frame
            if cam[2] >= 0:
                continue
            u = K[0, 0] * cam[0] / -cam[2] + K[0, 2]
            v = -K[1, 1] * cam[1] / -cam[2] + K[1, 2]
            col, row = int(np.floor(u)), int(np.floor(v))
            if not (0 <= col < 96 and 0 <= row < 64) or gt["labels"][row, col] != obj["id"]:
                continue  # out of view or behind a hand
            depth = gt["depth"][row, col]
            assert -cam[2] - obj["bound_radius"] - 1e-3 <= depth <= -cam[2] + 0.02, (name, obj["label"])
            checked += 1
    assert checked > 0


def test_objects_rest_then_move_once():
    clip = KitchenClip(seed=5, num_frames=60, num_objects=3)
    for obj in clip.objects:
        steps = np.linalg.norm(np.diff(obj.positions, axis=0), axis=1)
        moving = steps > 1e-9
        assert 0 < moving.mean() < 0.4, "objects rest most of the time"
        assert np.linalg.norm(obj.positions[-1] - obj.positions[0]) > 0.15, "and end up elsewhere"
    assert {e.object_id for e in clip.events} == {o.object_id for o in clip.objects}


def test_frames_are_supersampled_colour(tmp_path):
    scene = write_scene(tmp_path / "s", SceneConfig(seed=2, frames=10, width=48, height=32, supersample=2))
    frame = np.asarray(Image.open(next((scene / "frames").iterdir())))
    assert frame.shape == (32, 48, 3) and frame.dtype == np.uint8
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 100, "textured, not flat colours"


def test_rasterize_unions_polygons_per_label():
    square = np.array([[2, 2], [6, 2], [6, 6], [2, 6]], dtype=float)
    other = square + 10
    masks = rasterize([LabelledPolygon("a", square), LabelledPolygon("a", other)], (20, 20))
    assert masks["a"][4, 4] and masks["a"][14, 14] and not masks["a"][10, 3]
