"""Joint volume rendering of several density streams under one transmittance (NeuralDiff).

alpha_i = 1 - exp(-delta_i * sum_k sigma_k,i); T_i = prod_{j<i} (1 - alpha_j);
w_k,i = sigma_k,i / sum_k sigma_k,i * alpha_i * T_i. The stream weights add up to the ordinary
volume-rendering weights of the summed density, so one stream alone is plain volume rendering.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

STREAMS = ("static", "objects", "actor")
"""The three streams of the decomposition, in compositing order (every per-stream dict uses these keys)."""

_EPS = 1e-10


def composite_weights(
    densities: Dict[str, Float[Tensor, "*bs samples 1"]], deltas: Float[Tensor, "*bs samples 1"]
) -> Tuple[Float[Tensor, "*bs samples 1"], Dict[str, Float[Tensor, "*bs samples 1"]]]:
    """Total weights of the summed density and each stream's share of them."""
    total_density = sum(densities.values())
    optical = total_density * deltas
    alpha = 1.0 - torch.exp(-optical)
    # transmittance before sample i: exp(-sum_{j<i} delta_j sigma_j)
    accumulated = torch.cumsum(optical[..., :-1, :], dim=-2)
    transmittance = torch.exp(-torch.cat([torch.zeros_like(accumulated[..., :1, :]), accumulated], dim=-2))
    weights = alpha * transmittance
    share = weights / (total_density + _EPS)
    return weights, {name: density * share for name, density in densities.items()}


def render_stream(
    weights: Float[Tensor, "*bs samples 1"], values: Float[Tensor, "*bs samples c"]
) -> Float[Tensor, "*bs c"]:
    """Weighted sum of per-sample values along each ray."""
    return (weights * values).sum(dim=-2)
