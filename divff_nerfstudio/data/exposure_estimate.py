"""A first guess of each training frame's exposure and white balance, from the frames alone.

The per-image exposure (model/exposure.py) learns slowly next to the fields: on footage whose
exposure drifts, the dynamic streams lay a faint copy of the room over the brighter frames before
the exposure has learnt them, and keep it (measured: on the hard benchmark scene, starting the
exposure from the true gains lifted object AP from 30 to 74 on one seed). The gains can be read from the video
before training starts, photometric calibration's way: follow each pixel to a nearby frame by
optical flow and compare colours. A surface keeps its colour from one frame to the next, so the
median log ratio of the matched colours is the ratio of the two frames' gains per channel; moving
things are followed by the flow too, and the median shrugs off the pixels it follows wrongly.
Ratios to the next few frames, solved together by least squares, give every frame's log gain up
to a common factor, which is fixed by making their mean zero (the scene under its average exposure).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, List, Sequence, Tuple

import cv2
import numpy as np
import torch
from jaxtyping import Float
from rich.progress import track
from scipy import sparse
from scipy.sparse.linalg import lsqr
from torch import Tensor

from divff_nerfstudio.data.motion_evidence import trusted_flow


@dataclass(frozen=True)
class ExposureEstimateConfig:
    """Start the per-image exposure from gains read off the frames (on by default)."""

    enabled: bool = True
    """Estimate each training frame's colour gains before training (seconds per hundred frames)."""
    neighbours: int = 3
    """Frames (in time order) each frame is compared with ahead of it."""
    consistency_px: float = 0.75
    """Largest forward-backward flow disagreement (pixels, at 228 px wide) of a matched pixel."""
    min_matched: float = 0.05
    """Least fraction of matched pixels for a pair of frames to count."""


def _grey(rgb: Float[np.ndarray, "h w 3"]) -> np.ndarray:
    """8-bit grey with its mean brought to mid grey, so that the flow does not see the gain change."""
    grey = cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_RGB2GRAY)
    return np.clip(grey * (0.5 / max(float(grey.mean()), 1e-3)) * 255, 0, 255).round().astype(np.uint8)


def log_gain_ratio(
    a: Float[np.ndarray, "h w 3"],
    b: Float[np.ndarray, "h w 3"],
    grey_a: np.ndarray,
    grey_b: np.ndarray,
    config: ExposureEstimateConfig,
) -> Tuple[Float[np.ndarray, "3"], float]:
    """log(gain_a / gain_b) per channel, and the fraction of pixels it rests on (colours in [0, 1])."""
    h, w = grey_a.shape
    flow, trusted = trusted_flow(grey_a, grey_b, config.consistency_px * w / 228.0)
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x, map_y = u + flow[..., 0], v + flow[..., 1]
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    b_at_a = cv2.remap(b.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR)
    exposed = ((a > 0.03) & (a < 0.97) & (b_at_a > 0.03) & (b_at_a < 0.97)).all(-1)  # neither dark noise nor clipped
    matched = trusted & inside & exposed
    if not matched.any():
        return np.zeros(3), 0.0
    ratio = np.log(a[matched]) - np.log(b_at_a[matched])
    return np.median(ratio, axis=0), float(matched.mean())


def estimate_log_gains(
    images: Sequence[Float[Tensor, "h w 3"]], frame_index: List[int], config: ExposureEstimateConfig
) -> Float[Tensor, "n 3"]:
    """Log colour gain of every image (any order; neighbours by frame index), mean zero over images.
    A frame that matches no neighbour gets the mean (0)."""
    order = np.argsort(frame_index)
    rows: List[Tuple[int, int, np.ndarray, float]] = []
    recent: Deque[Tuple[int, np.ndarray, np.ndarray]] = deque(maxlen=config.neighbours)  # only a few frames in memory
    for k, i in enumerate(track(order, description="exposure: matching neighbouring frames", transient=True)):
        frame = images[int(i)].numpy().astype(np.float32)
        grey = _grey(frame)
        for j, earlier, earlier_grey in recent:
            ratio, matched = log_gain_ratio(earlier, frame, earlier_grey, grey, config)
            if matched >= config.min_matched:
                rows.append((j, k, ratio, matched))
        recent.append((k, frame, grey))
    n = len(order)
    # x_a - x_b = ratio for every matched pair, weighted by how much of the frame matched; plus sum(x) = 0
    weights = np.sqrt([matched for _, _, _, matched in rows] + [1.0])
    pairs = np.array([(a, b) for a, b, _, _ in rows], dtype=np.int64).reshape(-1, 2)
    m = len(rows)
    system = sparse.csr_matrix(
        (
            np.concatenate([weights[:m], -weights[:m], np.ones(n)]),
            (
                np.concatenate([np.arange(m), np.arange(m), np.full(n, m)]),
                np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(n)]),
            ),
        ),
        shape=(m + 1, n),
    )
    targets = (
        np.concatenate([np.array([ratio for _, _, ratio, _ in rows]).reshape(-1, 3), np.zeros((1, 3))])
        * weights[:, None]
    )
    gains = np.stack([lsqr(system, targets[:, c], atol=1e-10, btol=1e-10)[0] for c in range(3)], axis=1)
    gains -= gains.mean(axis=0)
    out = np.zeros((n, 3))
    out[order] = gains
    return torch.from_numpy(out).float()
