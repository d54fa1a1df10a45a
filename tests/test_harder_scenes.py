"""The generator's harder scenes: what real head-mounted footage has (held objects, hands in front of
objects, printed objects, exposure and white-balance drift, motion blur, noise, JPEG) while the
ground truth stays exact."""

from dataclasses import replace

import numpy as np
from PIL import Image

from dataparsers.epic_diff_scene import load_scene
from divff_nerfstudio.synthetic import SceneConfig, write_scene
from divff_nerfstudio.synthetic.camera_effects import CameraEffects, CameraResponse
from divff_nerfstudio.synthetic.raycast import render_frame
from divff_nerfstudio.synthetic.scene import ClipMotion, KitchenClip
from divff_nerfstudio.synthetic.surfaces import ACTOR_ID
from divff_nerfstudio.synthetic.truth import SceneTruth

HARD = SceneConfig.hard(seed=4, frames=20, width=96, height=64, objects=3)


def test_camera_effects_change_the_frames_not_the_truth(tmp_path):
    hard = write_scene(tmp_path / "hard", HARD)
    plain = write_scene(tmp_path / "plain", replace(HARD, camera=CameraEffects()))
    scene = load_scene(hard)
    assert all(p.suffix == ".jpg" for p in scene.image_paths.values()), "hard frames are JPEG"
    assert sorted(p.stem for p in (hard / "annotations").iterdir()) == sorted(p.stem for p in (plain / "annotations").iterdir())
    assert all(p.suffix == ".png" for p in (hard / "annotations").iterdir()), "masks stay lossless"
    for npz in (plain / "gt").glob("*.npz"):
        a, b = np.load(npz), np.load(hard / "gt" / npz.name)
        assert np.array_equal(a["labels"], b["labels"]) and np.array_equal(a["depth"], b["depth"])
    gains = []
    for frame_id, path in scene.image_paths.items():
        ours = np.asarray(Image.open(path), dtype=float)
        clean = np.asarray(Image.open(plain / "frames" / f"{path.stem}.{HARD.image_format}"), dtype=float)
        assert ours.shape == clean.shape and np.abs(ours - clean).mean() > 1.0, frame_id
        gains.append(ours.mean() / clean.mean())
    assert max(gains) / min(gains) > 1.1, f"exposure should drift over the clip: {gains}"


def test_motion_blur_smears_the_room_but_not_the_hands():
    clip = KitchenClip(3, 30, 2)
    cfg = SceneConfig(seed=3, frames=30, width=96, height=64)
    effects = CameraEffects(motion_blur=1.0)
    response = CameraResponse(effects, 30, 3)
    render = render_frame(clip, 15, cfg.intrinsics(), 1, labels=True)
    blurred = response.apply(render.rgb, 15, render.pixel_depth(), render.actor_coverage, cfg.intrinsics().K, clip.c2w)
    change = np.abs(blurred - render.rgb).mean(axis=-1)
    actor = render.labels == ACTOR_ID
    assert actor.any() and (~actor).any()
    assert change[actor].mean() < 1e-6, "the hands move with the camera: no camera-motion blur"
    assert change[~actor].mean() > 1e-3


def test_a_held_object_moves_with_the_head_and_the_truth_rebuilds_it(tmp_path):
    motion = ClipMotion(long_carry=0.3)
    clip = KitchenClip(6, 60, 3, motion=motion)
    held = [e for e in clip.events if e.held]
    assert len(held) == 1
    event = held[0]
    obj = clip.objects[event.object_id - 1]
    hold = (clip.s > event.pick + 0.2 * (event.place - event.pick)) & (clip.s < event.place - 0.2 * (event.place - event.pick))
    assert hold.sum() >= 0.3 * 60 * 0.5, "held for many frames"
    in_camera = np.einsum("nji,nj->ni", clip.c2w[:, :, :3], obj.positions - clip.c2w[:, :, 3])
    world_path = np.linalg.norm(np.diff(obj.positions[hold], axis=0), axis=1).sum()
    camera_path = np.linalg.norm(np.diff(in_camera[hold], axis=0), axis=1).sum()
    assert camera_path < 1e-6 < world_path, "still in the camera frame, moving in the world"
    assert set(clip.carried(int(np.flatnonzero(hold)[0]))) == {obj.object_id}
    scene = write_scene(tmp_path / "s", SceneConfig(seed=6, frames=20, width=48, height=32, objects=3, motion=motion))
    SceneTruth(scene)  # raises if the ground truth no longer rebuilds the objects' positions


def test_hands_pass_in_front_of_objects():
    cfg = SceneConfig(seed=8, frames=40, width=96, height=64, objects=3)
    calm, busy = KitchenClip(8, 40, 3), KitchenClip(8, 40, 3, motion=ClipMotion(hand_passes=3))
    assert all(np.allclose(a.positions, b.positions) for a, b in zip(calm.objects, busy.objects)), "passes move no object"
    occluded = 0
    for frame in range(40):
        a = render_frame(calm, frame, cfg.intrinsics(), 1, labels=True).labels
        b = render_frame(busy, frame, cfg.intrinsics(), 1, labels=True).labels
        occluded += int((((a > 0) & (a != ACTOR_ID)) & (b == ACTOR_ID)).sum())
    assert occluded > 20, "a passing hand should cover object pixels"


def test_printed_objects_are_not_one_colour():
    cfg = SceneConfig(seed=2, frames=10, width=128, height=96, objects=4)
    plain, printed = KitchenClip(2, 10, 4), KitchenClip(2, 10, 4, motion=ClipMotion(object_texture=0.7))
    a = render_frame(plain, 0, cfg.intrinsics(), 1, labels=True)
    b = render_frame(printed, 0, cfg.intrinsics(), 1, labels=True)
    assert np.array_equal(a.labels, b.labels)
    spread = [b.rgb[b.labels == o.object_id].std(axis=0).mean() - a.rgb[a.labels == o.object_id].std(axis=0).mean()
              for o in printed.objects if (b.labels == o.object_id).sum() > 20]  # fmt: skip
    assert spread and max(spread) > 0.05, spread
