#!/usr/bin/env python
"""Benchmark of the data, not of a model: how much of a test frame its training neighbours explain.

A test frame is never trained on, so a model can only interpolate its moving parts in time from
the training frames around it. Where the hand moves far between two frames, no interpolation
renders it: this prints the PSNR `divff-evaluate` would report for a model whose static part is
perfect and whose moving pixels (the frame's dynamic mask) are the mean of the nearest training
frame before and after (`blend`), or the nearer one alone (`nearest`), over the whole frame and
inside the mask. The neighbours also moved the camera, so this is a yardstick for a model's
dynamic PSNR, not a strict ceiling; frames without a mask are skipped, as evaluation skips them.

Example: python scripts/bench_neighbours.py data/EPIC-Diff/CLEAN_48 data/EPIC-Diff/LANG_73
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image
from rich.table import Table

from dataparsers.annotations import load_mask, mask_path
from dataparsers.epic_diff_scene import EpicDiffFormatError, EpicDiffScene, load_scene
from divff_nerfstudio.eval.evaluation import psnr


@dataclass
class BenchNeighbours:
    scenes: tyro.conf.Positional[Tuple[Path, ...]]
    """EPIC-Diff scene folders (meta.json, frames/, annotations/)."""


def _image(scene: EpicDiffScene, frame_id: int) -> np.ndarray:
    with Image.open(scene.image_paths[frame_id]) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


def _neighbours(scene: EpicDiffScene, frame_id: int) -> Tuple[List[int], int]:
    """The training frames just before and after (one at either end of the video), and the nearer."""
    train = sorted(scene.splits["train"])
    before = [i for i in train if i < frame_id][-1:]
    after = [i for i in train if i > frame_id][:1]
    both = before + after
    if not both:  # only when the test frame is itself the sole training frame (the splits may overlap)
        raise EpicDiffFormatError(scene.meta_path, "a test frame has no training frame to interpolate from", frame_id)
    return both, min(both, key=lambda i: abs(i - frame_id))


def frame_figures(scene: EpicDiffScene, frame_id: int) -> Optional[Dict[str, float]]:
    """PSNR of the two stand-ins, whole frame and inside the mask; None without a (non-empty) mask."""
    path = mask_path(scene, frame_id)
    mask = load_mask(path, scene.image_size, frame_id) if path is not None else None
    if mask is None or not mask.any():
        return None
    truth = _image(scene, frame_id)
    both, nearest = _neighbours(scene, frame_id)
    figures = {}
    for name, stand_in in (("blend", np.mean([_image(scene, i) for i in both], axis=0)), ("nearest", _image(scene, nearest))):
        figures[name] = psnr(np.where(mask[..., None], stand_in, truth), truth)
        figures[f"{name}_masked"] = psnr(stand_in[mask], truth[mask])
    return figures


def scene_figures(scene: EpicDiffScene) -> Dict[str, float]:
    """Mean over the test frames with a mask (as divff-evaluate averages), and their number."""
    frames = [f for f in (frame_figures(scene, i) for i in scene.splits["test"]) if f is not None]
    keys = ("blend", "nearest", "blend_masked", "nearest_masked")
    return {k: float(np.mean([f[k] for f in frames])) if frames else math.nan for k in keys} | {"frames": len(frames)}


def main(cfg: BenchNeighbours) -> None:
    table = Table(title="PSNR (dB) of a perfect static part with the moving pixels taken from the training neighbours")
    for column in ("scene", "test frames", "blend, frame", "blend, mask", "nearest, frame", "nearest, mask"):
        table.add_column(column)
    for root in cfg.scenes:
        figures = scene_figures(load_scene(root))
        table.add_row(
            root.name, str(figures["frames"]),
            *(f"{figures[k]:.2f}" for k in ("blend", "blend_masked", "nearest", "nearest_masked")),
        )  # fmt: skip
    CONSOLE.print(table)


if __name__ == "__main__":
    main(tyro.cli(BenchNeighbours))
