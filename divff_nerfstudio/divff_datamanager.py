"""Data manager of `divff`: nerfstudio's ray batches plus, per ray, its language targets.

When training starts (test_mode "val") the image-language (CLIP pyramid) and video-language target
grids of every training frame (and DINO grids, if asked for) are loaded from the feature cache or
extracted into it; each training batch then carries `clip`, `video` (and `dino`) targets for its
pixels, bilinearly read from the grids. The
model learns the size of the heads it needs from the train dataset's metadata (`language`), which
needs no weights, so ns-viewer / ns-render / ns-eval never extract or download anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type, Union

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from divff_nerfstudio.clip_encoder import ClipEncoder, ClipEncoderConfig, register_project_models
from divff_nerfstudio.dino_targets import DinoExtractor, DinoTargetsConfig
from divff_nerfstudio.feature_cache import FeatureCache, cached_grids, file_digest
from divff_nerfstudio.feature_targets import PatchPyramidConfig, pyramid_targets
from divff_nerfstudio.random_state import fenced_random_states
from divff_nerfstudio.video_targets import VideoExtractorConfig, VideoTargetExtractor
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig


@dataclass
class LanguageTargetsConfig:
    """Where the language targets come from and where they are cached."""

    enabled: bool = True
    """Learn language at all (divff-geometry: False)."""
    clip: ClipEncoderConfig = field(default_factory=ClipEncoderConfig)
    video: VideoExtractorConfig = field(default_factory=VideoExtractorConfig)
    pyramid: PatchPyramidConfig = field(default_factory=PatchPyramidConfig)
    dino: DinoTargetsConfig = field(default_factory=DinoTargetsConfig)
    cache_dir: Optional[Path] = None
    """Feature cache folder; None: <scene>/divff_cache."""

    def clip_dim(self) -> int:
        """Embedding size of the configured CLIP, from its architecture alone (no weights)."""
        import open_clip

        register_project_models()
        config = open_clip.get_model_config(self.clip.model_name)
        if config is None:
            raise ValueError(f"open_clip has no architecture {self.clip.model_name!r} (--pipeline.datamanager.language.clip.model-name)")
        return int(config["embed_dim"])


@dataclass
class DivffDataManagerConfig(VanillaDataManagerConfig):
    _target: Type = field(default_factory=lambda: DivffDataManager)
    language: LanguageTargetsConfig = field(default_factory=LanguageTargetsConfig)


class DivffDataManager(VanillaDataManager):
    config: DivffDataManagerConfig

    def __init__(
        self,
        config: DivffDataManagerConfig,
        device: Union[torch.device, str] = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ):
        super().__init__(config, device, test_mode, world_size, local_rank, **kwargs)
        self.targets: Dict[str, Tensor] = {}
        self.cache_folders: Dict[str, Path] = {}
        language = self.config.language
        if not language.enabled:
            return
        clip_dim = language.clip_dim()
        video = language.video.setup()
        self.train_dataset.metadata["language"] = {
            "clip": language.clip,
            "video": video,
            "clip_dim": clip_dim,
            "video_dim": video.embed_dim(clip_dim),
            "dino_dim": language.dino.pca_dim if language.dino.enabled else None,
        }
        if test_mode == "val":  # training: ns-train
            with fenced_random_states():  # a cold cache must not change the model a seed gives
                self.targets = self._load_targets(language, video)

    @cached_property
    def _image_size(self) -> Tuple[int, int]:
        cameras = self.train_dataset.cameras
        return int(cameras.height[0]), int(cameras.width[0])

    def _load_targets(self, language: LanguageTargetsConfig, video: VideoTargetExtractor) -> Dict[str, Tensor]:
        dataset = self.train_dataset
        root = language.cache_dir or Path(self.config.data) / "divff_cache"
        files = dataset.image_filenames
        keys = [f"{path.stem}-{file_digest(path)}" for path in files]
        gh, gw = language.pyramid.grid_shape(*self._image_size)
        encoder: Optional[ClipEncoder] = None

        def clip_targets(i: int) -> Tensor:
            nonlocal encoder
            if encoder is None:
                encoder = ClipEncoder(language.clip)
            image = dataset.get_image_float32(i)[..., :3].permute(2, 0, 1)
            return pyramid_targets(image, encoder.encode_images, language.pyramid)

        clip_cache = FeatureCache(root, "clip", {"encoder": language.clip.identity(), "pyramid": language.pyramid.identity()})
        shape = (gh, gw, self.train_dataset.metadata["language"]["clip_dim"])
        clip = cached_grids(clip_cache, keys, shape, clip_targets, "CLIP targets")
        self.cache_folders["clip"] = clip_cache.folder

        frame_index = [int(f) for f in dataset.metadata["frame_index"]]
        position = {f: i for i, f in enumerate(frame_index)}

        def video_targets(i: int) -> Tensor:
            members = [position[f] for f in video.clip_indices(frame_index[i], frame_index)]
            frames = torch.stack([dataset.get_image_float32(j)[..., :3].permute(2, 0, 1) for j in members]) if video.reads_pixels else None
            return video.extract(frames, clip[members])

        video_cache = FeatureCache(root, "video", {"extractor": video.identity(), "clip": clip_cache.folder.name, "frames": frame_index})
        video_shape = (gh, gw, self.train_dataset.metadata["language"]["video_dim"])
        self.cache_folders["video"] = video_cache.folder
        targets = {"clip": clip, "video": cached_grids(video_cache, keys, video_shape, video_targets, "video targets")}
        if language.dino.enabled:
            targets["dino"] = self._dino_targets(language, root, keys, (gh, gw))
        return targets

    def _dino_targets(self, language: LanguageTargetsConfig, root: Path, keys: List[str], grid: Tuple[int, int]) -> Tensor:
        dataset = self.train_dataset
        extractor = DinoExtractor(language.dino)
        cache = FeatureCache(root, "dino", {"dino": language.dino.identity(), "grid": list(grid)})
        picks = np.linspace(0, len(dataset) - 1, min(language.dino.pca_frames, len(dataset))).round().astype(int)
        extractor.load_or_fit_basis(cache.folder, [dataset.get_image_float32(int(i))[..., :3].permute(2, 0, 1) for i in picks])
        self.cache_folders["dino"] = cache.folder

        def dino_targets(i: int) -> Tensor:
            return extractor.extract(dataset.get_image_float32(i)[..., :3].permute(2, 0, 1), grid)

        return cached_grids(cache, keys, (*grid, language.dino.pca_dim), dino_targets, "DINO targets")

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        ray_bundle, batch = super().next_train(step)
        for kind, grids in self.targets.items():
            batch[kind] = lookup_targets(grids, batch["indices"], self._image_size).to(self.device)
        return ray_bundle, batch


def lookup_targets(
    grids: Float[Tensor, "n gh gw d"], indices: Int[Tensor, "rays 3"], image_size: Tuple[int, int]
) -> Float[Tensor, "rays d"]:
    """Bilinear read of each ray's target at its pixel centre (grid cells cover the image evenly)."""
    _, gh, gw, _ = grids.shape
    cam, y, x = indices[:, 0].long(), indices[:, 1].float(), indices[:, 2].float()
    u = ((y + 0.5) * gh / image_size[0] - 0.5).clamp(0, gh - 1)
    v = ((x + 0.5) * gw / image_size[1] - 0.5).clamp(0, gw - 1)
    u0, v0 = u.floor().long(), v.floor().long()
    u1, v1 = (u0 + 1).clamp(max=gh - 1), (v0 + 1).clamp(max=gw - 1)
    fu, fv = (u - u0)[:, None], (v - v0)[:, None]

    def at(a: Tensor, b: Tensor) -> Tensor:
        return grids[cam, a, b].float()

    return (at(u0, v0) * (1 - fu) + at(u1, v0) * fu) * (1 - fv) + (at(u0, v1) * (1 - fu) + at(u1, v1) * fu) * fv
