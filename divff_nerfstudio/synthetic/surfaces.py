"""What the generated kitchen is made of: procedural textures, surfaces with ground-truth labels,
and the static room (counter, walls, cabinets, clutter).

World frame: z up, metres; the counter top is the plane z = COUNTER_TOP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Tuple

import numpy as np

from divff_nerfstudio.synthetic import primitives as prim

COUNTER_TOP = 0.9
ACTOR_ID = 255
"""Label of actor pixels in the ground-truth id maps (objects are 1..K, background 0)."""

def smoothstep(u: np.ndarray | float) -> np.ndarray | float:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


class ValueNoise:
    """Smooth 2D value noise from a seeded random lattice: cheap procedural texture."""

    def __init__(self, rng: np.random.Generator, size: int = 256):
        self.grid = rng.random((size, size))
        self.size = size

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        iu, iv = np.floor(u), np.floor(v)
        fu, fv = smoothstep(u - iu), smoothstep(v - iv)
        iu = iu.astype(np.int64) % self.size
        iv = iv.astype(np.int64) % self.size
        ju, jv = (iu + 1) % self.size, (iv + 1) % self.size
        g = self.grid
        top = g[iu, iv] * (1 - fu) + g[ju, iv] * fu
        bottom = g[iu, jv] * (1 - fu) + g[ju, jv] * fu
        return top * (1 - fv) + bottom * fv

    def fbm(self, u: np.ndarray, v: np.ndarray, octaves: int = 3) -> np.ndarray:
        total, amp, norm = np.zeros_like(u), 1.0, 0.0
        for octave in range(octaves):
            total += amp * self(u * 2**octave + 17.3 * octave, v * 2**octave)
            norm += amp
            amp *= 0.5
        return total / norm


Albedo = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (points (N,3), normals (N,3)) -> (N,3)


@dataclass
class Surface:
    """Something the renderer can hit: geometry, its albedo and its ground-truth label."""

    shape: prim.Shape
    albedo: Albedo
    label: int
    """0 static, 1..K dynamic object ids, ACTOR_ID for the arms."""


def speckled(surface: Surface, noise: ValueNoise, amount: float) -> Surface:
    """The surface with its albedo modulated by fine noise (blobs of about 1.5 cm)."""

    def albedo(p: np.ndarray, nrm: np.ndarray) -> np.ndarray:
        fine = noise.fbm(p[:, 0] * 60 + p[:, 2] * 37, p[:, 1] * 60 - p[:, 2] * 53, octaves=2)
        return np.clip(surface.albedo(p, nrm) * (1 + amount * (2 * fine[:, None] - 1)), 0.0, 1.0)

    return Surface(surface.shape, albedo, surface.label)


def segment(a: np.ndarray, b: np.ndarray, radius: float) -> prim.Shape:
    """Capsule from a to b."""
    axis = b - a
    half_len = float(np.linalg.norm(axis)) / 2
    rotation = prim.rotation_from_axes(axis, np.array([0.0, 0.0, 1.0]))
    return prim.Shape(
        lambda o, d: prim.capsule(o, d, half_len, radius), (a + b) / 2, rotation, half_len + radius, ((a, radius), (b, radius))
    )


def static_kitchen(rng: np.random.Generator, n: ValueNoise) -> List[Surface]:
    """The room, counter, wall cabinet and clutter that never move (label 0); draws from `rng`."""
    wall_tint = np.array([0.95, 0.95, 0.95]) * 0.6 + rng.random(3) * 0.3

    def room_albedo(p: np.ndarray, nrm: np.ndarray) -> np.ndarray:
        out = np.empty_like(p)
        floor = nrm[:, 2] > 0.5
        ceiling = nrm[:, 2] < -0.5
        walls = ~(floor | ceiling)
        # floor: large checker tiles
        fx, fy = p[floor, 0] / 0.3, p[floor, 1] / 0.3
        checker = (np.floor(fx) + np.floor(fy)) % 2
        base = np.where(checker[:, None] > 0, [0.55, 0.5, 0.45], [0.35, 0.32, 0.3])
        out[floor] = base * (0.85 + 0.3 * n.fbm(fx * 4, fy * 4)[:, None])
        out[ceiling] = 0.9
        # walls: tiled splash-back above the counter, painted plaster higher up
        u = np.where(np.abs(nrm[walls, 0]) > 0.5, p[walls, 1], p[walls, 0])
        z = p[walls, 2]
        grout = (np.abs(((u / 0.1) % 1) - 0.5) > 0.44) | (np.abs(((z / 0.1) % 1) - 0.5) > 0.44)
        tiles = np.where(grout[:, None], [0.55, 0.55, 0.52], [0.82, 0.86, 0.9])
        paint = wall_tint * (0.9 + 0.2 * n.fbm(u * 3, z * 3)[:, None])
        splash = (z > COUNTER_TOP) & (z < 1.45)
        out[walls] = np.where(splash[:, None], tiles, paint)
        return out

    def counter_albedo(p: np.ndarray, nrm: np.ndarray) -> np.ndarray:
        top = nrm[:, 2] > 0.5
        out = np.empty_like(p)
        # wooden worktop: grain along x, warped by noise
        grain = np.sin(p[top, 1] * 90 + 6 * n.fbm(p[top, 0] * 4, p[top, 1] * 12))
        wood = np.array([0.62, 0.42, 0.24]) * (0.8 + 0.15 * grain[:, None])
        out[top] = wood * (0.9 + 0.2 * n.fbm(p[top, 0] * 20, p[top, 1] * 20)[:, None])
        # cabinet doors: panels with dark gaps and a handle per door
        side = ~top
        u = p[side, 0] + 10
        z = p[side, 2]
        gap = (np.abs((u / 0.5) % 1 - 0.5) > 0.48) | (z > COUNTER_TOP - 0.04)
        handle = (np.abs((u / 0.5) % 1 - 0.15) < 0.02) & (np.abs(z - 0.7) < 0.07)
        door = np.array([0.3, 0.45, 0.42]) * (0.9 + 0.2 * n.fbm(u * 8, z * 8)[:, None])
        out[side] = np.where(gap[:, None], [0.12, 0.12, 0.12], np.where(handle[:, None], 0.8, door))
        return out

    def cabinet_albedo(p: np.ndarray, nrm: np.ndarray) -> np.ndarray:
        u = p[:, 0] + 10
        gap = np.abs((u / 0.4) % 1 - 0.5) > 0.47
        base = np.array([0.78, 0.72, 0.6]) * (0.9 + 0.2 * n.fbm(u * 6, p[:, 2] * 6)[:, None])
        return np.where(gap[:, None], [0.2, 0.2, 0.2], base)

    def plain(rgb: Tuple[float, float, float], scale: float = 10.0) -> Albedo:
        colour = np.array(rgb)

        def albedo(p: np.ndarray, nrm: np.ndarray) -> np.ndarray:
            return colour * (0.85 + 0.3 * n.fbm(p[:, 0] * scale + p[:, 2] * scale, p[:, 1] * scale)[:, None])

        return albedo

    def boxed(centre, half) -> prim.Shape:
        half = np.asarray(half, dtype=float)
        return prim.Shape(lambda o, d: prim.box(o, d, half), np.asarray(centre, float), bound_radius=float(np.linalg.norm(half)))

    def upright_cylinder(x, y, radius, height) -> prim.Shape:
        centre = np.array([x, y, COUNTER_TOP + height / 2])
        return prim.Shape(
            lambda o, d: prim.cylinder(o, d, radius, height / 2), centre, bound_radius=float(np.hypot(radius, height / 2))
        )

    room_half = np.array([2.2, 1.4, 1.3])
    room_centre = np.array([0.0, 0.65 - 1.4, 1.3])
    return [
        Surface(prim.Shape(lambda o, d: prim.room(o, d, room_half), room_centre), room_albedo, 0),
        Surface(boxed([0.0, 0.325, COUNTER_TOP / 2], [1.8, 0.325, COUNTER_TOP / 2]), counter_albedo, 0),
        Surface(boxed([0.0, 0.475, 1.85], [1.8, 0.175, 0.35]), cabinet_albedo, 0),
        Surface(boxed([0.05, 0.5, COUNTER_TOP + 0.01], [0.18, 0.11, 0.01]), plain((0.8, 0.66, 0.45), 25), 0),
        Surface(upright_cylinder(-0.62, 0.48, 0.08, 0.2), plain((0.7, 0.72, 0.75)), 0),
        Surface(upright_cylinder(-0.4, 0.56, 0.035, 0.26), plain((0.4, 0.25, 0.1)), 0),
        Surface(boxed([0.58, 0.52, COUNTER_TOP + 0.09], [0.13, 0.08, 0.09]), plain((0.55, 0.57, 0.6)), 0),
        Surface(upright_cylinder(0.9, 0.3, 0.11, 0.12), plain((0.25, 0.25, 0.27)), 0),
    ]
