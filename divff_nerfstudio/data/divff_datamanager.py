"""Data manager of `divff`: nerfstudio's ray batches plus, per ray, its language targets.

When training starts (test_mode "val") the target grids of every training frame are loaded from the
feature cache or extracted into it (language/target_grids.py); each training batch then carries
`clip`, `video` (and `dino`) targets for its pixels; with the motion prior, also `motion`, the
optical-flow evidence that the pixel moves (motion_evidence.py). The first training step starts the
model's per-image exposure from gains read off the frames (exposure_estimate.py). The model learns
which heads it needs from the train dataset's metadata["language"] (a LanguageSpec), which needs no
weights, so ns-viewer / ns-render / ns-eval never extract or download anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type, Union

import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from divff_nerfstudio.data.arm_evidence import ArmPriorConfig
from divff_nerfstudio.data.change_evidence import ChangePriorConfig
from divff_nerfstudio.data.exposure_estimate import ExposureEstimateConfig, estimate_log_gains
from divff_nerfstudio.data.motion_evidence import MotionPriorConfig, motion_evidence
from divff_nerfstudio.engine.distributed import main_process_first
from divff_nerfstudio.engine.random_state import fenced_random_states
from divff_nerfstudio.language.spec import LanguageTargetsConfig
from divff_nerfstudio.language.target_grids import TargetExtraction, TargetGrids, lookup_targets


@dataclass(frozen=True)
class LongVideoConfig:
    """How a long video keeps memory bounded: rays come from a random subset of its frames, drawn
    again every few steps (nerfstudio's train-num-images-to-sample-from and
    train-num-times-to-repeat-images, set so when left at -1), and only that subset's images and
    language targets are in memory; the targets stay in their cache and are read as needed."""

    min_frames: int = 400
    """Videos with more training frames than this train this way (0: never)."""
    frames: int = 200
    """Frames the rays of each step come from."""
    steps: int = 100
    """Steps before another subset is drawn."""


@dataclass
class DivffDataManagerConfig(VanillaDataManagerConfig):
    _target: Type = field(default_factory=lambda: DivffDataManager)
    language: LanguageTargetsConfig = field(default_factory=LanguageTargetsConfig)
    motion_prior: MotionPriorConfig = field(default_factory=MotionPriorConfig)
    long_video: LongVideoConfig = LongVideoConfig()
    """(A plain default, so that configs saved before it existed load with it.)"""
    exposure_estimate: ExposureEstimateConfig = ExposureEstimateConfig()  # a plain default, as long_video's
    """Where a run from scratch starts its per-image exposure: gains read off the frames."""
    change_prior: ChangePriorConfig = ChangePriorConfig()  # a plain default, as long_video's
    """How the change evidence is read off the model's renders (its weight: --pipeline.model.change-loss-weight)."""
    arm_prior: ArmPriorConfig = ArmPriorConfig()  # a plain default, as long_video's
    """How the arm evidence is read off the same renders (its weight: --pipeline.model.arm-loss-weight)."""


class DivffDataManager(VanillaDataManager):
    config: DivffDataManagerConfig

    def __init__(
        self,
        config: DivffDataManagerConfig,
        device: Union[torch.device, str] = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ):
        super().__init__(config, device, test_mode, world_size, local_rank, **kwargs)
        self.targets = TargetGrids()
        self.motion: Optional[Tensor] = None
        """(frames, h, w) evidence in [0, 1] that a training pixel moves (with the motion prior;
        computed at the first training batch, so loading a run to view or render never does)."""
        language = self.config.language
        if not language.enabled:
            return
        spec = language.spec()
        self.train_dataset.metadata["language"] = spec
        if test_mode == "val":  # training: ns-train
            # a cold cache must not change the model a seed gives; with several processes, rank 0
            # extracts and the others read its cache
            with fenced_random_states(), main_process_first():
                self.targets = TargetExtraction(language, spec, self.train_dataset, self.cache_root, self._frames_held()).all()

    def setup_train(self) -> None:
        long_video, frames = self.config.long_video, len(self.train_dataset)
        if 0 < long_video.min_frames < frames and self.config.train_num_images_to_sample_from == -1:
            # the config object is this run's: ns-train has saved config.yml by now, and a resumed run does the same
            self.config.train_num_images_to_sample_from = min(long_video.frames, frames)
            self.config.train_num_times_to_repeat_images = long_video.steps
            CONSOLE.print(
                f"{frames} training frames: each step's rays come from {self.config.train_num_images_to_sample_from} of them, drawn again every "
                f"{long_video.steps} steps (--pipeline.datamanager.long-video.*)"
            )
        super().setup_train()

    def _frames_held(self) -> Optional[int]:
        """How many frames' target grids to hold: all (None) unless rays come from a subset of frames."""
        subset = self.config.train_num_images_to_sample_from
        return subset if 0 < subset < len(self.train_dataset) else None

    @property
    def cache_root(self) -> Path:
        """Where the language target caches of this scene live."""
        return self.config.language.cache_dir or Path(self.config.data) / "divff_cache"

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        ray_bundle, batch = super().next_train(step)
        cameras = self.train_dataset.cameras
        size = (int(cameras.height[0]), int(cameras.width[0]))
        for kind, grids in self.targets.grids.items():
            batch[kind] = lookup_targets(grids, batch["indices"], size).to(self.device)
        if self.config.motion_prior.enabled:
            if self.motion is None:
                self.motion = self._motion_evidence()
            cam, y, x = batch["indices"].long().unbind(-1)
            batch["motion"] = self.motion[cam, y, x].float()[:, None].to(self.device)
        return ray_bundle, batch

    def exposure_log_gains(self) -> Float[Tensor, "num_images 3"]:
        """Each training image's colour gains as read off the frames (exposure_estimate.py)."""
        return estimate_log_gains(FrameImages(self.train_dataset), self.frame_index(), self.config.exposure_estimate)

    def _motion_evidence(self) -> Tensor:
        dataset = self.train_dataset
        return motion_evidence(FrameImages(dataset), dataset.cameras, self.frame_index(), self.config.motion_prior)

    def frame_index(self) -> List[int]:
        """Position of each training image in the video (its neighbours for flow)."""
        return [int(f) for f in self.train_dataset.metadata["frame_index"]]


class FrameImages(Sequence):
    """A dataset's RGB frames, each read from disk when asked (the motion evidence and the exposure
    estimate need each once)."""

    def __init__(self, dataset: InputDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Float[Tensor, "h w 3"]:
        return self.dataset.get_image_float32(index)[..., :3]
