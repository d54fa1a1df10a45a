"""Ray-primitive intersections for the synthetic scene renderer.

Everything is vectorised numpy over a batch of rays. Each primitive is intersected in its own local
frame (centred at the origin, axis-aligned); `Shape` moves rays into that frame so one routine per
primitive kind serves every pose. Misses are `t = inf`. Rays carry unnormalised directions whose
camera-space z is -1, so `t` is the z-depth of the hit and one `t` is shared by world and camera
space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Tuple

import numpy as np

Hit = Tuple[np.ndarray, np.ndarray]  # t (N,), normal (N, 3)
_EPS = 1e-6


def box(o: np.ndarray, d: np.ndarray, half: np.ndarray) -> Hit:
    """Axis-aligned box [-half, half], hit from outside (slab method)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t0 = (-half - o) * inv
        t1 = (half - o) * inv
    tmin = np.minimum(t0, t1)
    tmax = np.maximum(t0, t1)
    t_near = np.nanmax(tmin, axis=1)
    t_far = np.nanmin(tmax, axis=1)
    hit = (t_near <= t_far) & (t_near > _EPS)
    t = np.where(hit, t_near, np.inf)
    axis = np.nanargmax(tmin, axis=1)
    normal = np.zeros_like(o)
    rows = np.arange(len(o))
    normal[rows, axis] = -np.sign(d[rows, axis])
    return t, normal


def room(o: np.ndarray, d: np.ndarray, half: np.ndarray) -> Hit:
    """Inside of an axis-aligned box [-half, half]: where a ray from inside leaves it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t0 = (-half - o) * inv
        t1 = (half - o) * inv
    tmax = np.maximum(t0, t1)
    tmax = np.where(np.isnan(tmax), np.inf, tmax)
    axis = np.argmin(tmax, axis=1)
    rows = np.arange(len(o))
    t = tmax[rows, axis]
    normal = np.zeros_like(o)
    normal[rows, axis] = -np.sign(d[rows, axis])
    return t, normal


def _solve_quadratic(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Both roots (smaller first) of a t^2 + b t + c = 0; NaN where there is no real root."""
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        sq = np.sqrt(disc)
        t0 = (-b - sq) / (2 * a)
        t1 = (-b + sq) / (2 * a)
    return np.minimum(t0, t1), np.maximum(t0, t1)


def _first_positive(*candidates: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Smallest positive candidate per ray and which candidate it was."""
    stack = np.stack([np.where(np.isfinite(c) & (c > _EPS), c, np.inf) for c in candidates], axis=1)
    which = np.argmin(stack, axis=1)
    return stack[np.arange(len(stack)), which], which


def ellipsoid(o: np.ndarray, d: np.ndarray, radii: np.ndarray) -> Hit:
    os_, ds = o / radii, d / radii
    a = (ds * ds).sum(1)
    b = 2 * (os_ * ds).sum(1)
    c = (os_ * os_).sum(1) - 1
    t0, _ = _solve_quadratic(a, b, c)
    t, _ = _first_positive(t0)
    p = o + np.where(np.isfinite(t), t, 0)[:, None] * d
    normal = p / radii**2
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + _EPS
    return t, normal


def cylinder(o: np.ndarray, d: np.ndarray, radius: float, half_h: float) -> Hit:
    """Capped cylinder around the z axis, z in [-half_h, half_h]."""
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = 2 * (o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1])
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - radius**2
    t_side, _ = _solve_quadratic(a, b, c)
    z_side = o[:, 2] + t_side * d[:, 2]
    t_side = np.where(np.abs(z_side) <= half_h, t_side, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_caps = [(s * half_h - o[:, 2]) / d[:, 2] for s in (1.0, -1.0)]
    for i, tc in enumerate(t_caps):
        p = o + np.nan_to_num(tc, posinf=0, neginf=0)[:, None] * d
        t_caps[i] = np.where(p[:, 0] ** 2 + p[:, 1] ** 2 <= radius**2, tc, np.inf)
    t, which = _first_positive(t_side, *t_caps)
    p = o + np.where(np.isfinite(t), t, 0)[:, None] * d
    normal = np.zeros_like(o)
    normal[:, :2] = p[:, :2] / radius
    normal[which == 1] = (0, 0, 1)
    normal[which == 2] = (0, 0, -1)
    return t, normal


def cone(o: np.ndarray, d: np.ndarray, radius: float, half_h: float) -> Hit:
    """Cone around the z axis: base disc of `radius` at -half_h, apex at +half_h."""
    k = radius / (2 * half_h)  # radius shrinks by k per unit of height
    apex = half_h
    oz = o[:, 2] - apex
    a = d[:, 0] ** 2 + d[:, 1] ** 2 - (k * d[:, 2]) ** 2
    b = 2 * (o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1] - k * k * oz * d[:, 2])
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - (k * oz) ** 2
    t0, t1 = _solve_quadratic(a, b, c)
    valid = []
    for tc in (t0, t1):
        z = o[:, 2] + tc * d[:, 2]
        valid.append(np.where((z >= -half_h) & (z <= half_h), tc, np.inf))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_base = (-half_h - o[:, 2]) / d[:, 2]
    p = o + np.nan_to_num(t_base, posinf=0, neginf=0)[:, None] * d
    t_base = np.where(p[:, 0] ** 2 + p[:, 1] ** 2 <= radius**2, t_base, np.inf)
    t, which = _first_positive(valid[0], valid[1], t_base)
    p = o + np.where(np.isfinite(t), t, 0)[:, None] * d
    r_xy = np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) + _EPS
    normal = np.stack([p[:, 0] / r_xy, p[:, 1] / r_xy, np.full(len(p), k)], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    normal[which == 2] = (0, 0, -1)
    return t, normal


def capsule(o: np.ndarray, d: np.ndarray, half_len: float, radius: float) -> Hit:
    """Capsule along the x axis: segment x in [-half_len, half_len] swept by a sphere of radius."""
    a = d[:, 1] ** 2 + d[:, 2] ** 2
    b = 2 * (o[:, 1] * d[:, 1] + o[:, 2] * d[:, 2])
    c = o[:, 1] ** 2 + o[:, 2] ** 2 - radius**2
    t_side, _ = _solve_quadratic(a, b, c)
    x_side = o[:, 0] + t_side * d[:, 0]
    t_side = np.where(np.abs(x_side) <= half_len, t_side, np.inf)
    ends = []
    for s in (1.0, -1.0):
        centre = np.array([s * half_len, 0.0, 0.0])
        t_end, _ = ellipsoid(o - centre, d, np.full(3, radius))
        ends.append(t_end)
    t, _ = _first_positive(t_side, *ends)
    p = o + np.where(np.isfinite(t), t, 0)[:, None] * d
    axis_point = np.zeros_like(p)
    axis_point[:, 0] = np.clip(p[:, 0], -half_len, half_len)
    normal = (p - axis_point) / radius
    return t, normal


def rotation_from_axes(x_axis: np.ndarray, up_hint: np.ndarray) -> np.ndarray:
    """Rotation whose first column is x_axis and whose third column is as close to up_hint as allowed."""
    x = x_axis / np.linalg.norm(x_axis)
    y = np.cross(up_hint, x)
    if np.linalg.norm(y) < 1e-6:
        y = np.cross(np.array([0.0, 1.0, 0.0]), x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=1)


def rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class Shape:
    """A primitive placed by a rigid transform (local -> parent: p = rotation @ q + centre)."""

    intersect_local: Callable[[np.ndarray, np.ndarray], Hit]
    centre: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    bound_radius: float = np.inf
    """Radius of a sphere around `centre` that holds the shape: lets the renderer skip the pixels
    outside its projection."""
    extra_bounds: Tuple[Tuple[np.ndarray, float], ...] = ()
    """Spheres (centre, radius) in the parent frame whose union holds the shape, used instead of
    the one around `centre` when given: tighter for long thin shapes."""

    @property
    def bounds(self) -> Tuple[Tuple[np.ndarray, float], ...]:
        return self.extra_bounds or ((self.centre, self.bound_radius),)

    def intersect(self, o: np.ndarray, d: np.ndarray) -> Hit:
        o_local = (o - self.centre) @ self.rotation
        d_local = d @ self.rotation
        t, normal = self.intersect_local(o_local, d_local)
        return t, normal @ self.rotation.T
