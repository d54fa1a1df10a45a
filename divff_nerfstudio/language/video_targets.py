"""Video-language targets: one feature grid per frame from a short clip of frames around it.

DIV-FF uses EgoVideo features of a 4-frame clip; no EgoVideo weights can be had here, so the default
extractor is a stand-in: the image-language targets of the clip's frames pooled over time. It puts
what happens around a frame (an object being carried through) into the frame's target, in the same
embedding space as the text queries. `backend xclip` runs a real video-language model instead
(X-CLIP through `transformers`, xclip_video.py). Other video models plug in by subclassing
`VideoTargetExtractor` (and its config): it gets the clip's frames as well as their image targets
and says how it encodes text.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Sequence, Tuple, Type

from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn

from divff_nerfstudio.language.clip_encoder import ClipEncoder


@dataclass
class VideoExtractorConfig(InstantiateConfig):
    """Which video-language extractor makes the video targets, and its clips."""

    _target: Type = field(default_factory=lambda: PooledImageVideoExtractor)
    backend: Literal["pooled-image", "xclip"] = "pooled-image"
    """pooled-image: the offline stand-in (no weights); xclip: X-CLIP video embeddings of square
    crops of each clip (`model`)."""
    window: int = 4
    """Frames per clip (X-CLIP reads the number its model was trained with instead)."""
    stride: int = 2
    """Dataset frames between two frames of a clip."""
    model: str = "microsoft/xclip-base-patch32"
    """X-CLIP weights: a Hugging Face hub name (downloaded once into the hub cache) or a folder
    written by `save_pretrained` (model and tokenizer)."""
    crop_fractions: Tuple[float, ...] = (0.25,)
    """X-CLIP: sides of the square crops whose clips are embedded, as fractions of the frame height
    (each crop is a video of `window` frames; fewer, larger crops than the CLIP pyramid's, since
    every crop costs a video forward pass)."""
    batch_size: int = 16
    """X-CLIP: crop clips per forward pass."""

    def setup(self, **kwargs) -> "VideoTargetExtractor":
        if self.backend == "xclip":
            from divff_nerfstudio.language.xclip_video import XClipVideoExtractor

            return XClipVideoExtractor(self, **kwargs)
        return super().setup(**kwargs)


class VideoTargetExtractor:
    """Interface of video-language extractors (EgoVideo-style models subclass this)."""

    reads_pixels: bool = True
    """Whether `extract` needs the clip's frames (else they are not loaded)."""

    def __init__(self, config: VideoExtractorConfig):
        self.config = config
        self.window = config.window

    def clip_indices(self, centre: int, available: Sequence[int]) -> List[int]:
        """Frame indices of the clip around `centre`: `window` frames `stride` apart, each snapped to
        the nearest available (training) frame, so held-out frames never leak into targets."""
        offsets = [(k - (self.window - 1) / 2) * self.config.stride for k in range(self.window)]
        return [min(available, key=lambda a: (abs(a - (centre + o)), a)) for o in offsets]

    @abstractmethod
    def identity(self) -> Dict[str, object]:
        """Everything that changes the targets (for the cache fingerprint)."""

    @abstractmethod
    def extract(
        self, frames: Float[Tensor, "t 3 h w"], image_targets: Float[Tensor, "t gh gw d"]
    ) -> Float[Tensor, "gh gw d"]:
        """The target grid of the clip's centre frame."""

    @abstractmethod
    def embed_dim(self, image_dim: int) -> int:
        """Size of the video embeddings (given the image-language encoder's)."""

    def encode_text(self, texts: Sequence[str], clip: ClipEncoder) -> Float[Tensor, "n d"]:
        """Unit text embeddings in the video space; a video model with its own text tower overrides this."""
        return clip.encode_text(texts)


class PooledImageVideoExtractor(VideoTargetExtractor):
    """Stand-in: mean of the clip frames' image-language targets; text queries use the CLIP."""

    reads_pixels = False

    def identity(self) -> Dict[str, object]:
        return {"extractor": "pooled-image", "window": self.config.window, "stride": self.config.stride}

    def extract(self, frames: Tensor, image_targets: Tensor) -> Tensor:
        return nn.functional.normalize(image_targets.float().mean(dim=0), dim=-1)

    def embed_dim(self, image_dim: int) -> int:
        return image_dim
