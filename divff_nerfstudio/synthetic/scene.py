"""A procedural first-person kitchen clip: counter, walls, clutter, movable objects and two arms.

The clip mimics what NeuralDiff decomposes: a static room seen by a moving head, a few objects that
rest most of the time and are occasionally carried by a hand to another place, and forearms/hands
that stay near a fixed place in the camera frame (with jitter) and reach out to pick things up.
Cameras follow the OpenGL/nerfstudio convention (x right, y up, looking down -z).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence, Set, Tuple

import numpy as np

from divff_nerfstudio.synthetic import primitives as prim
from divff_nerfstudio.synthetic.surfaces import (
    ACTOR_ID,
    COUNTER_TOP,
    Surface,
    ValueNoise,
    segment,
    smoothstep,
    speckled,
    static_kitchen,
)

COLOURS: Dict[str, Tuple[float, float, float]] = {
    "red": (0.85, 0.08, 0.08),
    "green": (0.10, 0.62, 0.15),
    "blue": (0.10, 0.22, 0.85),
    "yellow": (0.95, 0.85, 0.10),
    "orange": (0.98, 0.48, 0.05),
    "purple": (0.50, 0.12, 0.65),
    "pink": (0.98, 0.55, 0.72),
    "cyan": (0.10, 0.80, 0.85),
    "white": (0.95, 0.95, 0.95),
    "black": (0.07, 0.07, 0.07),
}
SHAPES: Tuple[str, ...] = ("cube", "brick", "ball", "egg", "cylinder", "disc", "cone", "capsule")

_SKIN = np.array([0.87, 0.64, 0.52])
_SLEEVE = np.array([0.16, 0.22, 0.38])
# Where dynamic objects may rest: free counter space in front of the clutter.
_REST_X, _REST_Y = (-0.45, 0.55), (0.08, 0.34)


@dataclass
class MovableObject:
    """A dynamic object: its label words, geometry in its own frame and where it is at each frame."""

    object_id: int
    colour: str
    shape: str
    size: float
    half_height: float
    intersect_local: Callable
    bound_radius: float
    positions: np.ndarray = field(default=None)  # (N, 3) centre per frame
    yaws: np.ndarray = field(default=None)  # (N,) rotation about z per frame

    @property
    def label(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class ClipMotion:
    """How objects and hands move beyond the clean default (flags of divff-make-scene; 0: clean)."""

    long_carry: float = 0.0
    """Fraction of the clip during which one object is held in the hand, close to the body, and so
    moves with the head (0: every object is carried only briefly). The case where NeuralDiff-style
    models give the object to the actor."""
    hand_passes: int = 0
    """Times a hand sweeps in front of a resting object without taking it (occlusion by the actor)."""
    object_texture: float = 0.0
    """Contrast of a printed pattern (stripes, dots, checks) on each object (0: plain colour)."""


_HOLD_CAM = np.array([0.07, -0.16, -0.33])
"""Where a held object sits in camera space (OpenGL: right, up, back): low, in front of the chest."""


@dataclass
class MoveEvent:
    """A hand reaches an object, carries it along an arc and returns: frame fractions of the clip."""

    object_id: int
    start: float
    pick: float
    place: float
    end: float
    hand: str  # "left" or "right"
    destination: Tuple[float, float]  # x, y on the counter where the object is put down
    held: bool = False
    """Held close to the body between pick and place (moves with the head) instead of carried
    along an arc over the counter; the head does not glance at it."""


def make_object_geometry(shape: str, size: float) -> Tuple[Callable, float, float]:
    """(local intersection, half height when resting upright, bounding radius) of a shape name."""
    s = size
    if shape == "cube":
        half = np.full(3, s / 2)
        return (lambda o, d: prim.box(o, d, half)), s / 2, float(np.linalg.norm(half))
    if shape == "brick":
        half = np.array([0.8 * s, 0.4 * s, 0.25 * s])
        return (lambda o, d: prim.box(o, d, half)), 0.25 * s, float(np.linalg.norm(half))
    if shape == "ball":
        radii = np.full(3, s / 2)
        return (lambda o, d: prim.ellipsoid(o, d, radii)), s / 2, s / 2
    if shape == "egg":
        radii = np.array([0.38 * s, 0.38 * s, 0.55 * s])
        return (lambda o, d: prim.ellipsoid(o, d, radii)), 0.55 * s, 0.55 * s
    if shape == "cylinder":
        return (lambda o, d: prim.cylinder(o, d, 0.35 * s, 0.55 * s)), 0.55 * s, 0.66 * s
    if shape == "disc":
        return (lambda o, d: prim.cylinder(o, d, 0.6 * s, 0.12 * s)), 0.12 * s, 0.62 * s
    if shape == "cone":
        return (lambda o, d: prim.cone(o, d, 0.45 * s, 0.6 * s)), 0.6 * s, 0.75 * s
    if shape == "capsule":
        return (lambda o, d: prim.capsule(o, d, 0.45 * s, 0.3 * s)), 0.3 * s, 0.75 * s
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def look_at(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """OpenGL camera-to-world rotation looking from eye to target with world z as up."""
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(np.array([0.0, 0.0, 1.0]), back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c, s = np.cos(roll), np.sin(roll)
    right, up = c * right + s * up, -s * right + c * up
    return np.stack([right, up, back], axis=1)


class KitchenClip:
    """The whole clip, decided from a seed: layout, objects, motion of camera, objects and hands."""

    def __init__(
        self,
        seed: int,
        num_frames: int,
        num_objects: int = 4,
        exclude: Sequence[str] = (),
        texture_detail: float = 0.0,
        motion: ClipMotion = ClipMotion(),
    ):
        """`exclude`: object labels ("red cube") never to use, e.g. combinations held out of a test CLIP.
        `texture_detail`: contrast of a fine albedo speckle on the static surfaces (0: none, the
        scene unchanged); structure from motion needs it, as SIFT finds few stable corners on the
        smooth procedural textures alone. `motion`: harder motion (its options at 0 leave the clip
        as it was, draw for draw)."""
        if num_frames < 2:
            raise ValueError("a clip needs at least 2 frames")
        if not 1 <= num_objects <= 8:
            raise ValueError("num_objects must be between 1 and 8")
        self.rng = np.random.default_rng(seed)
        self.extra_rng = np.random.default_rng([seed, 4])  # what motion options draw: the rest stays the seed's
        self.motion = motion
        self.num_frames = num_frames
        self.s = np.linspace(0.0, 1.0, num_frames)
        self.noise = ValueNoise(self.rng)
        self.static_surfaces = static_kitchen(self.rng, self.noise)
        if texture_detail > 0:
            fine = ValueNoise(np.random.default_rng([seed, 1]))  # own stream: the layout stays the seed's
            self.static_surfaces = [speckled(surface, fine, texture_detail) for surface in self.static_surfaces]
        self.objects = self._choose_objects(num_objects, set(exclude))
        self.camera_seed = int(self.rng.integers(2**31))
        self.events: List[MoveEvent] = []
        self.c2w = self._camera_path()  # (N, 3, 4), before events steer the gaze
        self.events = self._schedule_events()
        self._move_objects()
        self.c2w = self._camera_path()  # same head motion, now glancing at the objects being moved
        self._hold_close()
        self.patterns = [self._pattern() for _ in self.objects] if motion.object_texture > 0 else None
        self.wrists = self._hand_path()  # {"left"/"right": (N, 3) in camera space}

    # ----------------------------------------------------------------------------------- layout
    def _choose_objects(self, k: int, exclude: Set[str]) -> List[MovableObject]:
        combos = [(c, s) for c in COLOURS for s in SHAPES if f"{c} {s}" not in exclude]
        picks = self.rng.choice(len(combos), size=k, replace=False)
        objects = []
        for i, pick in enumerate(picks):
            colour, shape = combos[pick]
            size = float(self.rng.uniform(0.07, 0.095))
            fn, hh, radius = make_object_geometry(shape, size)
            objects.append(MovableObject(i + 1, colour, shape, size, hh, fn, radius))
        rests = self._free_spots(k, [])
        for obj, (x, y) in zip(objects, rests):
            obj.positions = np.tile([x, y, COUNTER_TOP + obj.half_height], (self.num_frames, 1))
            obj.yaws = np.full(self.num_frames, float(self.rng.uniform(0, np.pi)))
        return objects

    def _free_spots(self, k: int, taken: List[np.ndarray], min_dist: float = 0.14) -> List[np.ndarray]:
        spots: List[np.ndarray] = []
        for _ in range(2000):
            if len(spots) == k:
                return spots
            p = np.array([self.rng.uniform(*_REST_X), self.rng.uniform(*_REST_Y)])
            if all(np.linalg.norm(p - q) >= min_dist for q in taken + spots):
                spots.append(p)
        raise RuntimeError("could not place objects without overlap")

    # ----------------------------------------------------------------------------------- motion
    def _sines(self, freqs: Tuple[float, ...], amps: Tuple[float, ...], rng=None) -> np.ndarray:
        phases = (self.rng if rng is None else rng).uniform(0, 2 * np.pi, size=len(freqs))
        return sum(a * np.sin(2 * np.pi * f * self.s + ph) for f, a, ph in zip(freqs, amps, phases))

    def _camera_path(self) -> np.ndarray:
        """Smooth head motion: a slow sway along the counter, a small bob, a wandering gaze."""
        rng = np.random.default_rng(self.camera_seed)
        eye = np.stack(
            [
                self._sines((0.5, 1.3), (0.16, 0.03), rng),
                -0.36 + self._sines((0.7,), (0.03,), rng),
                1.45 + self._sines((2.5, 4.0), (0.012, 0.006), rng),
            ],
            axis=1,
        )
        gaze = np.stack(
            [
                eye[:, 0] + self._sines((0.9, 1.7), (0.12, 0.04), rng),
                0.22 + self._sines((0.8,), (0.07,), rng),
                np.full(self.num_frames, COUNTER_TOP),
            ],
            axis=1,
        )
        roll = self._sines((1.1, 2.3), (0.03, 0.015), rng)
        for event in (e for e in self.events if not e.held):
            obj = self.objects[event.object_id - 1]
            w = smoothstep((self.s - event.start) / 0.05) * (1 - smoothstep((self.s - event.end) / 0.05))
            target = obj.positions[:, :2]
            gaze[:, :2] = gaze[:, :2] * (1 - 0.6 * w[:, None]) + target * 0.6 * w[:, None]
        poses = np.zeros((self.num_frames, 3, 4))
        for i in range(self.num_frames):
            poses[i, :, :3] = look_at(eye[i], gaze[i], roll[i])
            poses[i, :, 3] = eye[i]
        return poses

    def _schedule_events(self) -> List[MoveEvent]:
        """Each object is carried once, in turn, with quiet gaps between moves."""
        k = len(self.objects)
        busy = 0.7
        lengths = [busy / k] * k
        if self.motion.long_carry > 0:  # the first event holds its object for long_carry of the clip
            lengths[0] = self.motion.long_carry / 0.8
            rest = max(0.85 - lengths[0], 0.08 * (k - 1))
            lengths[1:] = [rest / max(k - 1, 1)] * (k - 1)
        gap = (1 - sum(lengths)) / (k + 1)
        if gap <= 0:
            raise ValueError(f"long_carry {self.motion.long_carry} leaves no time for the other {k - 1} objects' moves")
        events = []
        order = self.rng.permutation(k)
        taken = [obj.positions[0, :2] for obj in self.objects]
        for e, idx in enumerate(order):
            obj = self.objects[idx]
            start, length = gap * (e + 1) + sum(lengths[:e]), lengths[e]
            frame = int(round(start * (self.num_frames - 1)))
            w2c_rot = self.c2w[frame, :, :3].T
            cam_x = w2c_rot[0] @ (obj.positions[frame] - self.c2w[frame, :, 3])
            hand = "right" if cam_x >= 0 else "left"
            a = obj.positions[0, :2]
            others = [t for t in taken if not np.allclose(t, a)]
            for _ in range(100):
                b = self._free_spots(1, others)[0]
                if np.linalg.norm(b - a) > 0.18:
                    break
            else:
                raise RuntimeError("no free spot far enough from where the object rests")
            taken = others + [b]
            held = e == 0 and self.motion.long_carry > 0
            pick, place = (0.1, 0.9) if held else (0.25, 0.75)
            span = (start, start + pick * length, start + place * length, start + length)
            events.append(MoveEvent(obj.object_id, *span, hand, (float(b[0]), float(b[1])), held))
        return events

    def _move_objects(self) -> None:
        for event in self.events:
            obj = self.objects[event.object_id - 1]
            a = obj.positions[0].copy()
            b = np.array([*event.destination, a[2]])
            u = np.clip((self.s - event.pick) / (event.place - event.pick), 0, 1)
            path = a + smoothstep(u)[:, None] * (b - a)
            path[:, 2] += 0.12 * np.sin(np.pi * u)
            obj.positions = path
            obj.yaws = obj.yaws + smoothstep(u) * float(self.rng.uniform(-1.2, 1.2))

    def _hold_close(self) -> None:
        """A held object: lifted from the counter to a place in front of the chest, kept there in the
        camera frame (so it moves with the head), then put down at its destination."""
        for event in (e for e in self.events if e.held):
            obj = self.objects[event.object_id - 1]
            held_world = np.einsum("nij,j->ni", self.c2w[:, :, :3], _HOLD_CAM) + self.c2w[:, :, 3]
            u = np.clip((self.s - event.pick) / (event.place - event.pick), 0, 1)
            w = (smoothstep(u / 0.15) * (1 - smoothstep((u - 0.85) / 0.15)))[:, None]
            obj.positions = obj.positions * (1 - w) + held_world * w

    def _pattern(self) -> Callable[[np.ndarray], np.ndarray]:
        """A printed pattern in an object's own frame: (N, 3) local points -> (N,) in [0, 1]."""
        kind, scale = self.extra_rng.integers(3), self.extra_rng.uniform(0.012, 0.025)
        if kind == 0:  # stripes around the object
            return lambda q: (np.sin(q[:, 2] / scale * np.pi) > 0).astype(float)
        if kind == 1:  # dots
            return lambda q: (np.hypot(*(((q[:, :2] / scale) % 1.0) - 0.5).T) < 0.3).astype(float)
        return lambda q: ((np.floor(q[:, 0] / scale) + np.floor(q[:, 1] / scale) + np.floor(q[:, 2] / scale)) % 2).astype(float)

    def _hand_path(self) -> Dict[str, np.ndarray]:
        """Wrist positions in camera space: a rest pose with jitter, reaching out during events."""
        rest = {"right": np.array([0.12, -0.135, -0.36]), "left": np.array([-0.12, -0.135, -0.36])}
        wrists = {}
        for side, base in rest.items():
            jitter = np.stack([self._sines((1.7, 3.1), (0.008, 0.004)) for _ in range(3)], axis=1)
            wrists[side] = base + jitter
        for event in self.events:
            obj = self.objects[event.object_id - 1]
            grip_world = obj.positions + np.array([0.0, 0.0, obj.half_height + 0.025])
            rot = self.c2w[:, :, :3]
            grip_cam = np.einsum("nji,nj->ni", rot, grip_world - self.c2w[:, :, 3])
            reach = smoothstep((self.s - event.start) / (event.pick - event.start))
            back = 1 - smoothstep((self.s - event.place) / (event.end - event.place))
            w = np.minimum(reach, back)[:, None]
            wrists[event.hand] = wrists[event.hand] * (1 - w) + grip_cam * w
        for _ in range(self.motion.hand_passes):
            self._pass_in_front(wrists)
        return wrists

    def _pass_in_front(self, wrists: Dict[str, np.ndarray]) -> None:
        """A hand sweeps over a resting object, between it and the camera, and goes back: at a time
        when no object is being moved, towards an object the camera sees."""
        busy = [(e.start, e.end) for e in self.events]
        for _ in range(200):
            centre = float(self.extra_rng.uniform(0.05, 0.95))
            if all(centre + 0.05 < a or centre - 0.05 > b for a, b in busy):
                break
        frame = int(round(centre * (self.num_frames - 1)))
        rot, eye = self.c2w[frame, :, :3], self.c2w[frame, :, 3]
        seen = [obj for obj in self.objects if ((obj.positions[frame] - eye) @ rot)[2] < 0]
        obj = seen[int(self.extra_rng.integers(len(seen)))] if seen else self.objects[0]
        # a point a third of the way from the object to the eye, a little above it
        target_world = obj.positions + (eye - obj.positions) / 3 + np.array([0.0, 0.0, 0.04])
        target = np.einsum("nji,nj->ni", self.c2w[:, :, :3], target_world - self.c2w[:, :, 3])
        side = "right" if target[frame, 0] >= 0 else "left"
        w = np.exp(-0.5 * ((self.s - centre) / 0.02) ** 2)[:, None]
        wrists[side] = wrists[side] * (1 - w) + target * w

    # -------------------------------------------------------------------------------- per frame
    def carried(self, frame: int) -> List[int]:
        """Ids of the objects a hand holds at this frame (between pick and place)."""
        return [e.object_id for e in self.events if e.pick <= self.s[frame] <= e.place]

    def object_surfaces(self, frame: int) -> List[Surface]:
        out = []
        for k, obj in enumerate(self.objects):
            colour = np.array(COLOURS[obj.colour])
            rotation = prim.rotation_z(obj.yaws[frame])
            centre = obj.positions[frame]
            pattern = self.patterns[k] if self.patterns is not None else None

            def albedo(p: np.ndarray, nrm: np.ndarray, colour=colour, pattern=pattern, centre=centre, rotation=rotation) -> np.ndarray:
                if pattern is None:
                    return np.broadcast_to(colour, p.shape).copy()
                printed = pattern((p - centre) @ rotation)[:, None] * self.motion.object_texture
                return colour * (1 - printed) + (1 - colour) * printed  # the pattern in the complementary colour

            shape = prim.Shape(obj.intersect_local, centre, rotation, obj.bound_radius)
            out.append(Surface(shape, albedo, obj.object_id))
        return out

    def actor_surfaces(self, frame: int) -> List[Surface]:
        """Arms in camera space: upper arm (sleeve), forearm, palm, four fingers and a thumb."""
        n = self.noise

        def skin(p: np.ndarray, nrm: np.ndarray) -> np.ndarray:
            return _SKIN * (0.92 + 0.16 * n(p[:, 0] * 60, p[:, 1] * 60 + p[:, 2] * 60)[:, None])

        def sleeve(p: np.ndarray, nrm: np.ndarray) -> np.ndarray:
            return np.broadcast_to(_SLEEVE, p.shape).copy()

        surfaces = []
        for side, sign in (("right", 1.0), ("left", -1.0)):
            wrist = self.wrists[side][frame]
            shoulder = np.array([0.2 * sign, -0.32, -0.1])
            to_wrist = wrist - shoulder
            elbow = wrist - 0.26 * to_wrist / np.linalg.norm(to_wrist)
            elbow[1] -= 0.05
            surfaces.append(Surface(segment(shoulder, elbow, 0.05), sleeve, ACTOR_ID))
            surfaces.append(Surface(segment(elbow, wrist, 0.032), skin, ACTOR_ID))
            forward = wrist - elbow
            forward /= np.linalg.norm(forward)
            hand_dir = forward + np.array([0.0, -0.35, 0.0])
            hand_dir /= np.linalg.norm(hand_dir)
            palm_rot = prim.rotation_from_axes(hand_dir, np.array([0.0, 1.0, 0.0]))
            palm_centre = wrist + 0.045 * hand_dir
            radii = np.array([0.05, 0.04, 0.016])
            surfaces.append(
                Surface(prim.Shape(lambda o, d, r=radii: prim.ellipsoid(o, d, r), palm_centre, palm_rot, 0.05), skin, ACTOR_ID)
            )
            lateral = palm_rot[:, 1]
            for f, offset in enumerate((-0.027, -0.009, 0.009, 0.027)):
                base = palm_centre + 0.04 * hand_dir + offset * lateral
                tip = base + (0.05 + 0.008 * (f in (1, 2))) * (hand_dir + 0.15 * offset / 0.027 * lateral)
                surfaces.append(Surface(segment(base, tip, 0.0085), skin, ACTOR_ID))
            thumb_base = palm_centre - 0.035 * sign * lateral
            thumb_tip = thumb_base + 0.045 * (0.6 * hand_dir - 0.8 * sign * lateral)
            surfaces.append(Surface(segment(thumb_base, thumb_tip, 0.01), skin, ACTOR_ID))
        return surfaces
