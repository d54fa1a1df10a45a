"""The priors read off the model's own renders: once, partway through training, every training
frame is rendered at a reduced size and turned into change evidence (data/change_evidence.py) and
arm evidence (data/arm_evidence.py), which the model keeps (and saves with its checkpoints) for
its change and arm losses. Each is computed only where its loss weight asks for it."""

from __future__ import annotations

import time
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import track
from torch import Tensor

from divff_nerfstudio.data.arm_evidence import (
    ACTOR,
    NOT_OBJECTS,
    ArmPriorConfig,
    arm_colour_odds,
    arm_evidence,
    dynamic_pixels,
    unexplained_pixels,
)
from divff_nerfstudio.data.change_evidence import (
    CHANGED,
    GHOST,
    ChangePriorConfig,
    FrameRender,
    change_evidence,
    compared_frames,
)
from divff_nerfstudio.model.divff_model import DivffModel

_KEYS = ("rgb_static", "depth_static", "depth", "dynamic_mask")


@torch.no_grad()
def render_training_frames(model: DivffModel, dataset: InputDataset, scale: float, front_margin: float) -> List[FrameRender]:
    """Each training frame's static colour and depth, the composite's depth and its dynamic share,
    at `scale` of its size, beside the frame itself brought to the renders' exposure."""
    frames: List[FrameRender] = []
    was_training = model.training
    model.eval()
    try:
        for i in track(range(len(dataset)), description="change and arm priors: rendering", transient=True):
            camera = dataset.cameras[i : i + 1].to(model.device)
            camera.rescale_output_resolution(scale)
            outputs = model.render_geometry(camera, _KEYS)
            height, width = outputs["depth"].shape[:2]
            image = dataset.get_image_float32(i)[..., :3].permute(2, 0, 1)[None]
            observed = F.interpolate(image, size=(height, width), mode="area")[0].permute(1, 2, 0).to(model.device)
            if model.exposure is not None:
                observed = model.exposure.undo(observed, i)
            static_depth = outputs["depth_static"][..., 0]
            frames.append(
                FrameRender(
                    observed=observed.cpu(),
                    static_rgb=outputs["rgb_static"].cpu(),
                    static_depth=static_depth.cpu(),
                    dynamic_in_front=(outputs["depth"][..., 0] < (1 - front_margin) * static_depth).cpu(),
                    camera=camera.to("cpu"),
                    dynamic_share=outputs["dynamic_mask"][..., 0].cpu(),
                )
            )
    finally:
        model.train(was_training)
    return frames


def start_render_priors(
    model: DivffModel, dataset: InputDataset, frame_index: Sequence[int], change: ChangePriorConfig, arm: ArmPriorConfig
) -> None:
    """Compute the evidence the model's loss weights ask for and does not hold yet, from the model
    as it is now, and hand it to the model."""
    start = time.perf_counter()
    missing = model.missing_priors()
    frames = render_training_frames(model, dataset, change.scale, change.front_margin)
    model.evidence_frame_size = (int(dataset.cameras.height[0]), int(dataset.cameras.width[0]))
    if "change" in missing:
        ghosts = model.config.ghost_loss_weight > 0
        evidence = torch.stack(change_evidence(frames, frame_index, change, ghosts))
        model.change_evidence = evidence.to(model.device)
        ghosted = f", {100 * (evidence == GHOST).float().mean():.2f} % ghosts" if ghosts else ""
        CONSOLE.print(
            f"change prior: {100 * (evidence == CHANGED).float().mean():.2f} % of the training pixels seen to change{ghosted}, "
            f"{len(frames)} frames in {time.perf_counter() - start:.0f} s (--pipeline.model.change-loss-weight)"
        )
    if "arm" in missing:
        changed = model.change_evidence == CHANGED if model.change_evidence is not None else [None] * len(frames)
        unexplained = unexplained_pixels(frames, compared_frames(frame_index, change), arm, change) if arm.unexplained > 0 else [None] * len(frames)
        odds: Sequence[Optional[Tensor]] = [None] * len(frames)
        if arm.colours:
            dynamic = [dynamic_pixels(f.dynamic_share, arm, c) for f, c in zip(frames, changed)]
            odds = arm_colour_odds([f.observed for f in frames], dynamic, arm)
        evidence = torch.stack([arm_evidence(f.dynamic_share, arm, c, u, k) for f, c, u, k in zip(frames, changed, unexplained, odds)])
        model.arm_evidence = evidence.to(model.device)
        remarks = f", {100 * (evidence == NOT_OBJECTS).float().mean():.2f} % more kept from the objects stream" if arm.unexplained > 0 else ""
        remarks += ", sorted by the arms' colours" if arm.colours else ""
        CONSOLE.print(
            f"arm prior: {100 * (evidence == ACTOR).float().mean():.2f} % of the training pixels on dynamic blobs at the "
            f"bottom edge{remarks} (--pipeline.model.arm-loss-weight)"
        )
