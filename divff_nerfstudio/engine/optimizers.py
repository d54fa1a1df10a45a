"""Adam with torch's fused kernel, as an optimizer config nerfstudio's trainer sets up.

The update is Adam's; the fused kernel makes one pass over all of a group's parameters instead of
a dozen elementwise passes per tensor. On the CPU, for divff's hash tables (about 4.5 M values),
it takes 1.6 ms per step against 12 ms for torch's default (measured, 2 threads), which was a
tenth of a training step. It runs on CUDA too.
"""

from __future__ import annotations

from dataclasses import dataclass

from nerfstudio.engine.optimizers import AdamOptimizerConfig


@dataclass
class FusedAdamOptimizerConfig(AdamOptimizerConfig):
    fused: bool = True
    """torch.optim.Adam(fused=...): one kernel for all parameters (CPU and CUDA)."""
