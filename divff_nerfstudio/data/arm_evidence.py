"""Evidence that a dynamic pixel belongs to the wearer's arm: in head-mounted video the arms enter
the frame from its bottom edge.

The objects stream (in the world's frame) can draw a hand that rests at an object as well as the
actor stream (in the camera's frame) can: such a hand is nearly still in the world, and both
streams have a time code. Where the model draws the hand decides object AP, and nothing in the
colour loss prefers the actor. What does tell the two apart in an egocentric frame is where they
are attached: an arm is one blob with the bottom edge, an object on the counter stands apart.
Partway through training (the change prior's renders) each training frame's dynamic share is
thresholded, and the blobs touching the bottom rows become evidence for the actor stream.
An object held in the hand is part of the hand's blob and is pushed to the actor too; objects
are carried for a few frames, hands are in most of them.

An arm that rests in one place for a while is drawn faintly by all three streams at that step and
escapes the threshold; optionally (`unexplained`) the pixels the static stream does not reproduce
count as dynamic too. They also hold surfaces the static stream has not learnt yet, such as
hand-coloured density it keeps in front of the counter where the hands work in most frames;
asking the actor stream to draw those lays a haze over the counter. So such a pixel extends an arm's blob as ACTOR only where the
other frames that see its surface mostly reproduce it, and elsewhere as NOT_OBJECTS: the objects
stream is asked to give it up, and nothing is asked to draw it.

Optionally (`colours`) the arms' colours, learnt from the same video (the bottom rows of the edge
blobs against the blobs apart), take a held object out of the hand's blob and add a reaching
forearm whose blob was cut from the edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from jaxtyping import Bool, Float, UInt8
from torch import Tensor

from divff_nerfstudio.data.change_evidence import ChangePriorConfig, FrameRender, surface_points, visible_in


@dataclass(frozen=True)
class ArmPriorConfig:
    """How the arm evidence is read off a frame's dynamic share (its loss weight is the model's
    arm_loss_weight; it is computed from the change prior's renders, at its step and size)."""

    dynamic_share: float = 0.5
    """Share of the dynamic streams above which a pixel counts as dynamic."""
    edge_rows: int = 2
    """Bottom rows (render pixels) a blob must reach to count as an arm."""
    opening: int = 3
    """Size of the morphological opening that cuts thin bridges (a faint layer joining an arm to an
    object) before blobs are found."""
    with_change: bool = True
    """Count the change prior's evidence as dynamic too: an arm reaching fast is not drawn solidly
    at that step, but the change prior sees it in front of a surface the static stream draws."""
    unexplained: float = 0.0
    """Count a pixel the static stream does not reproduce (RGB distance between the frame and the
    static render above this; 0: off) as dynamic too: an arm that rests in one place for a while is
    drawn faintly by all three streams at that step, and the surface behind it is seen too rarely
    for the change prior. Such a pixel may also be a surface the static stream has not learnt yet
    (hand-coloured density in front of the counter where the hands work), so it only counts as ACTOR
    where that surface is learnt (`unlearnt_share`), else as NOT_OBJECTS. Off by default (README,
    "Arm prior")."""
    unlearnt_share: float = 0.5
    """A surface that at least `unlearnt_seen` compared frames see, and that the static stream does
    not reproduce in this share of them either, counts as not learnt yet."""
    unlearnt_seen: int = 5
    """Compared frames that must see a surface before it can count as not learnt (an arm resting
    over a surface the static stream has drawn wrongly in its place is seen nowhere else)."""
    colours: bool = False
    """Learn the arms' colours from this video (the edge blobs' pixels in the bottom `colour_rows`
    against the dynamic pixels of blobs apart from the edge), then drop from the edge blobs the
    pixels coloured like the objects (an object held in the hand; `colour_margin`) and add the
    arm-coloured dynamic pixels elsewhere (a forearm reaching across the counter whose blob, at that
    step, does not reach the bottom edge). Off by default (README, "Arm prior")."""
    colour_rows: float = 0.1
    """Bottom share of the frame's rows whose edge-blob pixels teach the arm's colours."""
    colour_margin: float = 4.0
    """An edge blob's pixel leaves the evidence only where the objects' colours are this many times
    likelier for it than the arm's (a hand's rim, a shadow on the skin: colours the bottom rows
    rarely show, which the blob itself vouches for)."""
    join_margin: float = 1.0
    """A dynamic pixel apart from the edge blobs joins the evidence where the arm's colours are this
    many times likelier for it than the objects'."""


ACTOR = 1
"""Arm evidence value: the actor stream should draw this pixel."""
NOT_OBJECTS = 2
"""Arm evidence value: the objects stream should not draw this pixel (an unexplained pixel on a
surface not learnt yet: it may be an arm or the static stream's own error, so nothing is asked to
draw it)."""


def _edge_blobs(dynamic: Bool[Tensor, "h w"], config: ArmPriorConfig) -> Bool[Tensor, "h w"]:
    mask = dynamic.cpu().numpy().astype(np.uint8)
    if config.opening > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((config.opening, config.opening), np.uint8))
    _, blobs = cv2.connectedComponents(mask, connectivity=4)
    arms = np.setdiff1d(np.unique(blobs[-config.edge_rows :]), [0])
    return torch.from_numpy(np.isin(blobs, arms))


COLOUR_BINS = 12
"""Chromaticity bins per axis of the arm colour model (and 2 brightness bins, dark and light):
shading changes brightness, not chromaticity, so a shaded forearm keeps its bin."""


def _colour_bins(rgb: Float[Tensor, "*n 3"]) -> Tensor:
    chroma = rgb / (rgb.sum(-1, keepdim=True) + 1e-3)
    r, g = ((chroma[..., :2] * COLOUR_BINS / 0.8).long().clamp(0, COLOUR_BINS - 1)).unbind(-1)
    light = (rgb.max(-1).values > 0.5).long()
    return (r * COLOUR_BINS + g) * 2 + light


def dynamic_pixels(
    dynamic_share: Float[Tensor, "h w"], config: ArmPriorConfig, changed: Optional[Bool[Tensor, "h w"]] = None
) -> Bool[Tensor, "h w"]:
    """Pixels counted as dynamic: the dynamic streams' share over the threshold, or the change
    prior's evidence where config.with_change."""
    dynamic = dynamic_share > config.dynamic_share
    if config.with_change and changed is not None:
        dynamic = dynamic | changed.to(dynamic.device)
    return dynamic


def arm_colour_odds(
    observed: Sequence[Float[Tensor, "h w 3"]], dynamic: Sequence[Bool[Tensor, "h w"]], config: ArmPriorConfig
) -> List[Float[Tensor, "h w"]]:
    """Per frame, the log-odds of each pixel's colour on the arms against the objects of this video:
    a histogram of the edge blobs' bottom rows against one of the dynamic blobs apart from the edge
    (both smoothed by one count per bin). All zero where no edge blob was found."""
    bins = 2 * COLOUR_BINS**2
    arm_counts, object_counts = torch.ones(bins), torch.ones(bins)
    colours = [_colour_bins(rgb).cpu() for rgb in observed]
    for colour, mask in zip(colours, dynamic):
        mask = mask.cpu()
        arms = _edge_blobs(mask, config)
        bottom = torch.zeros_like(mask)
        bottom[-max(int(config.colour_rows * mask.shape[0]), config.edge_rows) :] = True
        arm_counts += torch.bincount(colour[arms & bottom], minlength=bins)
        object_counts += torch.bincount(colour[mask & ~arms], minlength=bins)
    if arm_counts.sum() == bins:
        return [torch.zeros(mask.shape, device=mask.device) for mask in dynamic]
    odds = (arm_counts / arm_counts.sum()).log() - (object_counts / object_counts.sum()).log()
    return [odds[colour].to(rgb.device) for colour, rgb in zip(colours, observed)]


def unexplained_pixels(
    frames: Sequence[FrameRender], compared: Sequence[int], config: ArmPriorConfig, change: ChangePriorConfig
) -> List[Tuple[Bool[Tensor, "h w"], Bool[Tensor, "h w"]]]:
    """Per frame, the pixels the static stream does not reproduce, and those of them whose static
    surface the other `compared` frames that see it (change's visibility test) do not reproduce
    either."""
    unexplained = [(f.observed - f.static_rgb).norm(dim=-1) > config.unexplained for f in frames]
    found = []
    for i, (frame, mask) in enumerate(zip(frames, unexplained)):
        behind = surface_points(frame)[mask]
        seen = torch.zeros(behind.shape[0])
        wrong = torch.zeros(behind.shape[0])
        for j in (j for j in compared if j != i):
            u, v, visible = visible_in(behind, frames[j], change)
            seen += visible
            wrong += visible & unexplained[j][v, u]
        unlearnt = torch.zeros_like(mask)
        unlearnt[mask] = (seen >= config.unlearnt_seen) & (wrong >= config.unlearnt_share * seen)
        found.append((mask, unlearnt))
    return found


def _by_colour(arms: Bool[Tensor, "h w"], dynamic: Bool[Tensor, "h w"], odds: Float[Tensor, "h w"], config: ArmPriorConfig) -> Bool[Tensor, "h w"]:
    return (arms & (odds > -math.log(config.colour_margin))) | (dynamic & ~arms & (odds > math.log(config.join_margin)))


def arm_evidence(
    dynamic_share: Float[Tensor, "h w"],
    config: ArmPriorConfig,
    changed: Optional[Bool[Tensor, "h w"]] = None,
    unexplained: Optional[Tuple[Bool[Tensor, "h w"], Bool[Tensor, "h w"]]] = None,
    colour_odds: Optional[Float[Tensor, "h w"]] = None,
) -> UInt8[Tensor, "h w"]:
    """The dynamic blobs of one frame that touch its bottom edge, as ACTOR (`changed`: the frame's
    change evidence, counted as dynamic where config.with_change; `unexplained`: the frame's
    unexplained_pixels, counted where the surface is learnt), and what its unexplained pixels on
    surfaces not learnt add to them, as NOT_OBJECTS. `colour_odds` (the frame's arm_colour_odds):
    ACTOR loses the blobs' pixels whose colour is an object's (config.colour_margin) and gains the
    other dynamic pixels whose colour is the arm's."""
    dynamic = dynamic_pixels(dynamic_share, config, changed)
    if unexplained is None:
        arms = _edge_blobs(dynamic, config).to(dynamic.device)
        if colour_odds is not None:
            arms = _by_colour(arms, dynamic, colour_odds.to(dynamic.device), config)
        return arms.to(torch.uint8) * ACTOR
    mask, unlearnt = (m.to(dynamic.device) for m in unexplained)
    arms = _edge_blobs(dynamic | (mask & ~unlearnt), config).to(dynamic.device)
    reach = _edge_blobs(dynamic | mask, config).to(dynamic.device) & ~arms
    if colour_odds is not None:
        arms = _by_colour(arms, dynamic, colour_odds.to(dynamic.device), config)
        reach = reach & ~arms
    return arms.to(torch.uint8) * ACTOR + reach.to(torch.uint8) * NOT_OBJECTS


def arm_loss(
    evidence: Float[Tensor, "rays 1"], actor_share: Float[Tensor, "rays 1"], objects_share: Float[Tensor, "rays 1"]
) -> Float[Tensor, ""]:
    """Mean over the rays of (1 - actor share)^2 where the evidence is ACTOR and objects share^2
    where it is NOT_OBJECTS (the evidence's values as floats, one per ray)."""
    return ((evidence == ACTOR) * (1 - actor_share) ** 2 + (evidence == NOT_OBJECTS) * objects_share**2).mean()
