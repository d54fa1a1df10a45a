"""2D motion evidence per training frame: where the image moves in a way the camera's own motion
cannot explain (the idea of Layered Motion Fusion, CVPR 2025, with classical flow).

For each training frame, dense optical flow (OpenCV's Farneback) to the previous and to the next
training frame. A static point seen by two cameras with known poses lands on the epipolar line of
its first position, whatever its depth: so the distance of the flow's end point to that line is
motion that the camera does not explain, with no depth needed. Evidence is the smaller of the two
distances (both neighbours must agree), mapped to [0, 1] between `low_px` and `high_px`. Flow is
trusted only where it is consistent forwards and backwards (not at occlusions) and the image has
texture to follow (not on blank walls); elsewhere the evidence is 0, which means "unknown". Motion
along the epipolar line goes unseen, and an object that rests gives none: the evidence only ever
says "this moves", never "this is static".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import cv2
import numpy as np
import torch
from jaxtyping import Float, UInt8
from nerfstudio.cameras.cameras import Cameras
from rich.progress import track
from torch import Tensor


@dataclass
class MotionPriorConfig:
    """Optical-flow motion evidence as a loss on the dynamic streams' share (off by default)."""

    enabled: bool = False
    """Compute motion evidence for the training frames and add the motion loss."""
    low_px: float = 0.75
    """Epipolar distance (pixels, at 228 px wide; scaled with the frame width) below which no motion is seen."""
    high_px: float = 2.5
    """Epipolar distance at which the evidence is full."""
    consistency_px: float = 0.75
    """Largest forward-backward flow disagreement (pixels, scaled like low_px) of a trusted flow vector."""
    min_texture: float = 5e-5
    """Smallest structure-tensor eigenvalue (grey levels in [0, 1], 3x3 window) of a trusted pixel."""


def fundamental(cameras: Cameras, a: int, b: int) -> Float[np.ndarray, "3 3"]:
    """F with x_b^T F x_a = 0 for pixel coordinates (x right, y down) of a static point seen by
    cameras a and b (nerfstudio's OpenGL camera-to-world poses)."""
    flip = np.diag([1.0, -1.0, -1.0])  # OpenGL camera axes -> OpenCV (y down, looking down +z)
    poses = cameras.camera_to_worlds.double().numpy()
    rot_a, rot_b = poses[a, :, :3] @ flip, poses[b, :, :3] @ flip
    # x_cv_b = R x_cv_a + t: from camera a to camera b
    rot = rot_b.T @ rot_a
    t = rot_b.T @ (poses[a, :, 3] - poses[b, :, 3])
    t_cross = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])

    def intrinsics(i: int) -> np.ndarray:
        return np.array([[float(cameras.fx[i]), 0, float(cameras.cx[i])], [0, float(cameras.fy[i]), float(cameras.cy[i])], [0, 0, 1]])

    return np.linalg.inv(intrinsics(b)).T @ t_cross @ rot @ np.linalg.inv(intrinsics(a))


def epipolar_residual(
    flow: Float[np.ndarray, "h w 2"], F: Float[np.ndarray, "3 3"]
) -> Float[np.ndarray, "h w"]:
    """Distance (pixels) of each pixel's flow end point to the epipolar line of its start."""
    h, w = flow.shape[:2]
    v, u = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5  # pixel centres
    start = np.stack([u, v, np.ones_like(u)], axis=-1)
    end = np.stack([u + flow[..., 0], v + flow[..., 1], np.ones_like(u)], axis=-1)
    lines = start @ F.T  # (h, w, 3): a, b, c of a x + b y + c = 0 in image b
    return np.abs((lines * end).sum(-1)) / np.maximum(np.hypot(lines[..., 0], lines[..., 1]), 1e-12)


def _flow(a: UInt8[np.ndarray, "h w"], b: UInt8[np.ndarray, "h w"]) -> Float[np.ndarray, "h w 2"]:
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 3, 5, 1.1, 0)


def trusted_flow(a: UInt8[np.ndarray, "h w"], b: UInt8[np.ndarray, "h w"], max_disagreement: float):
    """Flow a -> b and where it is trusted: following it to b and b's flow back lands within
    `max_disagreement` pixels of the start."""
    forward, backward = _flow(a, b), _flow(b, a)
    h, w = a.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    back = cv2.remap(backward, u + forward[..., 0], v + forward[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1e6)
    return forward, np.hypot(*(forward + back).transpose(2, 0, 1)) < max_disagreement


def motion_evidence(
    images: Sequence[Float[Tensor, "h w 3"]], cameras: Cameras, frame_index: List[int], config: MotionPriorConfig
) -> Float[Tensor, "n h w"]:
    """Evidence in [0, 1] per pixel of every frame (images and cameras of one split, any order;
    neighbours by frame index). `images` may read each frame when asked: only its 8-bit grey copy
    is kept, a twelfth of the float frame (a 5,000-frame video's 1.75 GB of float RGB never sits in memory)."""
    order = np.argsort(frame_index)
    grey = [
        cv2.cvtColor((images[i].numpy() * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
        for i in track(range(len(images)), description="motion evidence: frames", transient=True)
    ]
    h, w = grey[0].shape
    scale = w / 228.0
    out = torch.zeros((len(images), h, w), dtype=torch.float16)
    for k, i in enumerate(track(order, description="motion evidence: optical flow", transient=True)):
        textured = cv2.cornerMinEigenVal(grey[i].astype(np.float32) / 255.0, 3) > config.min_texture
        residuals: List[np.ndarray] = []
        for j in (order[k - 1] if k > 0 else None, order[k + 1] if k + 1 < len(order) else None):
            if j is not None:
                flow, trusted = trusted_flow(grey[i], grey[j], config.consistency_px * scale)
                residual = epipolar_residual(flow, fundamental(cameras, int(i), int(j)))
                residuals.append(np.where(trusted & textured, residual, 0.0))
        residual: Optional[np.ndarray] = np.minimum.reduce(residuals) if residuals else None
        if residual is not None:
            ramp = (residual - config.low_px * scale) / ((config.high_px - config.low_px) * scale)
            out[i] = torch.from_numpy(np.clip(ramp, 0.0, 1.0)).to(torch.float16)
    return out
