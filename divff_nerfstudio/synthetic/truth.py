"""Ground-truth geometry of a generated scene's moving objects, to check exports against.

The objects are rebuilt from the seed in gt/scene.json (the generator is deterministic) and checked
against the positions written there, so a test never compares with a different scene. Points are in
the scene's original frame (meta.json's poses; `ns-export ... --save-world-frame True`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
from jaxtyping import Bool, Float

from divff_nerfstudio.synthetic import primitives as prim
from divff_nerfstudio.synthetic.scene import ClipMotion, KitchenClip

_FAR = 10.0  # metres: a start point surely outside every object


class SceneTruth:
    """The moving objects of a generated scene, placeable at any of its frames."""

    def __init__(self, scene_dir: Path):
        path = Path(scene_dir) / "gt" / "scene.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: ground truth exists only for generated scenes (divff-make-scene)")
        truth = json.loads(path.read_text())
        cfg = truth["config"]
        self.ids: List[int] = [cfg["first_id"] + k * cfg["id_stride"] for k in range(cfg["frames"])]
        motion = ClipMotion(**cfg.get("motion", {}))
        self.clip = KitchenClip(cfg["seed"], cfg["frames"], cfg["objects"], motion=motion)
        self.labels: Dict[int, str] = {o["id"]: o["label"] for o in truth["objects"]}
        for written, obj in zip(truth["objects"], self.clip.objects):
            expected = np.array([written["positions"][str(i)] for i in self.ids])
            if obj.label != written["label"] or not np.allclose(obj.positions, expected, atol=1e-5):
                raise ValueError(f"{path}: the generator no longer rebuilds object {written['label']!r} of this scene")

    def shapes(self, frame_id: int) -> List[prim.Shape]:
        """Every object placed as at this frame (an id of ids_all)."""
        if frame_id not in self.ids:
            raise ValueError(f"frame id {frame_id} is not one of this scene's ({self.ids[0]} ... {self.ids[-1]})")
        return [surface.shape for surface in self.clip.object_surfaces(self.ids.index(frame_id))]

    def inside(self, points: Float[np.ndarray, "n 3"], frame_id: int, margin: float = 0.0) -> Bool[np.ndarray, " n"]:
        """Which points lie inside (or within `margin` of) an object at this frame."""
        points = np.asarray(points, dtype=np.float64)
        out = np.zeros(len(points), dtype=bool)
        for shape in self.shapes(frame_id):
            out |= contains(shape, points, margin)
        return out

    def inside_at_any_frame(self, points: Float[np.ndarray, "n 3"]) -> Bool[np.ndarray, " n"]:
        """Which points lie inside an object at some frame: the union of the volumes over time."""
        out = np.zeros(len(points), dtype=bool)
        for frame_id in self.ids:
            out |= self.inside(points, frame_id)
        return out


def contains(shape: prim.Shape, points: Float[np.ndarray, "n 3"], margin: float = 0.0) -> Bool[np.ndarray, " n"]:
    """Which points lie inside one placed object (or within `margin` of it)."""
    points = np.asarray(points, dtype=np.float64)
    out = _inside_convex(shape, points)
    if margin > 0:
        near = np.linalg.norm(points - shape.centre, axis=1) <= shape.bound_radius + margin
        out |= near & _near_convex(shape, points, margin)
    return out


def _inside_convex(shape: prim.Shape, points: np.ndarray) -> np.ndarray:
    """The generator's objects are convex and its intersections report entries from outside: a
    point is inside iff lines through it, started far away on either side, enter before reaching it."""
    direction = np.tile(np.array([[0.267, 0.535, 0.802]]), (len(points), 1))
    inside = np.ones(len(points), dtype=bool)
    for d in (direction, -direction):
        t, _ = shape.intersect(points - _FAR * d, d)
        inside &= t <= _FAR
    return inside


def _near_convex(shape: prim.Shape, points: np.ndarray, margin: float) -> np.ndarray:
    """Within `margin` of the shape: some point at most `margin` away (14 directions) is inside it."""
    axes = np.concatenate([np.eye(3), -np.eye(3), np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T / np.sqrt(3)])
    out = np.zeros(len(points), dtype=bool)
    for step in axes * margin:
        out |= _inside_convex(shape, points + step)
    return out
