"""Every training frame's language target grids, from the feature cache or extracted into it, and
the read of each ray's target from them.

Image-language (CLIP pyramid) grids come first: the video-language grid of a frame is made from the
clip of frames around it (their image grids, and their pixels when the video model reads pixels).
DINO grids, when enabled, are in a PCA basis fitted once per cache folder. With the oracle teacher,
image-language grids come from the scene's ground-truth labels instead (oracle_targets.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch
from jaxtyping import Float, Int
from nerfstudio.data.datasets.base_dataset import InputDataset
from torch import Tensor, nn

from divff_nerfstudio.language.clip_encoder import ClipEncoder
from divff_nerfstudio.language.dino_targets import DinoExtractor
from divff_nerfstudio.language.feature_cache import CachedFrames, FeatureCache, cached_grids
from divff_nerfstudio.language.oracle_targets import OracleTargets
from divff_nerfstudio.language.pyramid_targets import pyramid_targets
from divff_nerfstudio.language.region_targets import pooled_targets, region_targets
from divff_nerfstudio.language.spec import LanguageSpec, LanguageTargetsConfig
from divff_nerfstudio.utils.digests import file_digest


@dataclass
class TargetGrids:
    """fp16 grids (frames, gh, gw, d) per target kind, held or read from the cache as needed, and
    the cache folder each came from."""

    grids: Dict[str, Union[Tensor, CachedFrames]] = field(default_factory=dict)
    folders: Dict[str, Path] = field(default_factory=dict)


class TargetExtraction:
    """Loads or extracts the target grids of one dataset's frames under one cache root."""

    def __init__(
        self, config: LanguageTargetsConfig, spec: LanguageSpec, dataset: InputDataset, root: Path, keep: Optional[int] = None
    ):
        """`keep`: leave the grids in the cache and hold only the last `keep` frames read (long videos)."""
        self.config = config
        self.keep = keep
        self.spec = spec
        self.dataset = dataset
        self.root = root
        self.keys = [f"{path.stem}-{file_digest(path)}" for path in dataset.image_filenames]
        """Cache file name per frame: its name and content, so a changed image is extracted again."""
        cameras = dataset.cameras
        self.grid = config.grid_shape(int(cameras.height[0]), int(cameras.width[0]))
        self._encoder: Optional[ClipEncoder] = None

    def all(self) -> TargetGrids:
        out = TargetGrids()
        clip_cache = self._clip(out)
        self._video(out, clip_cache)
        if self.config.dino.enabled:
            self._dino(out)
        return out

    def _image(self, i: int) -> Float[Tensor, "3 h w"]:
        return self.dataset.get_image_float32(i)[..., :3].permute(2, 0, 1)

    def _clip(self, out: TargetGrids) -> FeatureCache:
        extract, identity, description = self._oracle() if self.config.oracle else self._clip_pyramid()
        cache = FeatureCache(self.root, "clip", identity)
        out.grids["clip"] = cached_grids(cache, self.keys, (*self.grid, self.spec.clip_dim), extract, description, self.keep)
        out.folders["clip"] = cache.folder
        return cache

    def _clip_pyramid(self) -> Tuple[Callable[[int], Tensor], Dict[str, object], str]:
        """The CLIP's patch pyramid, blended with region embeddings when regions are on."""
        pyramid, regions = self.config.pyramid, self.config.regions

        def extract(i: int) -> Tensor:
            if self._encoder is None:  # built only when some frame is not cached
                self._encoder = ClipEncoder(self.config.clip)
            image = self._image(i)
            grid = pyramid_targets(image, self._encoder.encode_images, pyramid)
            if regions.enabled and regions.embed == "pool":
                grid = pooled_targets(grid, regions.propose(image))
            elif regions.enabled:
                by_region = region_targets(image, self._encoder.encode_images, regions, self.grid)
                grid = nn.functional.normalize((1 - regions.weight) * grid + regions.weight * by_region, dim=-1)
            return grid

        identity = {"encoder": self.config.clip.identity(), "pyramid": pyramid.identity()}
        if regions.enabled:  # caches made without regions keep their fingerprint
            identity["regions"] = regions.identity()
        return extract, identity, "CLIP targets"

    def _oracle(self) -> Tuple[Callable[[int], Tensor], Dict[str, object], str]:
        oracle = OracleTargets(Path(self.dataset.image_filenames[0]).parent.parent, self.spec.clip_dim)

        def extract(i: int) -> Tensor:
            return oracle.grid(Path(self.dataset.image_filenames[i]), self.grid)

        return extract, {**oracle.identity(), "grid": list(self.grid)}, "oracle targets"

    def _video(self, out: TargetGrids, clip_cache: FeatureCache) -> None:
        video, clip = self.spec.video, out.grids["clip"]
        frame_index = [int(f) for f in self.dataset.metadata["frame_index"]]
        position = {f: i for i, f in enumerate(frame_index)}

        def extract(i: int) -> Tensor:
            members = [position[f] for f in video.clip_indices(frame_index[i], frame_index)]
            frames = torch.stack([self._image(j) for j in members]) if video.reads_pixels else None
            return video.extract(frames, clip[members])

        identity = {"extractor": video.identity(), "clip": clip_cache.folder.name, "frames": frame_index}
        cache = FeatureCache(self.root, "video", identity)
        out.folders["video"] = cache.folder
        out.grids["video"] = cached_grids(cache, self.keys, (*self.grid, self.spec.video_dim), extract, "video targets", self.keep)

    def _dino(self, out: TargetGrids) -> None:
        dino = self.config.dino
        extractor = DinoExtractor(dino)
        cache = FeatureCache(self.root, "dino", {"dino": dino.identity(), "grid": list(self.grid)})
        picks = np.linspace(0, len(self.dataset) - 1, min(dino.pca_frames, len(self.dataset))).round().astype(int)
        extractor.load_or_fit_basis(cache.folder, [self._image(int(i)) for i in picks])
        out.folders["dino"] = cache.folder

        def extract(i: int) -> Tensor:
            return extractor.extract(self._image(i), self.grid)

        out.grids["dino"] = cached_grids(cache, self.keys, (*self.grid, dino.pca_dim), extract, "DINO targets", self.keep)


def lookup_targets(
    grids: Union[Float[Tensor, "n gh gw d"], CachedFrames], indices: Int[Tensor, "rays 3"], image_size: Tuple[int, int]
) -> Float[Tensor, "rays d"]:
    """Bilinear read of each ray's target at its pixel centre (grid cells cover the image evenly)."""
    if isinstance(grids, CachedFrames):  # read the batch's frames only
        frames, local = indices[:, 0].long().unique(return_inverse=True)
        return lookup_targets(grids[frames], torch.cat([local[:, None], indices[:, 1:].long()], dim=1), image_size)
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
