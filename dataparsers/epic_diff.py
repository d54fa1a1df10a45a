"""nerfstudio dataparser for EPIC-Diff scenes (`epic-diff`), and for own videos: a folder written by
`ns-process-data` (transforms.json, no meta.json) is read as an EPIC-Diff scene (own_video.py).

Beyond cameras and images, every split carries what the triple-stream method and its evaluation
need, per image in `metadata`:
- `frame_ids` (the file's sparse ids) and `frame_index` (dense 0..N-1 over ids_all, the index of
  the per-frame latent code; also `Cameras.times` = index / (N-1) and `Cameras.metadata`, so every
  ray knows its frame), and each camera's rotation in `Cameras.metadata['camera_rotation']` (so
  every ray can be expressed in its own camera frame);
- `nears` / `fars` in nerfstudio's (scaled) units, as z-depths like EPIC-Diff's;
- `dynamic_mask_filenames` (annotations/, test frames), `object_labels` (VIA polygons) and
  `affordance_masks` (DIV-FF's per-query masks, {query: (H, W) bool}, where annotated).
These are never nerfstudio's `mask_filenames`: those would hide the dynamic pixels from training.

Poses are re-oriented (mean camera up -> +z), centred on the box that holds every camera frustum
between near and far, and scaled so that box fits [-1, 1]^3. The transform and scale go into
`dataparser_transform` / `dataparser_scale`, which nerfstudio saves as dataparser_transforms.json,
so outputs can be mapped back to the scene's original frame. K follows COLMAP's convention (pixel
centres at +0.5), which is also nerfstudio's, so it is used as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Optional, Tuple, Type

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.cameras import camera_utils
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.plugins.registry_dataparser import DataParserSpecification
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from dataparsers.annotations import check_mask_sizes, load_affordances, load_object_labels
from dataparsers.epic_diff_scene import EpicDiffFormatError, EpicDiffScene, load_scene
from dataparsers.own_video import TRANSFORMS, load_transforms_scene


@dataclass
class EpicDiffDataParserConfig(DataParserConfig):
    """EPIC-Diff scene folder (meta.json, frames/, optional annotations/ and object_annotations/), or an
    own video processed by ns-process-data (transforms.json, images/, colmap/sparse/0)."""

    _target: Type = field(default_factory=lambda: EpicDiff)
    data: Path = Path("data/EPIC-Diff/P01_01")
    """Scene folder (the one holding meta.json, or ns-process-data's transforms.json)."""
    orientation_method: Literal["up", "pca", "none"] = "up"
    """How to rotate the scene: 'up' turns the mean camera up vector to +z."""
    scene_margin: float = 1.0
    """Scale of the scene box around the camera frustums (1.0: the frustums just fit [-1, 1]^3)."""
    check_frames: bool = True
    """Open every frame's header to check it exists, decodes and has the common size."""
    colmap_model: Optional[Path] = None
    """Own video (transforms.json): the COLMAP model near/far come from, relative to data; None: the
    model under colmap/sparse/ that registers every frame of transforms.json."""
    holdout_every: int = 10
    """Own video (transforms.json): one test and one val frame in every this many video frames."""


class EpicDiff(DataParser):
    """Reads EPIC-Diff scenes; see the module docstring for what each split carries."""

    config: EpicDiffDataParserConfig
    includes_time: bool = True

    def __init__(self, config: EpicDiffDataParserConfig):
        super().__init__(config=config)
        self._scene: Optional[EpicDiffScene] = None

    @property
    def scene(self) -> EpicDiffScene:
        """The checked scene, read once and shared by the splits."""
        if self._scene is None:
            data = Path(self.config.data)
            if not (data / "meta.json").is_file() and (data / TRANSFORMS).is_file():
                self._scene = load_transforms_scene(
                    data, self.config.colmap_model, self.config.holdout_every, check_frames=self.config.check_frames
                )
            else:
                self._scene = load_scene(data, check_frames=self.config.check_frames)
        return self._scene

    def _split_ids(self, split: str) -> List[int]:
        scene = self.scene
        ids = scene.splits.get(split)
        if ids is None:
            raise ValueError(f"unknown split {split!r}; EPIC-Diff has train, val and test")
        if ids:
            return ids
        other = {"val": "test", "test": "val"}.get(split)
        if other and scene.splits[other]:
            CONSOLE.print(f"[yellow]{scene.meta_path}: 'ids_{split}' is empty, using 'ids_{other}' for the {split} split")
            return scene.splits[other]
        raise EpicDiffFormatError(scene.meta_path, f"'ids_{split}' is empty (and so is the split that could stand in)")

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        scene = self.scene
        ids = self._split_ids(split)
        transform, scale, aabb = self._normalisation()

        poses = torch.from_numpy(np.stack([scene.poses[i] for i in ids])).float()
        poses = _apply_transform(poses, transform, scale)
        K = scene.K
        num_frames = len(scene.ids_all)
        frame_index = torch.tensor([[scene.index_of[i]] for i in ids], dtype=torch.long)
        times = torch.tensor([[scene.time_of(i)] for i in ids])
        width, height = scene.image_size
        cameras = Cameras(
            camera_to_worlds=poses,
            fx=float(K[0, 0]),
            fy=float(K[1, 1]),
            cx=float(K[0, 2]),
            cy=float(K[1, 2]),
            width=width,
            height=height,
            distortion_params=None if scene.distortion is None else torch.from_numpy(scene.distortion).float().expand(len(ids), 6),
            camera_type=CameraType.PERSPECTIVE,
            times=times,
            metadata={"frame_index": frame_index, "camera_rotation": poses[:, :, :3].reshape(-1, 9)},
        )
        masks = check_mask_sizes(scene, ids)
        labels = load_object_labels(scene)
        affordances = load_affordances(scene)
        metadata = {
            "frame_ids": ids,
            "frame_index": frame_index[:, 0],
            "num_frames": num_frames,
            "nears": torch.tensor([scene.nears[i] for i in ids]) * scale,
            "fars": torch.tensor([scene.fars[i] for i in ids]) * scale,
            "dynamic_mask_filenames": [masks[i] for i in ids],
            "object_labels": [labels.get(i, []) for i in ids],
            "affordance_masks": [affordances.get(i, {}) for i in ids],
            "scene_name": scene.name,
        }
        return DataparserOutputs(
            image_filenames=[scene.image_paths[i] for i in ids],
            cameras=cameras,
            scene_box=SceneBox(aabb=aabb),
            metadata=metadata,
            dataparser_transform=transform,
            dataparser_scale=scale,
        )

    def _normalisation(self) -> Tuple[Float[Tensor, "3 4"], float, Float[Tensor, "2 3"]]:
        """Orientation + centring transform, scale, and the scene box, all from every frame of the
        scene (not only the split), so train and eval cameras share one frame."""
        scene = self.scene
        ids = scene.ids_all
        poses = torch.from_numpy(np.stack([scene.poses[i] for i in ids])).float()
        poses = torch.cat([poses, torch.tensor([[[0.0, 0.0, 0.0, 1.0]]]).expand(len(ids), 1, 4)], dim=1)
        method = self.config.orientation_method
        _, orient = camera_utils.auto_orient_and_center_poses(poses, method=method, center_method="none")
        corners = _frustum_corners(scene, ids)  # (N, 9, 3) original frame
        corners = corners @ orient[:, :3].T + orient[:, 3]
        lo, hi = corners.reshape(-1, 3).min(0).values, corners.reshape(-1, 3).max(0).values
        centre = (lo + hi) / 2
        scale = 1.0 / float((hi - lo).max() / 2 * self.config.scene_margin)
        transform = orient.clone()
        transform[:, 3] -= centre
        aabb = torch.stack([(lo - centre), (hi - centre)]) * scale * self.config.scene_margin
        return transform, scale, aabb


def _apply_transform(poses: Float[Tensor, "n 3 4"], transform: Float[Tensor, "3 4"], scale: float) -> Float[Tensor, "n 3 4"]:
    out = torch.empty_like(poses)
    out[:, :, :3] = transform[:, :3] @ poses[:, :, :3]
    out[:, :, 3] = (poses[:, :, 3] @ transform[:, :3].T + transform[:, 3]) * scale
    return out


def _frustum_corners(scene: EpicDiffScene, ids: List[int]) -> Float[Tensor, "n 9 3"]:
    """World positions of each camera's centre and image corners at its near and far z-depth."""
    width, height = scene.image_size
    K_inv = np.linalg.inv(scene.K)
    pix = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], dtype=np.float64)
    rays = pix @ K_inv.T  # OpenCV camera frame, z = 1
    rays = rays * np.array([1.0, -1.0, -1.0])  # to OpenGL: z = -1, so a scale by depth is z-depth
    out = []
    for i in ids:
        pose = scene.poses[i]
        depths = np.array([scene.nears[i]] * 4 + [scene.fars[i]] * 4)[:, None]
        cam_pts = np.concatenate([rays, rays, np.zeros((1, 3))]) * np.concatenate([depths, [[0.0]]])
        out.append(cam_pts @ pose[:, :3].T + pose[:, 3])
    return torch.from_numpy(np.stack(out)).float()


epic_diff_dataparser = DataParserSpecification(
    config=EpicDiffDataParserConfig(),
    description="EPIC-Diff scenes (NeuralDiff format): meta.json + frames/, with dynamic masks and object labels",
)
