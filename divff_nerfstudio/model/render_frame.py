"""Which moment of the video a render shows, and from whose head the actor is seen.

Rays from dataset cameras carry their frame's time and camera orientation (the actor stream needs
both); rays from elsewhere (the viewer, camera paths, ns-export's checks) may carry neither. Renders
and exports can also freeze every ray at one time (`time`), and export one frame's actor wherever
the rays come from (`actor_camera`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from torch import Tensor


@dataclass
class RenderFrame:
    time: Optional[float] = None
    """When set (divff-render/divff-export --frame-id or --time), every ray outside training is
    rendered at this time (frame index / (N-1)): a camera path with time frozen, or one frame's
    objects exported."""
    actor_camera: Optional[Float[Tensor, "3 4"]] = None
    """When set (camera-to-world; divff-export of a frame), the actor stream is evaluated in this
    camera's frame for every ray outside training: the actor where it was at that frame, seen from
    anywhere."""

    def rays(self, ray_bundle: RayBundle, training: bool) -> RayBundle:
        """Rays with a time (`time`, or 0 when they have none) and the camera orientation they were
        cast from (the identity when unknown)."""
        if ray_bundle.times is None or (self.time is not None and not training):
            ray_bundle.times = torch.full_like(ray_bundle.origins[..., :1], self.time or 0.0)
        if not ray_bundle.metadata or "camera_rotation" not in ray_bundle.metadata:
            eye = torch.eye(3, device=ray_bundle.origins.device).reshape(9)
            rotation = eye.expand(*ray_bundle.origins.shape[:-1], 9)
            ray_bundle.metadata = {**(ray_bundle.metadata or {}), "camera_rotation": rotation}
        if self.actor_camera is not None and not training:
            pose = self.actor_camera.to(ray_bundle.origins.device)
            batch = ray_bundle.origins.shape[:-1]
            ray_bundle.metadata = {
                **ray_bundle.metadata,
                "camera_rotation": pose[:, :3].reshape(9).expand(*batch, 9),
                "camera_origin": pose[:, 3].expand(*batch, 3),
            }
        return ray_bundle

    def camera(self, camera: Cameras) -> Cameras:
        """A camera that may not come from the dataset (viewer, camera paths): its rays get the
        camera's orientation, and time 0 when it has none (`time`, when set, for every camera)."""
        if camera.metadata is None or "camera_rotation" not in camera.metadata:
            rotation = camera.camera_to_worlds[..., :3, :3].reshape(*camera.shape, 9)
            camera.metadata = {**(camera.metadata or {}), "camera_rotation": rotation}
        if camera.times is None or self.time is not None:
            camera.times = torch.full((*camera.shape, 1), self.time or 0.0, device=camera.device)
        return camera
