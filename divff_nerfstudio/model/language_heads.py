"""Per-stream language feature heads (DIV-FF): each stream's own features -> a hidden feature that
is composited with that stream's weights, then projected to the CLIP and video embedding spaces.

The projections are linear and bias-free and shared by the streams, so projecting after
compositing equals compositing projected samples, while the wide (512-d) projection runs once per
ray instead of once per sample; and the composite embedding is exactly the sum of the per-stream
ones before normalisation. Renders keep only the small hidden features (`language_<stream>`) and
project them when a query asks, so a 512-d image never has to be held per pixel and stream.
"""

from __future__ import annotations

from typing import Dict, Mapping

import torch
from jaxtyping import Float
from torch import Tensor, nn

from divff_nerfstudio.model.compositing import STREAMS, render_stream
from divff_nerfstudio.model.device_preset import mlp


class LanguageHeads(nn.Module):
    def __init__(self, input_dims: Mapping[str, int], output_dims: Mapping[str, int], hidden_dim: int = 64, implementation: str = "torch"):
        """input_dims: feature size per stream; output_dims: embedding size per target kind (clip,
        video); implementation: the trunks' MLPs, "torch" or "tcnn"."""
        super().__init__()
        self.trunks = nn.ModuleDict(
            {
                k: mlp(input_dims[k], 2, hidden_dim, out_dim=hidden_dim, out_activation=nn.ReLU(), implementation=implementation)
                for k in STREAMS
            }
        )
        self.projections = nn.ModuleDict({kind: nn.Linear(hidden_dim, dim, bias=False) for kind, dim in output_dims.items()})

    def forward(
        self, features: Mapping[str, Float[Tensor, "*bs s f"]], stream_weights: Mapping[str, Float[Tensor, "*bs s 1"]]
    ) -> Dict[str, Float[Tensor, "*bs h"]]:
        """Each stream's composited hidden feature. Weights are used as given (the model passes them
        detached: language never bends geometry)."""
        return {k: render_stream(stream_weights[k], self.trunks[k](features[k])) for k in STREAMS}

    def render(self, hidden: Mapping[str, Float[Tensor, "*bs h"]], kind: str) -> Float[Tensor, "*bs d"]:
        """The composite feature of one kind as is (DINO targets are not unit vectors)."""
        proj = self.projections[kind]
        return sum(proj(hidden[k]) for k in STREAMS)

    def embed(self, hidden: Mapping[str, Float[Tensor, "*bs h"]], kind: str) -> Dict[str, Float[Tensor, "*bs d"]]:
        """Unit embeddings of one kind (clip, video): `composite` and one per stream."""
        proj = self.projections[kind]
        per_stream = {k: proj(hidden[k]) for k in STREAMS}
        out = {k: nn.functional.normalize(v, dim=-1) for k, v in per_stream.items()}
        out["composite"] = nn.functional.normalize(sum(per_stream.values()), dim=-1)
        return out


def feature_loss(pred: Float[Tensor, "rays d"], target: Float[Tensor, "rays d"], delta: float = 1.25) -> Tensor:
    """Huber loss summed over the embedding, averaged over rays that have a target (non-zero)."""
    has_target = target.norm(dim=-1) > 0
    if not has_target.any():
        return pred.sum() * 0.0
    loss = nn.functional.huber_loss(pred[has_target], target[has_target], delta=delta, reduction="none")
    return loss.sum(dim=-1).mean()


def relevancy(
    embeddings: Float[Tensor, "*bs d"], positive: Float[Tensor, " d"], negatives: Float[Tensor, "m d"], temperature: float = 10.0
) -> Float[Tensor, "*bs 1"]:
    """LERF's relevancy: min over negatives of softmax(temperature * [cos(f, q), cos(f, neg)])[0]
    (unit inputs). 0.5 where the query fits no better than the closest negative."""
    pos = embeddings @ positive  # (*bs)
    neg = embeddings @ negatives.T  # (*bs, m)
    pair = torch.stack([pos[..., None].expand_as(neg), neg], dim=-1) * temperature
    return torch.softmax(pair, dim=-1)[..., 0].min(dim=-1).values[..., None]
