"""Region-level image-language targets: object-shaped regions of a frame, each embedded whole by the
CLIP, give every pixel the embedding of the region it belongs to (DIV-FF and LangSplat pool CLIP
features inside SAM masks for the same reason: sharp boundaries that square crops cannot draw).

The proposer is pluggable; offline it is a classical over-segmentation from scikit-image
(Felzenszwalb's graph segmentation, or SLIC superpixels). A region's embedding is either the patch
pyramid's averaged over its pixels (`pool`: the pyramid says what is there, the region where it
ends; no more CLIP calls) or the CLIP's embedding of the region cut out of its bounding box (plus
some context) with its outside greyed (`crops`, blended with the pyramid's targets by `weight`).
Either way the pixel embeddings are then averaged over each cell of the target grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from torchvision.ops import roi_align


@dataclass
class RegionTargetsConfig:
    """Region proposals for the CLIP targets (flags under --pipeline.datamanager.language.regions)."""

    method: Literal["none", "felzenszwalb", "slic"] = "felzenszwalb"
    """none: the patch pyramid alone; felzenszwalb or slic: scikit-image over-segmentations."""
    embed: Literal["pool", "crops"] = "pool"
    """pool: each region gets the patch pyramid's embedding averaged over its pixels; crops: the
    CLIP embeds each region cut out, blended with the pyramid by `weight`. Teacher object mIoU on
    four fresh scenes' test frames (README, "Language"): pyramid 39.8, Felzenszwalb pooled 55.0,
    Felzenszwalb crops 35.6."""
    scale: float = 50.0
    """Felzenszwalb: larger gives larger regions."""
    min_size: int = 10
    """Felzenszwalb: smallest region, in pixels."""
    segments: int = 250
    """SLIC: about this many superpixels per frame."""
    context: float = 0.25
    """Margin around a region's bounding box, as a fraction of the box side, kept in its crop."""
    weight: float = 0.5
    """crops: share of the region embedding in a target cell (the rest: the patch pyramid's)."""

    def __setstate__(self, state: Dict[str, object]) -> None:
        """A run saved before `embed` existed embedded region crops."""
        self.__dict__.update(state)
        if "embed" not in state:
            self.embed = "crops"

    @property
    def enabled(self) -> bool:
        return self.method != "none"

    def identity(self) -> Dict[str, object]:
        return {"method": self.method, "embed": self.embed, "scale": self.scale, "min_size": self.min_size,
                "segments": self.segments, "context": self.context, "weight": self.weight}  # fmt: skip

    def propose(self, image: Float[Tensor, "3 h w"]) -> Int[np.ndarray, "h w"]:
        """Region id (0..n-1) of every pixel."""
        from skimage.segmentation import felzenszwalb, slic

        pixels = image.permute(1, 2, 0).numpy().astype(np.float64)
        if self.method == "felzenszwalb":
            labels = felzenszwalb(pixels, scale=self.scale, sigma=0.5, min_size=self.min_size)
        else:
            labels = slic(pixels, n_segments=self.segments, compactness=10.0, start_label=0)
        return np.unique(labels, return_inverse=True)[1].reshape(labels.shape)


def region_targets(
    image: Float[Tensor, "3 h w"], encode: Callable[[Tensor], Tensor], config: RegionTargetsConfig, grid_shape: tuple, crop_pixels: int = 64
) -> Float[Tensor, "gh gw d"]:
    """Each target cell's average of its pixels' region embeddings (unit length)."""
    _, h, w = image.shape
    labels = torch.from_numpy(config.propose(image)).long()
    count = int(labels.max()) + 1
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    flat = labels.reshape(-1)
    y0 = torch.full((count,), float(h)).scatter_reduce(0, flat, ys.reshape(-1), "amin")
    y1 = torch.zeros(count).scatter_reduce(0, flat, ys.reshape(-1) + 1, "amax")
    x0 = torch.full((count,), float(w)).scatter_reduce(0, flat, xs.reshape(-1), "amin")
    x1 = torch.zeros(count).scatter_reduce(0, flat, xs.reshape(-1) + 1, "amax")
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    half = torch.maximum(y1 - y0, x1 - x0).clamp(min=10.0) * (1 + config.context) / 2
    corners = torch.stack([cx - half, cy - half, cx + half, cy + half], dim=-1)
    masks = (labels[None] == torch.arange(count)[:, None, None]).float()[:, None]  # (n, 1, h, w)
    crops = roi_align(image[None].float(), [corners], output_size=crop_pixels, aligned=True)
    inside = roi_align(masks, torch.cat([torch.arange(count, dtype=torch.float32)[:, None], corners], dim=-1), output_size=crop_pixels, aligned=True)
    embeddings = encode(crops * inside + 0.5 * (1 - inside)).cpu().float()  # (n, d)
    pixels = embeddings[labels].permute(2, 0, 1)[None]  # (1, d, h, w)
    cells = nn.functional.adaptive_avg_pool2d(pixels, grid_shape)[0].permute(1, 2, 0)
    return nn.functional.normalize(cells, dim=-1)


def pooled_targets(
    pyramid: Float[Tensor, "gh gw d"], labels: Int[np.ndarray, "h w"], channels: int = 64
) -> Float[Tensor, "gh gw d"]:
    """The pyramid's targets averaged over each region, on the pyramid's own grid (unit length).
    The pyramid is read at every pixel (bilinear, as training reads it), so a region smaller than a
    cell still gets the embedding around it rather than a neighbour's. Per block of `channels`: a
    512-d embedding at every pixel of a large frame would not fit in memory."""
    h, w = labels.shape
    gh, gw, d = pyramid.shape
    flat = torch.from_numpy(labels).long().reshape(-1)
    count = int(flat.max()) + 1

    def at_pixels(block: Tensor) -> Float[Tensor, "c h w"]:
        return nn.functional.interpolate(block.permute(2, 0, 1)[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0]

    blocks = range(0, d, channels)
    sums = torch.cat([torch.zeros(count, min(channels, d - c)).index_add_(0, flat, at_pixels(pyramid[..., c : c + channels]).reshape(-1, h * w).T) for c in blocks], dim=1)
    regions = nn.functional.normalize(sums, dim=-1)
    cells = [nn.functional.adaptive_avg_pool2d(regions[flat, c : c + channels].T.reshape(1, -1, h, w), (gh, gw))[0] for c in blocks]
    return nn.functional.normalize(torch.cat(cells).permute(1, 2, 0), dim=-1)
