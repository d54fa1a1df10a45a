"""The epic-diff dataparser: round trip on generated scenes and a clear error for each bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dataparsers.annotations import load_affordances, load_mask, load_object_labels
from dataparsers.epic_diff import EpicDiffDataParserConfig
from dataparsers.epic_diff_scene import EpicDiffFormatError, load_scene


def parse(scene: Path, split: str = "train"):
    return EpicDiffDataParserConfig(data=scene).setup().get_dataparser_outputs(split)


def read_meta(scene: Path) -> dict:
    return json.loads((scene / "meta.json").read_text())


def write_meta(scene: Path, meta: dict) -> None:
    (scene / "meta.json").write_text(json.dumps(meta))


# ------------------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_splits_ids_and_dense_index(small_scene, split):
    meta = read_meta(small_scene)
    out = parse(small_scene, split)
    ids = meta[f"ids_{split}"]
    assert out.metadata["frame_ids"] == ids
    assert [p.name for p in out.image_filenames] == [meta["images"][str(i)] for i in ids]
    dense = [meta["ids_all"].index(i) for i in ids]
    assert out.metadata["frame_index"].tolist() == dense
    assert out.cameras.metadata["frame_index"][:, 0].tolist() == dense
    assert torch.allclose(out.cameras.times[:, 0], torch.tensor(dense) / (len(meta["ids_all"]) - 1))
    assert out.metadata["num_frames"] == 20


def test_poses_map_back_to_the_original_frame(small_scene):
    meta = read_meta(small_scene)
    out = parse(small_scene, "train")
    T = out.dataparser_transform.double()
    s = out.dataparser_scale
    c2w = out.cameras.camera_to_worlds.double()
    rot = T[:, :3].T @ c2w[:, :, :3]
    pos = (c2w[:, :, 3] / s - T[:, 3]) @ T[:, :3]
    for k, i in enumerate(meta["ids_train"]):
        original = torch.tensor(meta["poses"][str(i)], dtype=torch.float64)
        assert torch.allclose(rot[k], original[:, :3], atol=1e-5)
        assert torch.allclose(pos[k], original[:, 3], atol=1e-5)


def test_scene_box_holds_every_camera_and_near_far_scale(small_scene):
    meta = read_meta(small_scene)
    out = parse(small_scene, "train")
    aabb = out.scene_box.aabb
    centres = out.cameras.camera_to_worlds[:, :, 3]
    assert (centres >= aabb[0]).all() and (centres <= aabb[1]).all()
    assert torch.allclose(aabb.abs().max(), torch.tensor(1.0))
    nears = torch.tensor([meta["nears"][str(i)] for i in meta["ids_train"]])
    assert torch.allclose(out.metadata["nears"], nears * out.dataparser_scale)


def test_intrinsics_as_given_and_scaled_to_real_frame_size(scene_copy):
    K = np.array(read_meta(scene_copy)["intrinsics"])
    cams = parse(scene_copy).cameras
    assert cams.fx[0, 0].item() == pytest.approx(K[0, 0]) and cams.fy[0, 0].item() == pytest.approx(K[1, 1])
    assert cams.fx[0, 0].item() != pytest.approx(cams.fy[0, 0].item()), "fx and fy stay separate"
    assert (cams.width[0, 0].item(), cams.height[0, 0].item()) == (96, 64)
    meta = read_meta(scene_copy)
    meta["image_w"], meta["image_h"] = 192, 128  # K made for frames twice as large
    write_meta(scene_copy, meta)
    cams = parse(scene_copy).cameras
    assert cams.fx[0, 0].item() == pytest.approx(K[0, 0] / 2) and cams.cy[0, 0].item() == pytest.approx(K[1, 2] / 2)
    del meta["image_w"], meta["image_h"]  # the original EPIC-Diff files have no image size
    write_meta(scene_copy, meta)
    assert parse(scene_copy).cameras.cx[0, 0].item() == pytest.approx(K[0, 2])


def test_masks_and_labels_exposed_for_test_frames(small_scene):
    out = parse(small_scene, "test")
    truth = json.loads((small_scene / "gt" / "scene.json").read_text())
    words = {o["label"] for o in truth["objects"]}
    for path, polygons in zip(out.metadata["dynamic_mask_filenames"], out.metadata["object_labels"]):
        assert path is not None and load_mask(path, (96, 64)).any()
        assert polygons and {p.label for p in polygons} <= words
    train = parse(small_scene, "train")
    assert all(p is None for p in train.metadata["dynamic_mask_filenames"])


def test_mask_bit_depths_read_as_bool(tmp_path):
    one_bit = Image.new("1", (8, 4), 0)
    one_bit.putpixel((2, 1), 1)
    one_bit.save(tmp_path / "a.png")
    Image.fromarray(np.where(np.arange(32).reshape(4, 8) == 10, 255, 0).astype(np.uint8)).save(tmp_path / "b.bmp")
    a, b = load_mask(tmp_path / "a.png", (8, 4)), load_mask(tmp_path / "b.bmp", (8, 4))
    assert a.dtype == bool and a.sum() == 1 and a[1, 2]
    assert b.dtype == bool and b.sum() == 1 and b[1, 2]


def test_via3_labels_under_data_root_are_scaled(scene_copy):
    meta = read_meta(scene_copy)
    frame = meta["images"][str(meta["ids_test"][0])]
    via3 = {
        "project": {},
        "config": {},
        "attribute": {"1": {"aname": "object", "type": 4, "options": {"0": "knife"}}},
        "file": {"1": {"fid": "1", "fname": frame, "type": 2}},
        "view": {"1": {"fid_list": ["1"]}},
        "metadata": {"1_abc": {"vid": "1", "flg": 0, "z": [], "xy": [7, 48, 27, 96, 27, 96, 54], "av": {"1": "0"}}},
    }
    folder = scene_copy.parent / "object_annotations" / scene_copy.name
    folder.mkdir(parents=True)
    (folder / "te.json").write_text(json.dumps(via3))
    labels = load_object_labels(load_scene(scene_copy))
    knives = [p for p in labels[meta["ids_test"][0]] if p.label == "knife"]
    assert len(knives) == 1
    np.testing.assert_allclose(knives[0].points, [[9.6, 6.4], [19.2, 6.4], [19.2, 12.8]])


def test_generated_affordances_mark_the_carried_object(small_scene):
    """The generator's DIV-FF affordance file: 'carrying' is the object a hand holds at that frame."""
    out = parse(small_scene, "test")
    truth = json.loads((small_scene / "gt" / "scene.json").read_text())
    carried_frames = {f for e in truth["events"] for f in meta_ids_between(read_meta(small_scene), *e["frames"][1:3])}
    masks = out.metadata["affordance_masks"]
    assert all(set(m) == {"carrying"} for m in masks), "every test frame is annotated, with the narration prefix removed"
    assert any(m["carrying"].any() for m in masks)
    for frame_id, m in zip(out.metadata["frame_ids"], masks):
        labels = np.load(small_scene / "gt" / f"IMG_{frame_id:010d}.npz")["labels"]
        assert m["carrying"].shape == labels.shape
        assert not m["carrying"].any() or frame_id in carried_frames
        assert not (m["carrying"] & ((labels == 0) | (labels == 255))).any(), "only object pixels"


def meta_ids_between(meta: dict, first: int, last: int) -> list:
    return [i for i in meta["ids_all"] if first <= i <= last]


def test_divff_affordance_file_under_data_root(scene_copy):
    """DIV-FF's layout: <data root>/affordance_annotations/<scene>/aff_annotations.pkl, jpg names,
    masks drawn at another size (resized), 'undefined' queries dropped."""
    import pickle

    meta = read_meta(scene_copy)
    frame = Path(meta["images"][str(meta["ids_test"][0])]).with_suffix(".jpg").name
    masks = np.zeros((32, 48, 2), bool)
    masks[8:16, 12:24, 0] = True
    folder = scene_copy.parent / "affordance_annotations" / scene_copy.name
    folder.mkdir(parents=True)
    with open(folder / "aff_annotations.pkl", "wb") as f:
        pickle.dump({"text_queries": ["#C C cut onion", "undefined"], "images": {frame: masks}}, f)
    got = load_affordances(load_scene(scene_copy))[meta["ids_test"][0]]
    assert set(got) == {"cut onion", "carrying"}
    assert got["cut onion"].shape == (64, 96) and got["cut onion"][16:32, 24:48].all() and got["cut onion"].sum() == 16 * 24


@pytest.mark.parametrize("content", [b"not a pickle", "code", {"text_queries": ["a"], "images": {"x": "y"}}])
def test_bad_affordance_file_is_named_and_runs_nothing(scene_copy, content):
    import pickle

    path = scene_copy / "affordance_annotations" / "aff_annotations.pkl"
    if content == "code":  # a pickle that would call a function when loaded
        content = pickle.dumps(Path)  # any global that is not an array or a container
    elif isinstance(content, dict):
        meta = read_meta(scene_copy)
        content = pickle.dumps({"text_queries": ["a", "b"], "images": {meta["images"][str(meta["ids_test"][0])]: np.zeros((64, 96, 3))}})
    path.write_bytes(content)
    with pytest.raises(EpicDiffFormatError, match="aff_annotations.pkl"):
        load_affordances(load_scene(scene_copy))


def test_val_split_falls_back_to_test_when_empty(scene_copy):
    meta = read_meta(scene_copy)
    meta["ids_train"] += meta["ids_val"]
    meta["ids_val"] = []
    write_meta(scene_copy, meta)
    assert parse(scene_copy, "val").metadata["frame_ids"] == meta["ids_test"]


# ------------------------------------------------------------------------------------- bad input
def expect_error(scene: Path, *fragments: str, split: str = "train"):
    with pytest.raises(EpicDiffFormatError) as info:
        parse(scene, split)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    return info.value


def first_train_id(scene: Path) -> int:
    return read_meta(scene)["ids_train"][0]


def test_missing_meta_json(scene_copy):
    (scene_copy / "meta.json").unlink()
    expect_error(scene_copy, "meta.json", "not found")


def test_meta_json_not_json(scene_copy):
    (scene_copy / "meta.json").write_text("{ids_all: [1,")
    expect_error(scene_copy, "meta.json", "not valid JSON")


@pytest.mark.parametrize("key", ["ids_all", "ids_test", "poses", "intrinsics"])
def test_missing_key(scene_copy, key):
    meta = read_meta(scene_copy)
    del meta[key]
    write_meta(scene_copy, meta)
    expect_error(scene_copy, "meta.json", f"missing key '{key}'")


@pytest.mark.parametrize(
    "key, value, fragment",
    [("nears", [0.1, 0.2], "'nears' must be an object"), ("ids_train", "all", "'ids_train' must be a list"), ("intrinsics", [[1, 0], [0, 1]], "3x3")],
)
def test_mistyped_key(scene_copy, key, value, fragment):
    meta = read_meta(scene_copy)
    meta[key] = value
    write_meta(scene_copy, meta)
    expect_error(scene_copy, "meta.json", fragment)


def test_non_integer_frame_key(scene_copy):
    meta = read_meta(scene_copy)
    meta["fars"]["frame-7"] = 3.0
    write_meta(scene_copy, meta)
    expect_error(scene_copy, "meta.json", "'frame-7'")


@pytest.mark.parametrize("key", ["images", "poses", "nears", "fars"])
def test_id_missing_from_per_frame_dict(scene_copy, key):
    frame_id = first_train_id(scene_copy)
    meta = read_meta(scene_copy)
    del meta[key][str(frame_id)]
    write_meta(scene_copy, meta)
    expect_error(scene_copy, "meta.json", f"frame id {frame_id}", f"missing from '{key}'")


def test_split_id_not_in_ids_all(scene_copy):
    meta = read_meta(scene_copy)
    meta["ids_test"].append(99999)
    write_meta(scene_copy, meta)
    expect_error(scene_copy, "frame id 99999", "'ids_test'")


def test_missing_frame(scene_copy):
    frame_id = first_train_id(scene_copy)
    name = read_meta(scene_copy)["images"][str(frame_id)]
    (scene_copy / "frames" / name).unlink()
    expect_error(scene_copy, name, f"frame id {frame_id}", "missing")


def test_unreadable_frame(scene_copy):
    frame_id = first_train_id(scene_copy)
    name = read_meta(scene_copy)["images"][str(frame_id)]
    (scene_copy / "frames" / name).write_bytes(b"this is not an image")
    expect_error(scene_copy, name, f"frame id {frame_id}", "cannot be read")


def test_frames_of_different_sizes(scene_copy):
    meta = read_meta(scene_copy)
    frame_id = meta["ids_all"][5]
    name = meta["images"][str(frame_id)]
    Image.new("RGB", (50, 30)).save(scene_copy / "frames" / name)
    expect_error(scene_copy, name, f"frame id {frame_id}", "50x30", "one size")


@pytest.mark.parametrize(
    "pose, fragment",
    [([[1, 0, 0], [0, 1, 0], [0, 0, 1]], "3x4"), ([[1, 0, 0, float("nan")], [0, 1, 0, 0], [0, 0, 1, 0]], "NaN"), ([[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], "rotation")],
)
def test_bad_pose(scene_copy, pose, fragment):
    frame_id = first_train_id(scene_copy)
    meta = read_meta(scene_copy)
    meta["poses"][str(frame_id)] = pose
    write_meta(scene_copy, meta)  # json writes NaN as a bare NaN token, which json.loads accepts
    expect_error(scene_copy, "meta.json", f"frame id {frame_id}", fragment)


def test_empty_train_split(scene_copy):
    meta = read_meta(scene_copy)
    meta["ids_train"] = []
    write_meta(scene_copy, meta)
    expect_error(scene_copy, "meta.json", "'ids_train' is empty")


def test_empty_val_and_test(scene_copy):
    meta = read_meta(scene_copy)
    meta["ids_train"] += meta["ids_val"] + meta["ids_test"]
    meta["ids_val"], meta["ids_test"] = [], []
    write_meta(scene_copy, meta)
    parse(scene_copy, "train")  # training data alone is fine
    expect_error(scene_copy, "'ids_val' is empty", split="val")


@pytest.mark.parametrize("near, far, fragment", [(2.0, 1.0, "not smaller than far"), (1.0, 1.0, "not smaller than far"), (-0.1, 1.0, "negative")])
def test_bad_near_far(scene_copy, near, far, fragment):
    frame_id = first_train_id(scene_copy)
    meta = read_meta(scene_copy)
    meta["nears"][str(frame_id)], meta["fars"][str(frame_id)] = near, far
    write_meta(scene_copy, meta)
    expect_error(scene_copy, "meta.json", f"frame id {frame_id}", fragment)


def test_mask_size_differs_from_frame(scene_copy):
    meta = read_meta(scene_copy)
    frame_id = meta["ids_test"][0]
    name = meta["images"][str(frame_id)]
    Image.new("L", (40, 20)).save(scene_copy / "annotations" / name)
    expect_error(scene_copy, name, f"frame id {frame_id}", "mask is 40x20", split="test")


def test_principal_point_outside_frame(scene_copy):
    meta = read_meta(scene_copy)
    meta["intrinsics"][0][2] = 500.0
    del meta["image_w"], meta["image_h"]
    write_meta(scene_copy, meta)
    expect_error(scene_copy, "meta.json", "do not match the 96x64 frames")


def test_errors_never_touch_the_scene(scene_copy):
    before = {p: p.read_bytes() for p in scene_copy.rglob("*") if p.is_file()}
    meta = read_meta(scene_copy)
    meta["ids_train"] = []
    write_meta(scene_copy, meta)
    before[scene_copy / "meta.json"] = (scene_copy / "meta.json").read_bytes()
    expect_error(scene_copy, "'ids_train' is empty")
    assert {p: p.read_bytes() for p in scene_copy.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("problem", ["duplicate id", "missing frame"])
def test_a_100_mb_meta_json_fails_on_its_item(scene_copy, problem):
    """A long video's meta.json (half a million frames, ~100 MB) with one bad item: the error names
    it (checks run once per frame, never once per pair of frames)."""
    meta = read_meta(scene_copy)
    template = meta["ids_all"][0]
    extra = range(10_000_000, 10_500_000)
    meta["ids_all"] += list(extra)
    for key in ("poses", "nears", "fars"):
        meta[key].update({str(i): meta[key][str(template)] for i in extra})
    meta["images"].update({str(i): f"IMG_{i:010d}.jpg" for i in extra})
    if problem == "duplicate id":
        meta["ids_all"].append(10_499_999)
    write_meta(scene_copy, meta)
    assert (scene_copy / "meta.json").stat().st_size > 90e6
    if problem == "duplicate id":
        expect_error(scene_copy, "meta.json", "frame id 10499999", "more than once")
    else:
        expect_error(scene_copy, "IMG_0010000000.jpg", "frame id 10000000", "missing")
