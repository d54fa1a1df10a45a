"""Captioned image crops from generated kitchen clips: the training data of the project's test CLIP.

A crop shows one thing the language queries ask about (a dynamic object, the actor's hand/arm, or a
piece of floor, counter, wall or cabinet) and carries the attribute words true of it. Captions are
drawn from templates that name the full label ("a red cube") or a single attribute ("red", "a
cube"), so a contrastive model learns colour and shape words separately and can compose them for
combinations it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import FrozenSet, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from divff_nerfstudio.language.pyramid_targets import PatchPyramidConfig
from divff_nerfstudio.synthetic.camera_effects import CameraResponse
from divff_nerfstudio.synthetic.raycast import Intrinsics, render_frame
from divff_nerfstudio.synthetic.scene import COLOURS, SHAPES, KitchenClip, MovableObject
from divff_nerfstudio.synthetic.surfaces import ACTOR_ID, COUNTER_TOP

OBJECT_TEMPLATES = ("a {c} {s}", "{c} {s}", "a photo of a {c} {s}", "the {c} {s} on the counter")
COLOUR_TEMPLATES = ("{c}", "something {c}", "a {c} object")
SHAPE_TEMPLATES = ("a {s}", "{s}", "a photo of a {s}")
ACTOR_CAPTIONS = ("a hand", "hand", "an arm", "hands", "the person's hand", "a hand and arm")
CARRY_CAPTIONS = ("carrying", "carrying something", "a hand carrying an object", "holding", "picking up")
"""The action of the generated scenes' affordance masks: an object held by a hand."""
GENERIC_CAPTIONS = {"object": ("object", "an object", "things", "a thing"), "stuff": ("stuff", "texture", "background")}
"""Vague words for any object / any background: relevancy's negatives (object, things, stuff,
texture) must mean something, as they do for a real CLIP, or a query is compared with noise."""
PLACE_CAPTIONS = {
    "floor": ("floor", "the floor", "floor tiles"),
    "counter": ("counter", "a wooden counter", "kitchen worktop"),
    "wall": ("wall", "a kitchen wall", "wall tiles"),
    "cabinet": ("cabinet", "a cabinet door", "kitchen cabinet"),
}


@dataclass(frozen=True)
class Crop:
    """A square crop (float RGB in [0, 1]) and the words true of it; an object crop also keeps the
    object's pixels and flat colour, so training can repaint the object alone (see test_clip)."""

    image: np.ndarray  # (S, S, 3)
    attributes: FrozenSet[str]  # e.g. {"red", "cube", "red cube", "object"}, {"hand"}, {"floor", "stuff"}
    label: str  # the full name: "red cube", "hand", "floor"
    mask: Optional[np.ndarray] = None  # (S, S) bool: the object's pixels
    albedo: Optional[Tuple[float, float, float]] = None  # the object's colour before shading


def caption_for(crop: Crop, rng: np.random.Generator, generic: float = 0.1) -> Tuple[str, FrozenSet[str]]:
    """A random caption for the crop, and the attributes the caption asserts (a caption fits every
    crop whose attributes include these); a vague one ("things", "stuff") with probability `generic`."""
    vague = [g for g in GENERIC_CAPTIONS if g in crop.attributes]
    if vague and rng.random() < generic:
        return str(rng.choice(GENERIC_CAPTIONS[vague[0]])), frozenset(vague[:1])
    if crop.label in PLACE_CAPTIONS:
        return str(rng.choice(PLACE_CAPTIONS[crop.label])), frozenset({crop.label})
    if crop.label == "hand":
        return str(rng.choice(ACTOR_CAPTIONS)), frozenset({"hand"})
    if "carrying" in crop.attributes and rng.random() < 0.5:
        return str(rng.choice(CARRY_CAPTIONS)), frozenset({"carrying"})
    colour, shape = crop.label.split(" ")
    kind = rng.random()  # shape words get the most: shape is the harder half of a label to see
    if kind < 0.35:
        return str(rng.choice(OBJECT_TEMPLATES)).format(c=colour, s=shape), frozenset({crop.label})
    if kind < 0.6:
        return str(rng.choice(COLOUR_TEMPLATES)).format(c=colour), frozenset({colour})
    return str(rng.choice(SHAPE_TEMPLATES)).format(s=shape), frozenset({shape})


def all_object_labels() -> List[str]:
    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


def _square(image: np.ndarray, cy: float, cx: float, side: int, size: int) -> np.ndarray:
    """A square window of `side` pixels centred near (cy, cx), clamped into the image (RGB or a
    label map) and resized to size x size (nearest-area sampling: crops are tiny)."""
    h, w = image.shape[:2]
    side = int(min(max(side, 6), h, w))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    window = image[y0 : y0 + side, x0 : x0 + side]
    idx = (np.arange(size) + 0.5) * side / size
    return window[idx.astype(int)][:, idx.astype(int)]


def _place_of(point: np.ndarray) -> str:
    """Which part of the kitchen a background world point is on (the generator's layout)."""
    x, y, z = point
    if z < 0.02:
        return "floor"
    if abs(z - COUNTER_TOP) < 0.02 and y > 0:
        return "counter"
    if z > 1.48 and y > 0.28:
        return "cabinet"
    return "wall"


WINDOW_FRACTIONS = PatchPyramidConfig().patch_fractions
"""Window sides as fractions of the frame height: the patch pyramid's default crop sizes."""
WINDOW_MIN_SHARE = 0.35
"""A window is captioned by the object or hand covering at least this share of it; others are dropped."""


def frame_crops(
    clip: KitchenClip,
    frame: int,
    intr: Intrinsics,
    rng: np.random.Generator,
    size: int = 32,
    per_thing: int = 3,
    windows: int = 0,
    camera: Optional[CameraResponse] = None,
) -> Iterator[Crop]:
    """Crops of one rendered frame: each visible object (several margins), the actor, background;
    then `windows` squares at random places with the patch pyramid's sizes. The teacher embeds
    such windows, which cut objects off-centre and show their neighbours; trained only on centred
    crops, the CLIP met them first as a teacher. `camera`: the frame as that camera records it
    (its effects, then JPEG at its quality, if any)."""
    render = render_frame(clip, frame, intr, supersample=1, labels=True)
    rgb, ids, depth = render.rgb, render.labels, render.depth
    if camera is not None:
        rgb = camera.apply(rgb, frame, render.pixel_depth(), render.actor_coverage, intr.K, clip.c2w)
        quality = camera.effects.jpeg_quality
        if quality > 0:
            encoded = cv2.imencode(".jpg", np.round(rgb[..., ::-1] * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
            rgb = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255
    h, w = ids.shape
    carried = clip.carried(frame)

    def object_crop(obj: MovableObject, cy: float, cx: float, side: int) -> Crop:
        return Crop(
            _square(rgb, cy, cx, side, size),
            frozenset({obj.label, obj.colour, obj.shape, "object"} | ({"carrying"} if obj.object_id in carried else set())),
            obj.label,
            mask=_square(ids == obj.object_id, cy, cx, side, size),
            albedo=COLOURS[obj.colour],
        )

    for obj in clip.objects:
        ys, xs = np.nonzero(ids == obj.object_id)
        if len(ys) < 20:
            continue
        extent = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
        for _ in range(per_thing):
            side = extent * rng.uniform(1.1, 1.8)
            cy, cx = (ys.min() + ys.max()) / 2 + rng.normal(0, 1.5), (xs.min() + xs.max()) / 2 + rng.normal(0, 1.5)
            yield object_crop(obj, cy, cx, int(side))
    actor = np.argwhere(ids == ACTOR_ID)
    if len(actor) > 40:
        for _ in range(per_thing):
            cy, cx = actor[rng.integers(len(actor))]
            yield Crop(_square(rgb, cy, cx, int(rng.uniform(16, 40)), size), frozenset({"hand"}), "hand")
    c2w = clip.c2w[frame]
    for _ in range(per_thing):
        side = int(rng.uniform(16, 40))
        cy, cx = rng.uniform(side / 2, h - side / 2), rng.uniform(side / 2, w - side / 2)
        y0, x0 = int(cy - side / 2), int(cx - side / 2)
        if (ids[y0 : y0 + side, x0 : x0 + side] != 0).mean() > 0.05:
            continue
        z = depth[int(cy), int(cx)]
        ray = np.array([(cx - intr.cx) / intr.fx, -(cy - intr.cy) / intr.fy, -1.0]) * z
        place = _place_of(c2w[:, :3] @ ray + c2w[:, 3])
        yield Crop(_square(rgb, cy, cx, side, size), frozenset({place, "stuff"}), place)
    by_id = {obj.object_id: obj for obj in clip.objects}
    for _ in range(windows):
        side = max(int(h * rng.choice(WINDOW_FRACTIONS) * rng.uniform(0.8, 1.25)), 6)
        cy, cx = rng.uniform(side / 2, h - side / 2), rng.uniform(side / 2, w - side / 2)
        y0, x0 = int(cy - side / 2), int(cx - side / 2)
        found, counts = np.unique(ids[y0 : y0 + side, x0 : x0 + side], return_counts=True)
        counts[found == 0] = 0
        best = int(found[counts.argmax()])
        if counts.max() < WINDOW_MIN_SHARE * side * side:
            continue
        if best in by_id:
            yield object_crop(by_id[best], cy, cx, side)
        elif best == ACTOR_ID:
            yield Crop(_square(rgb, cy, cx, side, size), frozenset({"hand"}), "hand")


def generate_crops(
    seeds: Sequence[int],
    frames_per_clip: int,
    exclude: Sequence[str] = (),
    size: int = 32,
    num_objects: int = 8,
    intr: Intrinsics | None = None,
    windows: int = 0,
    hard_share: float = 0.0,
) -> List[Crop]:
    """Crops from clips with `num_objects` objects each (never an excluded label), a few frames per
    clip; about `hard_share` of the clips look like divff-make-scene's hard preset (printed objects,
    speckled surfaces, the camera's drift, blur, noise and JPEG)."""
    from divff_nerfstudio.synthetic.epic_writer import SceneConfig

    intr = intr or SceneConfig().intrinsics()
    hard = SceneConfig.hard()
    crops: List[Crop] = []
    for seed in seeds:
        rng = np.random.default_rng(10_000 + seed)
        if np.random.default_rng([10_000 + seed, 5]).random() < hard_share:  # own draw: clean clips stay as they were
            clip = KitchenClip(seed, 40, num_objects, exclude, texture_detail=hard.texture_detail, motion=hard.motion)
            camera: Optional[CameraResponse] = CameraResponse(hard.camera, 40, seed)
        else:
            clip, camera = KitchenClip(seed, num_frames=40, num_objects=num_objects, exclude=exclude), None
        for frame in rng.choice(40, size=frames_per_clip, replace=False):
            crops.extend(frame_crops(clip, int(frame), intr, rng, size, windows=windows, camera=camera))
    return crops
