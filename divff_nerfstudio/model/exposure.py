"""A colour gain and offset per training image, applied to the composite while training.

Head-mounted cameras change exposure and white balance from frame to frame. Left to the streams,
a frame that is brighter than its neighbours is explained most cheaply by a dynamic stream laid
over the whole view (a ghost of the room in the objects stream); the static stream's appearance
code only reaches the static colour. A per-image affine colour correction of the composite takes
that change out of every stream; it starts from gains read off the frames before training, since
learnt from nothing it comes too late to keep the dynamic streams from the room. Renders
(evaluation, viewer, exports) use none: the scene under its average exposure. A brightened render
may exceed what the camera could record, so the colour loss sees it clipped where the frame is
(clip_as_observed).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn


class ImageExposure(nn.Module):
    def __init__(self, num_images: int):
        super().__init__()
        self.correction = nn.Embedding(num_images, 6)
        """Per image: log gain (3) and offset (3) per channel; zeros: no correction."""
        nn.init.zeros_(self.correction.weight)

    @torch.no_grad()
    def start_from(self, log_gains: Float[Tensor, "num_images 3"]) -> None:
        """Start from estimated gains (data/exposure_estimate.py) instead of none."""
        self.correction.weight[:, :3] = log_gains.to(self.correction.weight)

    def forward(self, rgb: Float[Tensor, "*bs 3"], camera_indices: Int[Tensor, "*bs 1"]) -> Float[Tensor, "*bs 3"]:
        correction = self.correction(camera_indices[..., 0])
        return rgb * torch.exp(correction[..., :3]) + correction[..., 3:]

    @torch.no_grad()
    def undo(self, image: Float[Tensor, "*bs 3"], index: int) -> Float[Tensor, "*bs 3"]:
        """A training image brought to the renders' exposure (the inverse of forward)."""
        correction = self.correction.weight[index].to(image)
        return (image - correction[3:]) * torch.exp(-correction[:3])


def clip_as_observed(rgb: Float[Tensor, "*bs 3"], image: Float[Tensor, "*bs 3"], level: float) -> Float[Tensor, "*bs 3"]:
    """The render as the camera would have recorded it where the observation is clipped: beyond a
    clipped channel it equals the observation (no error, no gradient); short of it, unchanged."""
    high, low = image >= level, image <= 1 - level
    return torch.where(high, torch.minimum(rgb, image), torch.where(low, torch.maximum(rgb, image), rgb))
