"""The change prior's renders: once, partway through training, every training frame is rendered at
a reduced size and turned into change evidence (data/change_evidence.py), which the model keeps
(and saves with its checkpoints) for its change loss."""

from __future__ import annotations

import time
from typing import List, Sequence

import torch
import torch.nn.functional as F
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import track

from divff_nerfstudio.data.change_evidence import ChangePriorConfig, FrameRender, change_evidence
from divff_nerfstudio.model.divff_model import DivffModel

_KEYS = ("rgb_static", "depth_static", "depth")


@torch.no_grad()
def render_training_frames(model: DivffModel, dataset: InputDataset, scale: float, front_margin: float) -> List[FrameRender]:
    """Each training frame's static colour and depth and the composite's depth, at `scale` of its
    size, beside the frame itself brought to the renders' exposure."""
    frames: List[FrameRender] = []
    was_training = model.training
    model.eval()
    try:
        for i in track(range(len(dataset)), description="change prior: rendering", transient=True):
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
                )
            )
    finally:
        model.train(was_training)
    return frames


def start_change_prior(model: DivffModel, dataset: InputDataset, frame_index: Sequence[int], config: ChangePriorConfig) -> None:
    """Compute the evidence from the model as it is now and hand it to the model's change loss."""
    start = time.perf_counter()
    frames = render_training_frames(model, dataset, config.scale, config.front_margin)
    evidence = torch.stack(change_evidence(frames, frame_index, config))
    model.change_evidence = evidence.to(model.device)
    model.change_frame_size = (int(dataset.cameras.height[0]), int(dataset.cameras.width[0]))
    CONSOLE.print(
        f"change prior: {100 * evidence.float().mean():.2f} % of the training pixels seen to change, "
        f"{len(frames)} frames in {time.perf_counter() - start:.0f} s (--pipeline.model.change-loss-weight)"
    )
