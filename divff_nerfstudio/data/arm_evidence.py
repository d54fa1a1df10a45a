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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor


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
    for the change prior. Off by default (README, "Arm prior")."""


def arm_evidence(
    dynamic_share: Float[Tensor, "h w"],
    config: ArmPriorConfig,
    changed: Optional[Bool[Tensor, "h w"]] = None,
    residual: Optional[Float[Tensor, "h w"]] = None,
) -> Bool[Tensor, "h w"]:
    """The dynamic blobs of one frame that touch its bottom edge (`changed`: the frame's change
    evidence, counted as dynamic where config.with_change; `residual`: the RGB distance between the
    frame and its static render, counted where config.unexplained)."""
    dynamic = dynamic_share > config.dynamic_share
    if config.with_change and changed is not None:
        dynamic = dynamic | changed.to(dynamic.device)
    if config.unexplained > 0 and residual is not None:
        dynamic = dynamic | (residual > config.unexplained).to(dynamic.device)
    mask = dynamic.cpu().numpy().astype(np.uint8)
    if config.opening > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((config.opening, config.opening), np.uint8))
    _, blobs = cv2.connectedComponents(mask, connectivity=4)
    arms = np.setdiff1d(np.unique(blobs[-config.edge_rows :]), [0])
    return torch.from_numpy(np.isin(blobs, arms))
