"""Evidence that a surface the static stream draws is not always there: an object that rests for
most of the video and is moved once.

Such an object is drawn most cheaply by the static stream: it is there in most frames, and the few
frames after it moved cost a faint ghost. The annotation (NeuralDiff's split) puts it in the
objects stream in every frame. The colour loss cannot tell the two apart; time can. Partway through
training each training frame is rendered (static colour and depth, and the composite's depth). A
pixel whose observation the static stream reproduces gives a point on the static surface; that
point is projected into the other frames, where it is visible if the static depth there agrees and
nothing dynamic stands in front. If, for a run of `min_run` consecutive frames in which it is
visible, the observation there differs from its own, the surface was gone for a while: the pixel
gets evidence. Hands passing over a surface are brief; a moved object leaves a long run.

That finds an object in the phase the static stream draws (most often its longest rest). In a
shorter phase (a brief rest before or after a long one elsewhere) the static stream draws what is
there the rest of the time, the counter; the observation disagrees with it, and at that point in
training the dynamic streams do not draw the object either (the uncertainty absorbs the error).
So a pixel the static stream does not reproduce gets evidence too, where the static surface behind
it is seen, in at least `min_agreeing` other frames, as the static stream draws it, and not as
something that was gone for a while (the first evidence): the static stream is right about that
surface, and something else stood in front of it in this frame. Without that last condition the
counter where a resting object was missing for a while would count as well. A surface the static
stream has not learnt (fine texture, noise) agrees nowhere and gets none. Colours are compared
against a small window (registration errors) and thin responses (edges) are removed by a
morphological opening.

Optionally (`ghosts`) the same comparison also says where the static stream is wrong: in a frame
in which a surface seen gone was visible and absent, the static stream still draws it, since it
cannot draw time, and a dynamic stream learns to draw what the frame shows in front of it, which
keeps the static stream's density in place (a ghost of the object where it stood) and gives the
background to the dynamic streams. Those pixels are marked GHOST (the frame shows what lies
behind: the static surface, nothing dynamic), so the dynamic streams are asked to give them up and
the colour loss carves the static density away, leaving the object to the objects stream in every
frame. The
other evidence is CHANGED: "this is dynamic", like the motion prior's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, UInt8
from nerfstudio.cameras.cameras import Cameras
from rich.progress import track
from torch import Tensor

CHANGED = 1
"""The pixel is dynamic: its surface was gone for a while, or something stands in front of it."""
GHOST = 2
"""The pixel shows the static surface behind a surface that is gone from it in this frame."""


@dataclass(frozen=True)
class ChangePriorConfig:
    """Where the change evidence is computed from (its loss weight is the model's change_loss_weight)."""

    at_step: int = 1500
    """Training step at which the evidence is computed from the model's renders (once; a resumed run
    reads it from its checkpoint)."""
    scale: float = 0.5
    """Size of the renders it is computed from, as a fraction of the frames'."""
    colour_change: float = 0.15
    """RGB distance (values in [0, 1]) above which a surface point looks different in another frame."""
    static_agreement: float = 0.15
    """Largest RGB distance between a pixel's observation and the static render for it to count as
    the static surface."""
    depth_tolerance: float = 0.12
    """Relative distance mismatch up to which a point counts as visible in another frame."""
    front_margin: float = 0.03
    """A point is hidden by something dynamic where the composite's depth is this fraction nearer
    than the static depth (where no dynamic stream has density the two are equal; an object a few
    centimetres tall resting on the counter is only a few percent nearer than the counter)."""
    window: int = 2
    """Half-size of the window (render pixels) searched for the point's own colour in another frame."""
    min_run: int = 5
    """Consecutive visible frames that must differ."""
    min_agreeing: int = 5
    """Frames in which the static surface behind a pixel the static stream does not reproduce must be
    seen as the static stream draws it (0: only the first evidence, surfaces gone for a while)."""
    drawn_agreement: float = 0.08
    """Largest RGB distance at which another frame shows that surface as the static stream draws it.
    Stricter than static_agreement: a surface learnt only roughly (fine tiles, printed texture)
    agrees at the looser one with the frames blurred or noisy enough to hide the difference."""
    ghost_dynamic_max: float = 0.5
    """Dynamic share at that step below which a pixel where a gone surface is absent counts as a
    ghost (with the model's ghost_loss_weight): above it a hand may stand there."""
    ghost_ring: int = 3
    """Width (render pixels) of the ring around a blob of gone evidence whose static depth it must
    stand in front of to have ghosts."""
    max_compared: int = 96
    """Frames each pixel is compared with, spread over the video (bounds the cost on long videos)."""


@dataclass
class FrameRender:
    """What the evidence (this and the arm prior's) needs of one training frame, at render size."""

    observed: Float[Tensor, "h w 3"]
    """The frame, brought to the renders' exposure."""
    static_rgb: Float[Tensor, "h w 3"]
    static_depth: Float[Tensor, "h w"]
    """Distance along each ray to the static surface."""
    dynamic_in_front: Bool[Tensor, "h w"]
    """The composite's surface is in front of the static one (a hand, a moved object; see front_margin)."""
    camera: Cameras
    """The frame's camera at render size (a single camera)."""
    dynamic_share: Float[Tensor, "h w"]
    """The objects' and the actor's share of the composite (read by the arm prior)."""


def _project(points: Float[Tensor, "*n 3"], frame: FrameRender):
    """Pixel (column, row) of each point in `frame`, its distance from that camera, and whether it
    falls inside the image in front of the camera."""
    camera = frame.camera
    pose = camera.camera_to_worlds.reshape(3, 4)
    offset = points - pose[:, 3]
    local = offset @ pose[:, :3]  # OpenGL camera axes: y up, looking down -z
    z = -local[..., 2]
    fx, fy, cx, cy = (float(v) for v in (camera.fx, camera.fy, camera.cx, camera.cy))
    safe = z.clamp(min=1e-6)
    u = (fx * local[..., 0] / safe + cx).floor().long()
    v = (-fy * local[..., 1] / safe + cy).floor().long()
    h, w = frame.static_depth.shape
    inside = (z > 1e-3) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    return u.clamp(0, w - 1), v.clamp(0, h - 1), offset.norm(dim=-1), inside


def visible_in(points: Float[Tensor, "*n 3"], other: FrameRender, config: ChangePriorConfig):
    """Pixel of each point in `other` and whether the point is what that frame's static surface
    shows there, with nothing dynamic in front."""
    u, v, distance, visible = _project(points, other)
    visible &= (distance - other.static_depth[v, u]).abs() < config.depth_tolerance * distance
    visible &= ~other.dynamic_in_front[v, u]
    return u, v, visible


def surface_points(frame: FrameRender) -> Float[Tensor, "h w 3"]:
    rays = frame.camera.generate_rays(camera_indices=0, keep_shape=True)
    return rays.origins + rays.directions * frame.static_depth[..., None]


def _static_here(frame: FrameRender, config: ChangePriorConfig) -> Bool[Tensor, "h w"]:
    return (frame.observed - frame.static_rgb).norm(dim=-1) <= config.static_agreement


def _opened(mask: Bool[Tensor, "h w"]) -> Bool[Tensor, "h w"]:
    """Erode, then dilate: thin responses (edges) go."""
    x = mask.float()[None, None]
    return F.max_pool2d(-F.max_pool2d(-x, 3, 1, 1), 3, 1, 1)[0, 0] > 0.5


def _seen_as_drawn(frame: FrameRender, gone: Bool[Tensor, "h w"], config: ChangePriorConfig) -> Bool[Tensor, "h w"]:
    """Where this frame shows the static surface as the static stream draws it, and that surface
    does not count as gone for a while (its gone_evidence)."""
    return ((frame.observed - frame.static_rgb).norm(dim=-1) <= config.drawn_agreement) & ~gone


def _nearest_colour_distance(
    other: FrameRender, u: Tensor, v: Tensor, colour: Float[Tensor, "*n 3"], config: ChangePriorConfig
) -> Float[Tensor, "*n"]:
    """Distance from `colour` to the closest observed colour of `other` in the window around (u, v)."""
    oh, ow = other.static_depth.shape
    nearest = torch.full(u.shape, float("inf"))
    for dv in range(-config.window, config.window + 1):
        for du in range(-config.window, config.window + 1):
            seen = other.observed[(v + dv).clamp(0, oh - 1), (u + du).clamp(0, ow - 1)]
            nearest = torch.minimum(nearest, (seen - colour).norm(dim=-1))
    return nearest


def gone_evidence(
    frame: FrameRender, points: Float[Tensor, "h w 3"], static_here: Bool[Tensor, "h w"], others: Sequence[FrameRender], config: ChangePriorConfig
) -> Bool[Tensor, "h w"]:
    """Pixels the static stream draws (`static_here`) whose surface (`points`) was gone for
    `min_run` visible frames in a row (`others` in video order)."""
    h, w = frame.static_depth.shape
    run = torch.zeros(h, w)
    longest = torch.zeros(h, w)
    for other in others:
        u, v, visible = visible_in(points, other, config)
        changed = visible & (_nearest_colour_distance(other, u, v, frame.observed, config) > config.colour_change)
        run = torch.where(visible, torch.where(changed, run + 1, torch.zeros_like(run)), run)
        longest = torch.maximum(longest, run)
    return _opened((longest >= config.min_run) & static_here)


def in_front_evidence(
    points: Float[Tensor, "h w 3"],
    static_here: Bool[Tensor, "h w"],
    others: Sequence[FrameRender],
    others_drawn: Sequence[Bool[Tensor, "h w"]],
    config: ChangePriorConfig,
) -> Bool[Tensor, "h w"]:
    """Pixels the static stream does not reproduce whose static surface is seen as drawn in at least
    `min_agreeing` of the other frames (`others_drawn`, each other frame's _seen_as_drawn)."""
    candidates = ~static_here
    behind = points[candidates]
    agreeing = torch.zeros(behind.shape[0])
    for other, drawn in zip(others, others_drawn):
        u, v, visible = visible_in(behind, other, config)
        agreeing += visible & drawn[v, u]
    evidence = torch.zeros_like(candidates)
    evidence[candidates] = agreeing >= config.min_agreeing
    return _opened(evidence)


def _standing_out(gone: Bool[Tensor, "h w"], depth: Float[Tensor, "h w"], config: ChangePriorConfig) -> Bool[Tensor, "h w"]:
    """The blobs of `gone` whose static depth stands in front of the static surface around them
    (median, by `front_margin`): an object resting on the counter. A blob flush with its
    surroundings is the counter itself, gone only while an object neither stream drew yet stood on it."""
    mask = gone.cpu().numpy().astype(np.uint8)
    count, blobs = cv2.connectedComponents(mask, connectivity=4)
    ring_size = 2 * config.ghost_ring + 1
    kept = np.zeros_like(mask, dtype=bool)
    depth_np = depth.cpu().numpy()
    for blob in range(1, count):
        inside = blobs == blob
        ring = (cv2.dilate(inside.astype(np.uint8), np.ones((ring_size, ring_size), np.uint8)) > 0) & (mask == 0)
        if ring.any() and np.median(depth_np[inside]) < (1 - config.front_margin) * np.median(depth_np[ring]):
            kept |= inside
    return torch.from_numpy(kept)


def _run_lengths(hit: Bool[Tensor, "frames n"], counted: Bool[Tensor, "frames n"]) -> Float[Tensor, "frames n"]:
    """Length of the run of consecutive hits each hit belongs to, over the frames `counted` (the
    others neither extend nor break a run); 0 where there is no hit."""
    forward, backward = torch.zeros_like(hit, dtype=torch.float32), torch.zeros_like(hit, dtype=torch.float32)
    run = torch.zeros(hit.shape[1])
    for k in range(hit.shape[0]):
        run = torch.where(counted[k], torch.where(hit[k], run + 1, torch.zeros_like(run)), run)
        forward[k] = run
    run = torch.zeros(hit.shape[1])
    for k in reversed(range(hit.shape[0])):
        run = torch.where(counted[k], torch.where(hit[k], run + 1, torch.zeros_like(run)), run)
        backward[k] = run
    return torch.where(hit, forward + backward - 1, torch.zeros_like(forward))


def ghost_evidence(
    frames: Sequence[FrameRender],
    points: Sequence[Float[Tensor, "h w 3"]],
    gone: Sequence[Bool[Tensor, "h w"]],
    compared: Sequence[int],
    config: ChangePriorConfig,
) -> Dict[int, Bool[Tensor, "h w"]]:
    """For each compared frame (by position in `frames`), the pixels where a surface of another
    frame's gone evidence is visible and absent, showing what the frames show there in its absence
    (the median colour of the frames it is absent from, in a run of at least `min_run` of them: a
    surface behind, not an object or a hand passing), and where the static stream does not
    reproduce the frame (it draws the surface anyway), with little dynamic share. Only surfaces
    that stand out in front of the static surface around them (_standing_out) and are present in
    most of the frames that see them: the static stream draws what is there most of the time, so
    a surface absent from most frames is one it drew before it learnt better (the counter under an
    object neither stream drew yet), and its "absence" is that object."""
    ghosts = {j: torch.zeros_like(frames[j].static_depth, dtype=torch.bool) for j in compared}
    for i in range(len(frames)):
        standing = _standing_out(gone[i], frames[i].static_depth, config)
        if not standing.any():
            continue
        surface, colour = points[i][standing], frames[i].observed[standing]
        pixels, visible, absent, seen = [], [], [], []
        for j in compared:
            u, v, seen_here = visible_in(surface, frames[j], config)
            pixels.append((u, v))
            visible.append(seen_here)
            absent.append(seen_here & (_nearest_colour_distance(frames[j], u, v, colour, config) > config.colour_change))
            seen.append(frames[j].observed[v, u])
        visible_in_each, absent_in_each, seen_in_each = torch.stack(visible), torch.stack(absent), torch.stack(seen)
        in_absence = torch.where(absent_in_each[..., None], seen_in_each, torch.full_like(seen_in_each, float("nan")))
        behind = in_absence.nanmedian(dim=0).values
        agreeing = absent_in_each & ((seen_in_each - behind).norm(dim=-1) <= config.colour_change)
        # a run is broken where the surface is back, not where something passes in front of it
        agreeing &= _run_lengths(agreeing, agreeing | (visible_in_each & ~absent_in_each)) >= config.min_run
        # the static stream draws what is there most of the time; a surface absent from most of the
        # frames that see it is not what it would draw, but what it drew before it learnt better
        agreeing &= 2 * absent_in_each.sum(dim=0) < visible_in_each.sum(dim=0)
        for j, (u, v), found in zip(compared, pixels, agreeing):
            ghosts[j][v[found], u[found]] = True
    for j, found in ghosts.items():
        frame = frames[j]
        # projected pixels leave holes between them: close them before keeping the wrong ones
        grown = F.max_pool2d(found.float()[None, None], 3, 1, 1)[0, 0] > 0.5
        ghosts[j] = grown & ~_static_here(frame, config) & (frame.dynamic_share < config.ghost_dynamic_max)
    return ghosts


def compared_frames(frame_index: Sequence[int], config: ChangePriorConfig) -> List[int]:
    """Positions (in `frame_index`'s order) of at most `max_compared` frames spread over the video,
    in video order: the frames every pixel is compared with."""
    order = sorted(range(len(frame_index)), key=lambda i: frame_index[i])
    return order[:: max(1, -(-len(order) // config.max_compared))]


def change_evidence(
    frames: Sequence[FrameRender], frame_index: Sequence[int], config: ChangePriorConfig, ghosts: bool = False
) -> List[UInt8[Tensor, "h w"]]:
    """Evidence per frame (same order as `frames`; CHANGED, and GHOST where `ghosts` asks for it);
    `frame_index` is each frame's place in the video."""
    compared = compared_frames(frame_index, config)
    others = [frames[i] for i in compared]
    points = [surface_points(f) for f in frames]
    static_here = [_static_here(f, config) for f in frames]
    gone = [
        gone_evidence(frames[i], points[i], static_here[i], others, config)
        for i in track(range(len(frames)), description="change evidence: surfaces gone", transient=True)
    ]
    changed = list(gone)
    if config.min_agreeing > 0:
        others_drawn = [_seen_as_drawn(frames[i], gone[i], config) for i in compared]
        changed = [
            gone[i] | in_front_evidence(points[i], static_here[i], others, others_drawn, config)
            for i in track(range(len(frames)), description="change evidence: in front", transient=True)
        ]
    evidence = [c.to(torch.uint8) * CHANGED for c in changed]
    if ghosts:
        # a ghost is often also "in front of a surface the others see as drawn" (the object's, in
        # the frames where it rests): the ghost is the better-founded of the two
        for j, ghost in ghost_evidence(frames, points, gone, compared, config).items():
            evidence[j] = torch.where(ghost & ~gone[j], torch.full_like(evidence[j], GHOST), evidence[j])
    return evidence
