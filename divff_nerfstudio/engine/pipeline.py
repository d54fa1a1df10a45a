"""nerfstudio's pipeline, with the model wrapped for several processes on any device.

nerfstudio wraps the model as `DDP(model, device_ids=[local_rank])`: right for one GPU per
process, refused by torch for a model on the CPU (gloo), where DDP takes no device ids. Otherwise
this is nerfstudio's VanillaPipeline; `find_unused_parameters` stays on because a step can skip
parameters (the language heads in the geometry stage, the geometry in the feature stage, the
proposal network between its updates).

What it adds: a run that starts from scratch starts the model's per-image exposure from the gains
the data manager reads off the frames (data/exposure_estimate.py), at its first step (not when a
run is only loaded to view, render or resume); and at the change prior's step, the model's change
and arm evidence is computed from its own renders (engine/render_priors.py; a run resumed after
that step has it from its checkpoint). Every process computes the same gains and evidence.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal, Optional, Type

import torch
import torch.distributed as dist
from nerfstudio.models.base_model import Model
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from torch.amp import GradScaler
from torch.nn.parallel import DistributedDataParallel as DDP

from divff_nerfstudio.engine.random_state import fenced_random_states
from divff_nerfstudio.engine.render_priors import start_render_priors


@dataclass
class DivffPipelineConfig(VanillaPipelineConfig):
    _target: Type = field(default_factory=lambda: DivffPipeline)


class DivffPipeline(VanillaPipeline):
    def __init__(
        self,
        config: DivffPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[GradScaler] = None,
    ):
        # built as for one process (nerfstudio would wrap with GPU device ids), then wrapped here
        super().__init__(config, device, test_mode, world_size=1, local_rank=local_rank, grad_scaler=grad_scaler)
        self.world_size = world_size
        if world_size > 1:
            on_gpu = torch.device(device).type == "cuda"
            device_ids = [local_rank] if on_gpu else None
            self._model = typing.cast(Model, DDP(self._model, device_ids=device_ids, find_unused_parameters=True))
            dist.barrier(device_ids=device_ids)
        self._exposure_started = False

    def get_train_loss_dict(self, step: int):
        if step == 0 and not self._exposure_started:
            self._exposure_started = True
            exposure = getattr(self.model, "exposure", None)
            estimate = getattr(self.datamanager.config, "exposure_estimate", None)
            if exposure is not None and estimate is not None and estimate.enabled:
                exposure.start_from(self.datamanager.exposure_log_gains())
        self._start_render_priors(step)
        return super().get_train_loss_dict(step)

    def _start_render_priors(self, step: int) -> None:
        model = self.model
        change = getattr(self.datamanager.config, "change_prior", None)
        arm = getattr(self.datamanager.config, "arm_prior", None)
        if change is None or arm is None or step < change.at_step:
            return
        if model.missing_priors():
            with fenced_random_states():
                start_render_priors(model, self.datamanager.train_dataset, self.datamanager.frame_index(), change, arm)
