"""A procedural first-person kitchen clip: counter, walls, clutter, movable objects and two arms.

The clip mimics what NeuralDiff decomposes: a static room seen by a moving head, a few objects that
rest most of the time and are occasionally carried by a hand to another place, and forearms/hands
that stay near a fixed place in the camera frame (with jitter) and reach out to pick things up.
World frame: z up, metres; the counter top is the plane z = COUNTER_TOP. Cameras follow the
OpenGL/nerfstudio convention (x right, y up, looking down -z).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from divff_nerfstudio.synthetic import primitives as prim

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

COUNTER_TOP = 0.9
ACTOR_ID = 255
"""Label of actor pixels in the ground-truth id maps (objects are 1..K, background 0)."""

_SKIN = np.array([0.87, 0.64, 0.52])
_SLEEVE = np.array([0.16, 0.22, 0.38])
_LIGHT = np.array([0.3, -0.6, 2.3])
# Where dynamic objects may rest: free counter space in front of the clutter.
_REST_X, _REST_Y = (-0.45, 0.55), (0.08, 0.34)


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
class MoveEvent:
    """A hand reaches an object, carries it along an arc and returns: frame fractions of the clip."""

    object_id: int
    start: float
    pick: float
    place: float
    end: float
    hand: str  # "left" or "right"
    destination: Tuple[float, float]  # x, y on the counter where the object is put down


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

    def __init__(self, seed: int, num_frames: int, num_objects: int = 4, exclude: Sequence[str] = (), texture_detail: float = 0.0):
        """`exclude`: object labels ("red cube") never to use, e.g. combinations held out of a test CLIP.
        `texture_detail`: contrast of a fine albedo speckle on the static surfaces (0: none, the
        scene unchanged); structure from motion needs it, as SIFT finds few stable corners on the
        smooth procedural textures alone."""
        if num_frames < 2:
            raise ValueError("a clip needs at least 2 frames")
        if not 1 <= num_objects <= 8:
            raise ValueError("num_objects must be between 1 and 8")
        self.rng = np.random.default_rng(seed)
        self.num_frames = num_frames
        self.s = np.linspace(0.0, 1.0, num_frames)
        self.noise = ValueNoise(self.rng)
        self.static_surfaces = self._build_static()
        if texture_detail > 0:
            fine = ValueNoise(np.random.default_rng([seed, 1]))  # own stream: the layout stays the seed's
            self.static_surfaces = [_speckled(surface, fine, texture_detail) for surface in self.static_surfaces]
        self.objects = self._choose_objects(num_objects, set(exclude))
        self.camera_seed = int(self.rng.integers(2**31))
        self.events: List[MoveEvent] = []
        self.c2w = self._camera_path()  # (N, 3, 4), before events steer the gaze
        self.events = self._schedule_events()
        self._move_objects()
        self.c2w = self._camera_path()  # same head motion, now glancing at the objects being moved
        self.wrists = self._hand_path()  # {"left"/"right": (N, 3) in camera space}

    # ----------------------------------------------------------------------------------- layout
    def _build_static(self) -> List[Surface]:
        n = self.noise
        wall_tint = np.array(COLOURS["white"]) * 0.6 + self.rng.random(3) * 0.3

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
        for event in self.events:
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
        length = busy / k
        gap = (1 - busy) / (k + 1)
        events = []
        order = self.rng.permutation(k)
        taken = [obj.positions[0, :2] for obj in self.objects]
        for e, idx in enumerate(order):
            obj = self.objects[idx]
            start = gap * (e + 1) + length * e
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
            span = (start, start + 0.25 * length, start + 0.75 * length, start + length)
            events.append(MoveEvent(obj.object_id, *span, hand, (float(b[0]), float(b[1]))))
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
        return wrists

    # -------------------------------------------------------------------------------- per frame
    def carried(self, frame: int) -> List[int]:
        """Ids of the objects a hand holds at this frame (between pick and place)."""
        return [e.object_id for e in self.events if e.pick <= self.s[frame] <= e.place]

    def object_surfaces(self, frame: int) -> List[Surface]:
        out = []
        for obj in self.objects:
            colour = np.array(COLOURS[obj.colour])

            def albedo(p: np.ndarray, nrm: np.ndarray, colour=colour) -> np.ndarray:
                return np.broadcast_to(colour, p.shape).copy()

            rotation = prim.rotation_z(obj.yaws[frame])
            shape = prim.Shape(obj.intersect_local, obj.positions[frame], rotation, obj.bound_radius)
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
            surfaces.append(Surface(_segment(shoulder, elbow, 0.05), sleeve, ACTOR_ID))
            surfaces.append(Surface(_segment(elbow, wrist, 0.032), skin, ACTOR_ID))
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
                surfaces.append(Surface(_segment(base, tip, 0.0085), skin, ACTOR_ID))
            thumb_base = palm_centre - 0.035 * sign * lateral
            thumb_tip = thumb_base + 0.045 * (0.6 * hand_dir - 0.8 * sign * lateral)
            surfaces.append(Surface(_segment(thumb_base, thumb_tip, 0.01), skin, ACTOR_ID))
        return surfaces


def _speckled(surface: Surface, noise: ValueNoise, amount: float) -> Surface:
    """The surface with its albedo modulated by fine noise (blobs of about 1.5 cm)."""

    def albedo(p: np.ndarray, nrm: np.ndarray) -> np.ndarray:
        fine = noise.fbm(p[:, 0] * 60 + p[:, 2] * 37, p[:, 1] * 60 - p[:, 2] * 53, octaves=2)
        return np.clip(surface.albedo(p, nrm) * (1 + amount * (2 * fine[:, None] - 1)), 0.0, 1.0)

    return Surface(surface.shape, albedo, surface.label)


def _segment(a: np.ndarray, b: np.ndarray, radius: float) -> prim.Shape:
    """Capsule from a to b."""
    axis = b - a
    half_len = float(np.linalg.norm(axis)) / 2
    rotation = prim.rotation_from_axes(axis, np.array([0.0, 0.0, 1.0]))
    return prim.Shape(
        lambda o, d: prim.capsule(o, d, half_len, radius), (a + b) / 2, rotation, half_len + radius, ((a, radius), (b, radius))
    )


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


def render_frame(clip: KitchenClip, frame: int, intr: Intrinsics, supersample: int = 1, labels: bool = False) -> FrameRender:
    """Ray-cast one frame, averaging supersample x supersample rays per pixel for colour.

    Depth is at supersampled resolution (enough for near/far quantiles). With `labels`, a second
    pass casts one ray through each pixel centre (nerfstudio's pixel convention) for exact
    ground-truth depth and labels at frame resolution.
    """
    rgb, depth, ids = _cast(clip, frame, intr, supersample)
    if labels and supersample > 1:
        _, depth, ids = _cast(clip, frame, intr, 1, colour=False)
    return FrameRender(rgb, depth, ids if labels else None)


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
