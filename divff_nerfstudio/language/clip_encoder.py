"""The image-language encoder: an open_clip model, loaded the way a user with internet loads it.

`pretrained` is either an open_clip tag (downloaded once into the hub cache) or a path to a local
checkpoint; both go through `open_clip.create_model(model_name, pretrained=...)`, so the project's
small test CLIP (divff-train-test-clip) exercises exactly the code real weights use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Type

import torch
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn

from divff_nerfstudio.utils.digests import weights_digest
from divff_nerfstudio.utils.errors import UserError

PROJECT_MODEL_CONFIGS = Path(__file__).parent / "clip_configs"
"""open_clip model configs the project adds (the test CLIP's architecture)."""


class ClipWeightsUnavailable(UserError, RuntimeError):
    """The CLIP weights asked for cannot be loaded; the message says how to provide them."""


def register_project_models() -> None:
    import open_clip

    if PROJECT_MODEL_CONFIGS not in open_clip.factory._MODEL_CONFIG_PATHS:
        open_clip.add_model_config(PROJECT_MODEL_CONFIGS)


@dataclass
class ClipEncoderConfig(InstantiateConfig):
    """Which open_clip model encodes images and text."""

    _target: Type = field(default_factory=lambda: ClipEncoder)
    model_name: str = "ViT-B-16"
    """open_clip architecture name (or DivffTiny-CLIP, the project's test CLIP)."""
    pretrained: str = "laion2b_s34b_b88k"
    """open_clip pretrained tag, or a path to a local open_clip checkpoint (.pt/.bin/.safetensors)."""
    cache_dir: Optional[Path] = None
    """Where open_clip keeps downloaded weights (default: the Hugging Face hub cache)."""
    batch_size: int = 64
    """Images per forward pass when encoding crops."""

    def identity(self) -> Dict[str, str]:
        """What determines the embeddings: architecture and weights (a local file by its content)."""
        path = Path(self.pretrained).expanduser()
        weights = weights_digest(path) if path.is_file() else self.pretrained
        return {"model_name": self.model_name, "weights": weights}


class ClipEncoder(nn.Module):
    """Normalised image and text embeddings from an open_clip model (frozen, eval mode)."""

    def __init__(self, config: ClipEncoderConfig, device: str | torch.device = "cpu"):
        super().__init__()
        import open_clip

        register_project_models()
        self.config = config
        if open_clip.get_model_config(config.model_name) is None:
            raise ClipWeightsUnavailable(
                f"open_clip has no architecture {config.model_name!r}; known: {', '.join(open_clip.list_models()[:8])}, ..."
            )
        if _is_local(config.pretrained):
            self.model = open_clip.create_model(config.model_name, pretrained=self._checked_pretrained(config), device=device)
        else:
            self.model = self._download(config, device)
        self.model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(config.model_name)
        cfg = self.model.visual.preprocess_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)
        size = self.model.visual.image_size
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.embed_dim = int(self.model.text_projection.shape[1]) if self.model.text_projection is not None else None
        self.to(device)

    @staticmethod
    def _checked_pretrained(config: ClipEncoderConfig) -> str:
        path = Path(config.pretrained).expanduser()
        if not path.is_file():
            raise ClipWeightsUnavailable(
                f"{path}: CLIP checkpoint not found. Give an existing open_clip checkpoint, or an open_clip "
                f"tag such as 'laion2b_s34b_b88k' (downloaded once, needs internet)."
            )
        return str(path)

    @staticmethod
    def _download(config: ClipEncoderConfig, device) -> nn.Module:
        import open_clip

        tags = open_clip.list_pretrained_tags_by_model(config.model_name)
        if config.pretrained not in tags:
            raise ClipWeightsUnavailable(
                f"{config.pretrained!r} is neither a file nor a pretrained tag of {config.model_name} "
                f"(tags: {', '.join(tags) or 'none'})."
            )
        try:
            return open_clip.create_model(config.model_name, pretrained=config.pretrained, device=device, cache_dir=_str(config.cache_dir))
        except Exception as err:  # network, hub or file errors all mean the same thing to the user
            raise ClipWeightsUnavailable(
                f"Could not get the {config.model_name} weights {config.pretrained!r} ({type(err).__name__}: {err}). "
                f"Either run once with internet so open_clip caches them (cache: {config.cache_dir or 'the Hugging Face hub cache, HF_HOME'}), "
                f"or download the checkpoint elsewhere and pass its path: --pipeline.datamanager.language.clip.pretrained /path/to/open_clip_model.safetensors"
            ) from err

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @torch.no_grad()
    def encode_images(self, images: Float[Tensor, "b 3 h w"]) -> Float[Tensor, "b d"]:
        """Images in [0, 1], resized to the model's input size here."""
        out = []
        for chunk in images.split(self.config.batch_size):
            chunk = chunk.to(self.device)
            if tuple(chunk.shape[-2:]) != self.image_size:
                chunk = nn.functional.interpolate(chunk, size=self.image_size, mode="bilinear", antialias=True, align_corners=False)
            out.append(self.model.encode_image((chunk - self.mean) / self.std).float())
        return nn.functional.normalize(torch.cat(out), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> Float[Tensor, "n d"]:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1)


def _is_local(pretrained: str) -> bool:
    """A path (it has a separator or a checkpoint suffix) rather than an open_clip tag."""
    return "/" in pretrained or "\\" in pretrained or Path(pretrained).suffix in {".pt", ".pth", ".bin", ".safetensors"}


def _str(path: Optional[Path]) -> Optional[str]:
    return None if path is None else str(path)
