"""Ray casting a frame of a kitchen clip: colour (supersampled, simple two-sided lighting), z-depth
and the ground-truth label of every pixel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from divff_nerfstudio.synthetic.scene import KitchenClip
from divff_nerfstudio.synthetic.surfaces import ACTOR_ID

_LIGHT = np.array([0.3, -0.6, 2.3])

@dataclass
class Intrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def _covered_rays(grid: np.ndarray, spheres, intr: Intrinsics, ss: int):
    """Indices of the rays inside the screen rectangle that holds bounding spheres given in camera
    space; None when every ray must be tested (unbounded, or a sphere reaches behind the camera)."""
    us, vs = [], []
    for centre, radius in spheres:
        depth_near, depth_far = -centre[2] - radius, -centre[2] + radius
        if not np.isfinite(radius) or depth_near < 1e-3:
            return None
        for z in (depth_near, depth_far):
            us += [intr.cx + intr.fx * (centre[0] + sign * radius) / z for sign in (-1, 1)]
            vs += [intr.cy - intr.fy * (centre[1] + sign * radius) / z for sign in (-1, 1)]
    rows, cols = grid.shape
    c0, c1 = max(int(np.floor(min(us) * ss - 0.5)), 0), min(int(np.ceil(max(us) * ss - 0.5)) + 1, cols)
    r0, r1 = max(int(np.floor(min(vs) * ss - 0.5)), 0), min(int(np.ceil(max(vs) * ss - 0.5)) + 1, rows)
    if c0 >= c1 or r0 >= r1:
        return np.zeros(0, dtype=np.int64)
    return grid[r0:r1, c0:c1].reshape(-1)


@dataclass
class FrameRender:
    rgb: np.ndarray  # (H, W, 3) float in [0, 1]
    depth: np.ndarray  # (H, W) z-depth in metres, or (H*ss, W*ss) without labels
    labels: Optional[np.ndarray]  # (H, W) uint8: 0 static, 1..K object id, ACTOR_ID actor
    actor_coverage: np.ndarray  # (H, W) fraction of each pixel's colour rays that hit the actor

    def pixel_depth(self) -> np.ndarray:
        """(H, W) z-depth, averaged over each pixel's rays where it was cast supersampled."""
        h, w = self.rgb.shape[:2]
        ss = self.depth.shape[0] // h
        return self.depth.reshape(h, ss, w, ss).mean(axis=(1, 3))


def render_frame(clip: KitchenClip, frame: int, intr: Intrinsics, supersample: int = 1, labels: bool = False) -> FrameRender:
    """Ray-cast one frame, averaging supersample x supersample rays per pixel for colour.

    Depth is at supersampled resolution (enough for near/far quantiles). With `labels`, a second
    pass casts one ray through each pixel centre (nerfstudio's pixel convention) for exact
    ground-truth depth and labels at frame resolution.
    """
    rgb, depth, ids = _cast(clip, frame, intr, supersample)
    ss = supersample
    coverage = (ids == ACTOR_ID).reshape(intr.height, ss, intr.width, ss).mean(axis=(1, 3))
    if labels and supersample > 1:
        _, depth, ids = _cast(clip, frame, intr, 1, colour=False)
    return FrameRender(rgb, depth, ids if labels else None, coverage)


def label_map(clip: KitchenClip, frame: int, intr: Intrinsics) -> np.ndarray:
    """(H, W) uint8 labels through each pixel centre: 0 static, 1..K object id, ACTOR_ID actor."""
    return _cast(clip, frame, intr, 1, colour=False)[2]


def _cast(clip: KitchenClip, frame: int, intr: Intrinsics, ss: int, colour: bool = True):
    h, w = intr.height, intr.width
    offsets = (np.arange(ss) + 0.5) / ss
    u = (np.arange(w)[:, None] + offsets[None, :]).reshape(-1)
    v = (np.arange(h)[:, None] + offsets[None, :]).reshape(-1)
    uu, vv = np.meshgrid(u, v)
    d_cam = np.stack([(uu - intr.cx) / intr.fx, -(vv - intr.cy) / intr.fy, -np.ones_like(uu)], -1).reshape(-1, 3)
    c2w = clip.c2w[frame]
    d_world = d_cam @ c2w[:, :3].T
    o_world = np.broadcast_to(c2w[:, 3], d_world.shape)
    o_cam = np.zeros_like(d_cam)

    best_t = np.full(len(d_cam), np.inf)
    best_n = np.zeros_like(d_cam)
    best_s = np.full(len(d_cam), -1)
    surfaces = clip.static_surfaces + clip.object_surfaces(frame)
    actor = clip.actor_surfaces(frame)
    grid = np.arange(len(d_cam)).reshape(h * ss, w * ss)
    for idx, surf in enumerate(surfaces + actor):
        in_camera = idx >= len(surfaces)
        to_cam = (lambda p: p) if in_camera else (lambda p: (p - c2w[:, 3]) @ c2w[:, :3])
        rays = _covered_rays(grid, [(to_cam(c), r) for c, r in surf.shape.bounds], intr, ss)
        if rays is not None and len(rays) == 0:
            continue
        sel = slice(None) if rays is None else rays
        if in_camera:
            t, nrm = surf.shape.intersect(o_cam[sel], d_cam[sel])
            nrm = nrm @ c2w[:, :3].T
        else:
            t, nrm = surf.shape.intersect(o_world[sel], d_world[sel])
        closer = t < best_t[sel]
        hit_rays = np.arange(len(d_cam))[sel][closer]
        best_t[hit_rays], best_n[hit_rays], best_s[hit_rays] = t[closer], nrm[closer], idx
    if not np.isfinite(best_t).all():
        raise RuntimeError(f"frame {frame}: some rays escaped the room")

    everything = surfaces + actor
    labels = np.array([s.label for s in everything], dtype=np.uint8)[best_s]
    points = o_world + best_t[:, None] * d_world
    rgb = None
    if colour:
        albedo = np.zeros_like(points)
        for idx, surf in enumerate(everything):
            sel = best_s == idx
            if sel.any():
                albedo[sel] = surf.albedo(points[sel], best_n[sel])
        to_light = _LIGHT - points
        to_light /= np.linalg.norm(to_light, axis=1, keepdims=True)
        # two-sided lighting keeps inside-out normals of thin shapes from going black
        lambert = np.abs((best_n * to_light).sum(1))
        shade = 0.38 + 0.62 * lambert
        rgb = np.clip(albedo * shade[:, None], 0, 1).reshape(h, ss, w, ss, 3).mean(axis=(1, 3))
    depth = best_t.reshape(h * ss, w * ss)
    return rgb, depth, labels.reshape(h * ss, w * ss)
