"""What language a run learns: the user's settings (`LanguageTargetsConfig`, flags under
--pipeline.datamanager.language) and what the model needs to know of them (`LanguageSpec`).

The spec is made from the settings and the architectures alone, without weights, so building a
model to view, render or evaluate a run never extracts or downloads anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

from divff_nerfstudio.language.clip_encoder import ClipEncoderConfig, register_project_models
from divff_nerfstudio.language.dino_targets import DinoTargetsConfig
from divff_nerfstudio.language.pyramid_targets import PatchPyramidConfig, grid_cells
from divff_nerfstudio.language.region_targets import RegionTargetsConfig
from divff_nerfstudio.language.video_targets import VideoExtractorConfig, VideoTargetExtractor


@dataclass
class LanguageTargetsConfig:
    """Where the language targets come from and where they are cached."""

    enabled: bool = True
    """Learn language at all (divff-geometry: False)."""
    clip: ClipEncoderConfig = field(default_factory=ClipEncoderConfig)
    video: VideoExtractorConfig = field(default_factory=VideoExtractorConfig)
    pyramid: PatchPyramidConfig = field(default_factory=PatchPyramidConfig)
    regions: RegionTargetsConfig = field(default_factory=RegionTargetsConfig)
    dino: DinoTargetsConfig = field(default_factory=DinoTargetsConfig)
    cache_dir: Optional[Path] = None
    """Feature cache folder; None: <scene>/divff_cache."""
    oracle: bool = False
    """Image-language targets from a generated scene's ground-truth label maps instead of the CLIP,
    and queries encoded the same way (oracle_targets.py): what the field reaches with a perfect
    teacher. Video targets pool them like the CLIP ones."""
    oracle_grid_stride: int = 2
    """Pixels per cell of the oracle's target grids. A perfect teacher should not be held back by
    the CLIP pyramid's 8-pixel cells (ORACLE_23, object mIoU of the oracle's own targets: 70.7 with
    8 pixels, 89.6 with 4, 95.8 with 2); 2 costs 1.4 GB of grids for 120 frames of 228x128."""

    def __setstate__(self, state: Dict[str, object]) -> None:
        """A run saved before `oracle_grid_stride` existed trained its oracle on the pyramid's grid;
        one saved before `regions` existed used the pyramid alone."""
        self.__dict__.update(state)
        if "regions" not in state:
            self.regions = RegionTargetsConfig(method="none")
        if "oracle_grid_stride" not in state and "pyramid" in state:
            self.oracle_grid_stride = self.pyramid.grid_stride

    def grid_shape(self, height: int, width: int) -> Tuple[int, int]:
        """Cells of the image-language target grid of a height x width frame."""
        return grid_cells(height, width, self.oracle_grid_stride if self.oracle else self.pyramid.grid_stride)

    def clip_dim(self) -> int:
        """Embedding size of the configured CLIP, from its architecture alone (no weights)."""
        import open_clip

        register_project_models()
        config = open_clip.get_model_config(self.clip.model_name)
        if config is None:
            raise ValueError(f"open_clip has no architecture {self.clip.model_name!r} (--pipeline.datamanager.language.clip.model-name)")
        return int(config["embed_dim"])

    def spec(self) -> "LanguageSpec":
        clip_dim = self.clip_dim()
        video = self.video.setup()
        return LanguageSpec(
            clip=self.clip,
            video=video,
            clip_dim=clip_dim,
            video_dim=video.embed_dim(clip_dim),
            dino_dim=self.dino.pca_dim if self.dino.enabled else None,
            oracle=self.oracle,
        )


@dataclass(frozen=True)
class LanguageSpec:
    """The language heads a model needs and how its queries are encoded (handed to the model in the
    train dataset's metadata["language"])."""

    clip: ClipEncoderConfig
    """Encodes text queries of the image-language embedding."""
    video: VideoTargetExtractor
    """Encodes text queries of the video-language embedding."""
    clip_dim: int
    video_dim: int
    dino_dim: Optional[int] = None
    """Size of the DINO head; None: no DINO head."""
    oracle: bool = False
    """Queries are encoded by the oracle teacher's table, not the CLIP."""

    def target_dims(self) -> Dict[str, int]:
        """Embedding size per target kind (clip, video, and dino when enabled)."""
        dims = {"clip": self.clip_dim, "video": self.video_dim}
        if self.dino_dim:
            dims["dino"] = self.dino_dim
        return dims
