"""Model outputs as pictures: panels side by side, PNGs and mp4s, coloured as ns-render colours them."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch
from jaxtyping import Float, UInt8
from nerfstudio.utils import colormaps
from PIL import Image


def output_image(outputs: Dict[str, torch.Tensor], name: str, colormap: str = "default") -> Float[np.ndarray, "h w 3"]:
    """An output as RGB in [0, 1]: colour outputs as they are, depths with ns-render's depth map,
    single-channel outputs through `colormap` (default: turbo; gray for masks)."""
    if name not in outputs:
        raise ValueError(f"{name!r} is not a model output; choose one of: {', '.join(sorted(outputs))}")
    image = outputs[name]
    if "depth" in name:
        image = colormaps.apply_depth_colormap(image, accumulation=outputs["accumulation"])
    else:
        image = colormaps.apply_colormap(image, colormaps.ColormapOptions(colormap=colormap))
    return image.detach().cpu().float().clamp(0, 1).numpy()


def side_by_side(panels: Sequence[Float[np.ndarray, "h w 3"]]) -> UInt8[np.ndarray, "h W 3"]:
    """Float panels of one height, left to right, as 8-bit RGB."""
    return as_uint8(np.concatenate(panels, axis=1))


def as_uint8(image: Float[np.ndarray, "h w 3"]) -> UInt8[np.ndarray, "h w 3"]:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def save_png(path: Path, image: np.ndarray) -> None:
    """A float [0, 1] or uint8 RGB image as PNG (the folder is made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image if image.dtype == np.uint8 else as_uint8(image)).save(path)


class VideoStream:
    """An mp4 written frame by frame as the frames come (uint8 RGB, cropped to even sizes, which
    h264 wants), so a long evaluation never holds all of them."""

    def __init__(self, path: Path, fps: int):
        self.path, self.fps = path, fps
        self._writer = None

    def add(self, frame: UInt8[np.ndarray, "h w 3"]) -> None:
        frame = frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]
        if self._writer is None:
            import mediapy

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = mediapy.VideoWriter(self.path, shape=frame.shape[:2], fps=self.fps)
            self._writer.__enter__()
        self._writer.add_image(frame)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.__exit__(None, None, None)
            self._writer = None


def write_video(path: Path, frames: Sequence[UInt8[np.ndarray, "h w 3"]], fps: int) -> None:
    """An mp4 of uint8 RGB frames."""
    stream = VideoStream(path, fps)
    for frame in frames:
        stream.add(frame)
    stream.close()
