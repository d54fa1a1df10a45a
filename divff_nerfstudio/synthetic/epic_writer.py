"""Write a generated kitchen clip as an EPIC-Diff scene, plus ground truth EPIC-Diff does not have.

EPIC-Diff layout (what the dataparser reads): meta.json, frames/, annotations/ (dynamic masks of
the test frames), object_annotations/te.json (VIA-2 polygons with object labels) and
affordance_annotations/aff_annotations.pkl (DIV-FF's affordance masks: where an action happens;
here "carrying", the object a hand holds). Our extras live in gt/: per test frame an npz with
z-depth and a label map (0 static, 1..K object ids, 255 actor), per frame the label map alone
(gt/labels/<frame>.png: what the oracle language teacher reads), and scene.json with the objects,
their words and where they are at every frame.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Literal

import cv2
import numpy as np
from PIL import Image
from rich.progress import Progress

from dataparsers.annotations import AFFORDANCE_FILE, NARRATION_PREFIX
from dataparsers.epic_diff_scene import staged_folder
from divff_nerfstudio.synthetic.camera_effects import CameraEffects, CameraResponse
from divff_nerfstudio.synthetic.gt_layout import label_map_path
from divff_nerfstudio.synthetic.raycast import Intrinsics, label_map, render_frame
from divff_nerfstudio.synthetic.scene import ClipMotion, KitchenClip
from divff_nerfstudio.synthetic.surfaces import ACTOR_ID

AFFORDANCES = ("carrying",)
"""Affordance queries of generated scenes, in the order of the masks' last axis."""


@dataclass
class SceneConfig:
    """What scene to generate. Every field is a command-line flag of divff-make-scene."""

    seed: int = 0
    """Random seed: the same seed gives the same scene, byte for byte."""
    frames: int = 120
    """Number of frames written (sparse video frames)."""
    width: int = 228
    """Frame width in pixels (EPIC-Diff: 228)."""
    height: int = 128
    """Frame height in pixels (EPIC-Diff: 128)."""
    objects: int = 4
    """Number of objects that get carried around (1-8)."""
    hfov_deg: float = 75.0
    """Horizontal field of view of the head-mounted camera."""
    pixel_aspect: float = 1.02
    """fy / fx: slightly non-square pixels, so code that assumes fx == fy is caught."""
    supersample: int = 2
    """Rays per pixel along each axis for colour (anti-aliasing)."""
    first_id: int = 100
    """Frame id of the first frame (ids are sparse, like EPIC-Diff's video frame numbers)."""
    id_stride: int = 4
    """Video frames between two written frames."""
    image_format: Literal["bmp", "png", "jpg"] = "bmp"
    """Image file format of frames/ and annotations/."""
    texture_detail: float = 0.0
    """Contrast of fine speckle on static surfaces (0: none); 0.5 lets COLMAP pose the frames (own-video tests)."""
    motion: ClipMotion = field(default_factory=ClipMotion)
    """Harder motion: objects held for long, hands passing in front of objects, printed objects."""
    camera: CameraEffects = field(default_factory=CameraEffects)
    """What the camera does to the frames: exposure and white-balance drift, motion blur, noise, JPEG."""

    @classmethod
    def hard(cls, **overrides) -> "SceneConfig":
        """The benchmark's harder scene: what real head-mounted footage has and the clean scene lacks
        (an object held for a fifth of the clip, hands passing in front of objects, printed objects,
        exposure and white-balance drift, motion blur, noise, JPEG frames)."""
        return cls(
            texture_detail=0.3,
            motion=ClipMotion(long_carry=0.2, hand_passes=3, object_texture=0.6),
            camera=CameraEffects(exposure_drift=0.2, white_balance_drift=0.05, motion_blur=0.5, noise=0.015, jpeg_quality=85),
            **overrides,
        )

    def frame_name(self, frame_id: int) -> str:
        suffix = "jpg" if self.camera.jpeg_quality > 0 else self.image_format
        return f"IMG_{frame_id:010d}.{suffix}"

    def intrinsics(self) -> Intrinsics:
        fx = self.width / 2 / np.tan(np.radians(self.hfov_deg) / 2)
        return Intrinsics(fx, fx * self.pixel_aspect, self.width / 2, self.height / 2, self.width, self.height)


def split_indices(n: int) -> Dict[str, List[int]]:
    """Held-out frames spread over the clip: every 10th frame for test, every 10th (offset) for val."""
    test = [k for k in range(n) if k % 10 == 4]
    val = [k for k in range(n) if k % 10 == 9]
    train = [k for k in range(n) if k % 10 not in (4, 9)]
    return {"train": train, "val": val, "test": test}


def mask_polygons(mask: np.ndarray) -> List[np.ndarray]:
    """Outline polygons (M, 2) in pixel coordinates of every connected region of a binary mask."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c[:, 0, :] for c in contours if len(c) >= 3]


def write_scene(out: Path, cfg: SceneConfig, overwrite: bool = False) -> Path:
    """Render the clip and write it. Built in a temporary folder and moved into place at the end, so
    an interrupted run never leaves a half-written scene behind."""
    out = Path(out)
    if cfg.frames < 10:
        raise ValueError(f"--frames must be at least 10 to have test and val frames, got {cfg.frames}")
    clip = KitchenClip(cfg.seed, cfg.frames, cfg.objects, texture_detail=cfg.texture_detail, motion=cfg.motion)
    camera = CameraResponse(cfg.camera, cfg.frames, cfg.seed)
    intr = cfg.intrinsics()
    splits = split_indices(cfg.frames)
    ids = [cfg.first_id + k * cfg.id_stride for k in range(cfg.frames)]
    names = [cfg.frame_name(frame_id) for frame_id in ids]
    test = set(splits["test"])

    with staged_folder(out, overwrite) as tmp:
        for sub in ("frames", "annotations", "object_annotations", "affordance_annotations", "gt", "gt/labels"):
            (tmp / sub).mkdir()
        nears: Dict[str, float] = {}
        fars: Dict[str, float] = {}
        via: Dict[str, dict] = {}
        affordances: Dict[str, np.ndarray] = {}
        with Progress() as progress:
            task = progress.add_task(f"rendering {out.name}", total=cfg.frames)
            for k, (frame_id, name) in enumerate(zip(ids, names)):
                render = render_frame(clip, k, intr, cfg.supersample, labels=k in test)
                rgb = render.rgb
                if cfg.camera.any_colour_effect():
                    rgb = camera.apply(rgb, k, render.pixel_depth(), render.actor_coverage, intr.K, clip.c2w)
                rgb8 = np.round(rgb * 255).astype(np.uint8)
                options = {"quality": cfg.camera.jpeg_quality} if cfg.camera.jpeg_quality > 0 else {}
                Image.fromarray(rgb8).save(tmp / "frames" / name, **options)
                nears[str(frame_id)] = float(np.quantile(render.depth, 0.001))
                fars[str(frame_id)] = float(np.quantile(render.depth, 0.999))
                labels = render.labels if k in test else label_map(clip, k, intr)
                Image.fromarray(labels).save(label_map_path(tmp, Path(name).stem))
                if k in test:
                    _write_test_frame(tmp, name, render.labels, render.depth, clip, via)
                    carried = np.isin(render.labels, clip.carried(k))
                    affordances[name] = carried[..., None]  # (H, W, Q) with Q = len(AFFORDANCES)
                progress.advance(task)
        (tmp / "object_annotations" / "te.json").write_text(json.dumps(via, indent=1))
        queries = [NARRATION_PREFIX + q for q in AFFORDANCES]
        with open(tmp / "affordance_annotations" / AFFORDANCE_FILE, "wb") as f:
            pickle.dump({"text_queries": queries, "images": affordances}, f)
        meta = {
            "ids_all": ids,
            "ids_train": [ids[k] for k in splits["train"]],
            "ids_val": [ids[k] for k in splits["val"]],
            "ids_test": [ids[k] for k in splits["test"]],
            "images": {str(i): n for i, n in zip(ids, names)},
            "poses": {str(i): np.round(clip.c2w[k], 8).tolist() for k, i in enumerate(ids)},
            "nears": nears,
            "fars": fars,
            "intrinsics": intr.K.tolist(),
            "image_w": cfg.width,
            "image_h": cfg.height,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        (tmp / "gt" / "scene.json").write_text(json.dumps(_scene_truth(clip, cfg, ids), indent=1))
    return out


def _write_test_frame(root: Path, name: str, labels: np.ndarray, depth: np.ndarray, clip: KitchenClip, via: dict) -> None:
    dynamic = labels > 0
    lossless = name if Path(name).suffix != ".jpg" else f"{Path(name).stem}.png"  # masks are never JPEG'd
    Image.fromarray((dynamic * 255).astype(np.uint8)).save(root / "annotations" / lossless)
    np.savez_compressed(root / "gt" / f"{Path(name).stem}.npz", depth=depth.astype(np.float32), labels=labels)
    regions = []
    for obj in clip.objects:
        for poly in mask_polygons(labels == obj.object_id):
            regions.append(
                {
                    "shape_attributes": {
                        "name": "polygon",
                        "all_points_x": poly[:, 0].tolist(),
                        "all_points_y": poly[:, 1].tolist(),
                    },
                    "region_attributes": {"label": obj.label},
                }
            )
    size = (root / "frames" / name).stat().st_size
    via[f"{name}{size}"] = {"filename": name, "size": size, "regions": regions, "file_attributes": {}}


def _scene_truth(clip: KitchenClip, cfg: SceneConfig, ids: List[int]) -> dict:
    """Everything a test may want to check against: objects with their words and per-frame placement."""
    return {
        "config": asdict(cfg),
        "actor_label": ACTOR_ID,
        "objects": [
            {
                "id": obj.object_id,
                "label": obj.label,
                "colour": obj.colour,
                "shape": obj.shape,
                "size": obj.size,
                "half_height": obj.half_height,
                "bound_radius": obj.bound_radius,
                "positions": {str(i): np.round(obj.positions[k], 6).tolist() for k, i in enumerate(ids)},
                "yaws": {str(i): round(float(obj.yaws[k]), 6) for k, i in enumerate(ids)},
            }
            for obj in clip.objects
        ],
        "events": [
            {**asdict(e), "frames": [ids[int(round(f * (cfg.frames - 1)))] for f in (e.start, e.pick, e.place, e.end)]}
            for e in clip.events
        ],
    }
