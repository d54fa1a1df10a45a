"""NeuralDiff's summary of a run: the video split into its streams, and the scene from one
viewpoint as time runs.

- `summary.mp4` (+ `frames/<frame id>.png`): per frame of the video, side by side, the ground truth
  and the renders of that frame's camera at that frame's time (default panels: GT | composite |
  static | objects | actor);
- `fixed_viewpoint.mp4` (+ `fixed_viewpoint/<frame id>.png`): the camera of one frame held still
  while time runs over every frame (the same panels without GT, which exists only for the frame's
  own camera).
Panels are model outputs (any `--rendered-output-names` of ns-render) or `gt`; single-channel
outputs get ns-render's colour maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple

import numpy as np
import torch
from jaxtyping import UInt8
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.pipelines.base_pipeline import Pipeline
from PIL import Image
from rich.progress import Progress

from divff_nerfstudio.data.frame_time import VideoFrames, fixed_viewpoint
from divff_nerfstudio.eval.images import output_image, save_png, side_by_side, write_video


@dataclass
class SummaryOptions:
    """What the summary videos show (flags of divff-summary)."""

    split: Literal["all", "train", "val", "test"] = "all"
    """Frames of the per-frame video: every frame of the video, or one split's."""
    panels: Tuple[str, ...] = ("gt", "rgb", "rgb_static", "rgb_objects", "rgb_actor")
    """Panels from left to right: `gt` or model outputs (dynamic_mask, depth, depth_static, beta, ...)."""
    viewpoint_frame_id: Optional[int] = None
    """Camera of the fixed-viewpoint video (an id of meta.json's ids_all); default: the middle frame."""
    fixed_viewpoint: bool = True
    """Also render the fixed-viewpoint video."""
    fps: int = 8
    """Frames per second of both videos."""
    downscale_factor: float = 1.0
    """Render (and show the ground truth) at 1/downscale_factor of the frame size."""


def write_summary(pipeline: Pipeline, out: Path, options: SummaryOptions) -> Dict[str, int]:
    """Render and write the videos and their frames; returns {video file name: frame count}."""
    frames = VideoFrames.from_pipeline(pipeline)
    if options.split == "all":
        ids = frames.ids
    else:
        split_ids = set(pipeline.datamanager.dataparser.scene.splits[options.split])
        ids = [i for i in frames.ids if i in split_ids]
    if not ids:
        raise ValueError(f"{frames.meta_path}: the {options.split} split has no frames")
    positions = [frames.position(i) for i in ids]
    cameras = frames.cameras[torch.tensor(positions)]
    cameras.rescale_output_resolution(1.0 / options.downscale_factor)
    size = (int(cameras.width[0, 0]), int(cameras.height[0, 0]))
    images = [_load_image(frames.image_filenames[p], size) for p in positions]
    written = {"summary.mp4": _render_video(pipeline, cameras, ids, images, options.panels, out / "frames", out / "summary.mp4", options.fps)}
    if options.fixed_viewpoint:
        viewpoint = options.viewpoint_frame_id if options.viewpoint_frame_id is not None else frames.ids[len(frames.ids) // 2]
        panels = tuple(p for p in options.panels if p != "gt")
        still = fixed_viewpoint(frames, viewpoint)
        still.rescale_output_resolution(1.0 / options.downscale_factor)
        written["fixed_viewpoint.mp4"] = _render_video(
            pipeline, still, frames.ids, None, panels, out / "fixed_viewpoint", out / "fixed_viewpoint.mp4", options.fps
        )
    (out / "panels.txt").write_text(" | ".join(options.panels) + "\n")
    return written


def _load_image(path: Path, size: Tuple[int, int]) -> np.ndarray:
    """A frame as float RGB at (width, height)."""
    image = Image.open(path).convert("RGB")
    if image.size != size:
        image = image.resize(size, Image.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255.0


def _render_video(
    pipeline: Pipeline,
    cameras: Cameras,
    ids: List[int],
    images: Optional[List[np.ndarray]],
    panels: Tuple[str, ...],
    folder: Path,
    video: Path,
    fps: int,
) -> int:
    """One row of panels per camera, saved as <folder>/<frame id>.png, and the video of them."""
    model = pipeline.model
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    rows: List[UInt8[np.ndarray, "h w 3"]] = []
    with Progress() as progress:
        task = progress.add_task(video.stem, total=len(ids))
        for k, frame_id in enumerate(ids):
            outputs = model.get_outputs_for_camera(cameras[k : k + 1].to(model.device))
            rows.append(side_by_side([images[k] if p == "gt" and images is not None else output_image(outputs, p) for p in panels]))
            save_png(folder / f"{frame_id:06d}.png", rows[-1])
            progress.advance(task)
    write_video(video, rows, fps)
    return len(rows)
