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
morphological opening. The evidence only ever says "this is dynamic", like the motion prior's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from nerfstudio.cameras.cameras import Cameras
from rich.progress import track
from torch import Tensor


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
        oh, ow = other.static_depth.shape
        nearest = torch.full((h, w), float("inf"))
        for dv in range(-config.window, config.window + 1):
            for du in range(-config.window, config.window + 1):
                seen = other.observed[(v + dv).clamp(0, oh - 1), (u + du).clamp(0, ow - 1)]
                nearest = torch.minimum(nearest, (seen - frame.observed).norm(dim=-1))
        changed = visible & (nearest > config.colour_change)
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


def compared_frames(frame_index: Sequence[int], config: ChangePriorConfig) -> List[int]:
    """Positions (in `frame_index`'s order) of at most `max_compared` frames spread over the video,
    in video order: the frames every pixel is compared with."""
    order = sorted(range(len(frame_index)), key=lambda i: frame_index[i])
    return order[:: max(1, -(-len(order) // config.max_compared))]


def change_evidence(frames: Sequence[FrameRender], frame_index: Sequence[int], config: ChangePriorConfig) -> List[Bool[Tensor, "h w"]]:
    """Evidence per frame (same order as `frames`); `frame_index` is each frame's place in the video."""
    compared = compared_frames(frame_index, config)
    others = [frames[i] for i in compared]
    points = [surface_points(f) for f in frames]
    static_here = [_static_here(f, config) for f in frames]
    gone = [
        gone_evidence(frames[i], points[i], static_here[i], others, config)
        for i in track(range(len(frames)), description="change evidence: surfaces gone", transient=True)
    ]
    if config.min_agreeing <= 0:
        return gone
    others_drawn = [_seen_as_drawn(frames[i], gone[i], config) for i in compared]
    in_front = [
        in_front_evidence(points[i], static_here[i], others, others_drawn, config)
        for i in track(range(len(frames)), description="change evidence: in front", transient=True)
    ]
    return [a | b for a, b in zip(gone, in_front)]
