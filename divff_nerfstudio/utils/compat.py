"""Make nerfstudio 1.1.5 usable offline and with torch >= 2.6; applied when the plugin is loaded.

Two problems, each met the way a user would want it met:
- LPIPS: nerfacto-style models build torchmetrics' LPIPS, whose AlexNet backbone is downloaded
  from the torchvision hub on first use. Without network that raised and the model could not be
  built at all. Now the real metric is used whenever its weights can be had (cached or
  downloadable); otherwise a placeholder reports LPIPS as NaN and a warning says how to enable it.
- Checkpoints: torch >= 2.6 unpickles with `weights_only=True`, and nerfstudio's checkpoints hold
  numpy scalars, so ns-viewer / ns-render / ns-eval / resuming failed. The few numpy globals those
  checkpoints need are allow-listed (no blanket `weights_only=False`).
"""

from __future__ import annotations

import urllib.error
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

_installed = False


class UnavailableLPIPS(nn.Module):
    """Stands in for LPIPS when its weights cannot be had: every score is NaN (never a fake number)."""

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.tensor(float("nan"))


def _offline_safe_lpips(real_cls: type) -> Any:
    def build(*args: Any, **kwargs: Any) -> nn.Module:
        try:
            return real_cls(*args, **kwargs)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            hub = torch.hub.get_dir()
            warnings.warn(
                f"LPIPS is disabled: torchvision's AlexNet weights are not cached and could not be downloaded ({err}). "
                f"LPIPS will be reported as NaN. To enable it, put alexnet-owt-7be5be79.pth in {hub}/checkpoints "
                "(or run once with network access).",
                stacklevel=2,
            )
            return UnavailableLPIPS()

    build.__doc__ = real_cls.__doc__
    return build


def _allow_numpy_checkpoint_globals() -> None:
    allowed = [np.dtype, np.ndarray]
    for name in ("numpy.core.multiarray", "numpy._core.multiarray"):
        try:
            module = __import__(name, fromlist=["scalar", "_reconstruct"])
        except ImportError:
            continue
        allowed += [module.scalar, module._reconstruct]
    allowed += [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)]
    torch.serialization.add_safe_globals(allowed)


def install() -> None:
    """Apply both fixes once per process (idempotent)."""
    global _installed
    if _installed:
        return
    from torchmetrics.image import lpip

    lpip.LearnedPerceptualImagePatchSimilarity = _offline_safe_lpips(lpip.LearnedPerceptualImagePatchSimilarity)
    _allow_numpy_checkpoint_globals()
    _installed = True
