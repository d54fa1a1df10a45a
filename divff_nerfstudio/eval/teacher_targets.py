"""The teacher's own answer on the test frames: each test frame's 2D language targets, made as
training makes them for its frames (same encoder, patch pyramid and video extractor; the video
clip of a test frame is snapped to the test frames around it, so no training frame enters) and
read at every pixel with training's bilinear lookup. Scored with the same queries and thresholds
as the field, they separate what the targets miss from what distillation loses.

Cached like training targets, under `<cache>/test_frames`, so the training caches keep one grid per
training frame and a second evaluation extracts nothing.
"""

from __future__ import annotations

from typing import Dict

import torch
from jaxtyping import Float
from torch import Tensor, nn

from divff_nerfstudio.data.divff_datamanager import DivffDataManager
from divff_nerfstudio.engine.random_state import fenced_random_states
from divff_nerfstudio.language.target_grids import TargetExtraction, lookup_targets

TEACHER_KINDS = ("clip", "video")


class TeacherTargets:
    def __init__(self, datamanager: DivffDataManager):
        dataset = datamanager.eval_dataset
        spec = datamanager.train_dataset.metadata["language"]
        root = datamanager.cache_root / "test_frames"
        with fenced_random_states():  # evaluating in the middle of a run must not change the run
            grids = TargetExtraction(datamanager.config.language, spec, dataset, root).all().grids
        self.grids = {kind: grids[kind] for kind in TEACHER_KINDS}
        self.size = (int(dataset.cameras.height[0]), int(dataset.cameras.width[0]))

    def embeddings(self, index: int) -> Dict[str, Float[Tensor, "h w d"]]:
        """Unit target embedding at every pixel of eval frame `index`, per kind (clip, video)."""
        h, w = self.size
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        pixels = torch.stack([torch.full_like(ys, index), ys, xs], dim=-1).reshape(-1, 3)
        return {
            kind: nn.functional.normalize(lookup_targets(grids, pixels, self.size), dim=-1).reshape(h, w, -1)
            for kind, grids in self.grids.items()
        }
