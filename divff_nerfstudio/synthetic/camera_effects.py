"""What a head-mounted camera does to the light of a clean render: exposure and white balance that
drift from frame to frame, blur from the camera's own motion during the exposure, sensor noise (and,
in the writer, JPEG compression).

Transient models fail on exactly these: a frame that is darker than its neighbours, or smeared, is
explained more cheaply by a dynamic stream than by the static one. Every effect acts on colour
only, so the ground truth (labels, depth) stays exact, and each is seeded per clip and frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from jaxtyping import Float

_SHUTTER_STEPS = 7
"""Moments of the exposure averaged for motion blur."""


@dataclass
class CameraEffects:
    """Degradations of the frames (flags of divff-make-scene; all 0: clean frames)."""

    exposure_drift: float = 0.0
    """Amplitude of the smooth drift of log exposure (0.25: gains of about 0.78-1.28)."""
    white_balance_drift: float = 0.0
    """Amplitude of the smooth drift of each channel's log gain (0.06: a few percent of tint)."""
    motion_blur: float = 0.0
    """Shutter open time as a fraction of the time between two written frames (0: no blur)."""
    noise: float = 0.0
    """Standard deviation of the sensor noise at mid grey (shot noise grows with brightness)."""
    jpeg_quality: int = 0
    """Write frames as JPEG of this quality (1-100); 0: lossless frames in --image-format."""

    def any_colour_effect(self) -> bool:
        return any(v > 0 for v in (self.exposure_drift, self.white_balance_drift, self.motion_blur, self.noise))


class CameraResponse:
    """The effects of one clip: smooth per-frame gains decided from the seed, applied frame by frame."""

    def __init__(self, effects: CameraEffects, num_frames: int, seed: int):
        self.effects = effects
        self.seed = seed
        rng = np.random.default_rng([seed, 2])  # own stream: the clip itself stays the seed's
        s = np.linspace(0.0, 1.0, num_frames)

        def drift() -> np.ndarray:
            """A smooth signal of about unit amplitude over the clip (three random sines)."""
            freqs, phases = rng.uniform(0.5, 3.0, 3), rng.uniform(0, 2 * np.pi, 3)
            return sum(np.sin(2 * np.pi * f * s + p) for f, p in zip(freqs, phases)) / np.sqrt(1.5)

        self.exposure = np.exp(effects.exposure_drift * drift())  # (N,)
        tint = np.stack([drift() for _ in range(3)], axis=1) * effects.white_balance_drift
        self.white_balance = np.exp(tint - tint.mean(axis=1, keepdims=True))  # (N, 3), grey stays grey on average

    def apply(
        self,
        rgb: Float[np.ndarray, "h w 3"],
        frame: int,
        depth: Float[np.ndarray, "h w"],
        still: Float[np.ndarray, "h w"],
        K: np.ndarray,
        c2w: Float[np.ndarray, "n 3 4"],
    ) -> Float[np.ndarray, "h w 3"]:
        """The frame as the camera records it. `depth`: z-depth per pixel; `still`: the fraction of
        each pixel that moves with the camera (the actor), which camera motion does not blur."""
        out = rgb
        if self.effects.motion_blur > 0:
            blurred = camera_motion_blur(rgb, depth, K, c2w, frame, self.effects.motion_blur)
            out = still[..., None] * rgb + (1 - still[..., None]) * blurred
        out = out * self.exposure[frame] * self.white_balance[frame]
        if self.effects.noise > 0:
            rng = np.random.default_rng([self.seed, 3, frame])
            sigma = self.effects.noise * np.sqrt((np.clip(out, 0, 1) + 0.1) / 0.6)
            out = out + sigma * rng.standard_normal(out.shape)
        return np.clip(out, 0.0, 1.0)


def camera_motion_blur(
    rgb: Float[np.ndarray, "h w 3"],
    depth: Float[np.ndarray, "h w"],
    K: np.ndarray,
    c2w: Float[np.ndarray, "n 3 4"],
    frame: int,
    shutter: float,
) -> Float[np.ndarray, "h w 3"]:
    """Average of the frame as seen from the camera poses during the exposure, centred on the frame's
    own pose and spanning `shutter` of the way to the neighbouring frames (poses interpolated; the
    scene's points from the frame's depth, so near things smear more, as they do)."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    # pixel -> camera space (OpenGL: y up, looking down -z) -> world
    cam = np.stack([(u - K[0, 2]) / K[0, 0] * depth, -(v - K[1, 2]) / K[1, 1] * depth, -depth], axis=-1)
    world = cam @ c2w[frame, :, :3].T + c2w[frame, :, 3]
    acc = np.zeros_like(rgb, dtype=np.float64)
    for f in np.linspace(-shutter / 2, shutter / 2, _SHUTTER_STEPS):
        pose = _pose_between(c2w, frame, f)
        p = (world - pose[:, 3]) @ pose[:, :3]  # world -> camera f
        z = np.maximum(-p[..., 2], 1e-6)
        map_x = (K[0, 0] * p[..., 0] / z + K[0, 2] - 0.5).astype(np.float32)
        map_y = (-K[1, 1] * p[..., 1] / z + K[1, 2] - 0.5).astype(np.float32)
        acc += cv2.remap(rgb.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return (acc / _SHUTTER_STEPS).astype(rgb.dtype)


def _pose_between(c2w: np.ndarray, frame: int, offset: float) -> np.ndarray:
    """The camera `offset` frame intervals away from `frame` (towards the next frame when positive),
    linearly interpolated and re-orthonormalised (the steps are small)."""
    other = min(max(frame + (1 if offset >= 0 else -1), 0), len(c2w) - 1)
    pose = (1 - abs(offset)) * c2w[frame] + abs(offset) * c2w[other]
    u, _, vt = np.linalg.svd(pose[:, :3])
    return np.concatenate([u @ vt, pose[:, 3:]], axis=1)
