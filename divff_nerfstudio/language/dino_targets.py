"""Optional DINO targets (as LERF): self-supervised ViT patch features, reduced by PCA to a few
dimensions, that a regulariser head learns to render. Off by default.

The PCA basis is fitted once per cache folder on evenly spaced training frames and stored there
(`pca.npz`), so every frame's target is in the same basis; each frame is then extracted alone.
Weights come from timm (DINO ViT-S/8 by default, downloaded once) or a local timm checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn

from divff_nerfstudio.utils.atomic_files import atomic_write
from divff_nerfstudio.utils.digests import weights_digest
from divff_nerfstudio.utils.errors import UserError


class DinoWeightsUnavailable(UserError, RuntimeError):
    """The DINO weights asked for cannot be loaded; the message says how to provide them."""


@dataclass
class DinoTargetsConfig:
    enabled: bool = False
    """Train a DINO regulariser head (needs DINO weights once, or a local timm checkpoint)."""
    model_name: str = "vit_small_patch8_224_dino"
    """timm architecture."""
    checkpoint: Optional[Path] = None
    """Local timm checkpoint; None: timm downloads the architecture's pretrained weights."""
    pca_dim: int = 64
    """Target size after PCA."""
    pca_frames: int = 16
    """Training frames the PCA basis is fitted on."""

    def identity(self) -> Dict[str, object]:
        weights = weights_digest(self.checkpoint) if self.checkpoint is not None else "timm-pretrained"
        return {"model_name": self.model_name, "weights": weights, "pca_dim": self.pca_dim, "pca_frames": self.pca_frames}


class DinoExtractor:
    """Patch features of one frame, in the scene's PCA basis."""

    def __init__(self, config: DinoTargetsConfig):
        import timm

        self.config = config
        try:
            if config.checkpoint is not None:
                if not Path(config.checkpoint).is_file():
                    raise DinoWeightsUnavailable(f"{config.checkpoint}: DINO checkpoint not found")
                self.model = timm.create_model(config.model_name, pretrained=False, checkpoint_path=str(config.checkpoint))
            else:
                self.model = timm.create_model(config.model_name, pretrained=True)
        except DinoWeightsUnavailable:
            raise
        except Exception as err:
            raise DinoWeightsUnavailable(
                f"Could not get the DINO weights of {config.model_name} ({type(err).__name__}: {err}). Run once with "
                f"internet so timm caches them (TORCH_HOME), or pass a local timm checkpoint with "
                f"--pipeline.datamanager.language.dino.checkpoint /path/to/dino.pth"
            ) from err
        self.model.eval().requires_grad_(False)
        cfg = self.model.default_cfg
        self.size = tuple(cfg["input_size"][1:])
        self.mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
        self.basis: Optional[Dict[str, Tensor]] = None

    @torch.no_grad()
    def tokens(self, image: Float[Tensor, "3 h w"]) -> Float[Tensor, "th tw c"]:
        """Patch tokens of the frame resized to the model's input (the class token dropped)."""
        x = nn.functional.interpolate(image[None].float(), size=self.size, mode="bilinear", antialias=True, align_corners=False)
        out = self.model.forward_features((x - self.mean) / self.std)[0, 1:]
        th, tw = (s // p for s, p in zip(self.size, self.model.patch_embed.patch_size))
        return out.reshape(th, tw, -1)

    def fit_basis(self, images: Sequence[Tensor]) -> Dict[str, Tensor]:
        """PCA of the tokens of a few frames: mean, top components, scale to unit variance."""
        feats = torch.cat([self.tokens(img).reshape(-1, self.model.embed_dim) for img in images])
        mean = feats.mean(dim=0)
        _, s, vh = torch.linalg.svd(feats - mean, full_matrices=False)
        components = vh[: self.config.pca_dim].T  # (c, k)
        scale = (s[: self.config.pca_dim] ** 2).mean().sqrt() / len(feats) ** 0.5
        return {"mean": mean, "components": components, "scale": scale.reshape(1)}

    def load_or_fit_basis(self, folder: Path, images: Sequence[Tensor]) -> None:
        """The cache folder's basis; fitted and stored first if absent (then stale frames go)."""
        path = folder / "pca.npz"
        try:
            with np.load(path) as data:
                self.basis = {k: torch.from_numpy(data[k]) for k in ("mean", "components", "scale")}
            return
        except (OSError, KeyError, ValueError, EOFError):
            pass
        self.basis = self.fit_basis(images)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.npy"):  # frames in another basis
            stale.unlink()
        atomic_write(path, lambda f: np.savez(f, **{k: v.numpy() for k, v in self.basis.items()}))

    def extract(self, image: Float[Tensor, "3 h w"], grid_shape: Sequence[int]) -> Float[Tensor, "gh gw k"]:
        assert self.basis is not None, "load_or_fit_basis first"
        reduced = (self.tokens(image) - self.basis["mean"]) @ self.basis["components"] / self.basis["scale"]
        return nn.functional.interpolate(
            reduced.permute(2, 0, 1)[None], size=tuple(grid_shape), mode="bilinear", align_corners=False
        )[0].permute(1, 2, 0)
