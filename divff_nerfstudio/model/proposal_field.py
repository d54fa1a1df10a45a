"""Proposal density for the triple-stream field: where any stream may have density.

nerfstudio's proposal networks see world positions only. Trained against the composite weights,
such a network can learn where static surfaces and (the union over time of) object positions are,
but not hands: they sweep through the room with the head and are static only in the camera frame.
So this proposal adds a second tiny hash grid on camera-frame positions, mirroring the actor
stream, and sums the two densities. It is trained with nerfstudio's interlevel loss against the
total (all-stream) weights, so it learns the union of the three streams.
"""

from __future__ import annotations

from typing import Callable

import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.field_components.activations import trunc_exp
from torch import Tensor, nn

from divff_nerfstudio.model.device_preset import hash_grid, mlp
from divff_nerfstudio.model.divff_field import camera_frame_positions, inside_unit_cube, normalise_in_box


class _DensityGrid(nn.Module):
    def __init__(self, levels: int, log2_size: int, max_res: int, hidden: int, implementation: str = "torch"):
        super().__init__()
        self.grid = hash_grid(levels, log2_size, max_res, implementation)
        self.mlp = mlp(self.grid.get_out_dim(), 1, hidden, out_dim=1, implementation=implementation)

    def forward(self, x: Float[Tensor, "n 3"]) -> Float[Tensor, "n 1"]:
        return trunc_exp(self.mlp(self.grid(x)) - 1.0) * inside_unit_cube(x)


class WorldAndCameraProposal(nn.Module):
    """density(x) = density_world(x) + density_camera(R^T (x - o))."""

    def __init__(
        self, aabb: Float[Tensor, "2 3"], actor_extent: float, levels: int = 5, log2_size: int = 14, max_res: int = 128, hidden: int = 16, implementation: str = "torch"
    ):
        super().__init__()
        self.register_buffer("aabb", aabb.clone())
        self.register_buffer("actor_box", torch.tensor([[-1.0] * 3, [1.0] * 3]) * actor_extent)
        self.world = _DensityGrid(levels, log2_size, max_res, hidden, implementation)
        self.camera = _DensityGrid(levels, log2_size, max_res, hidden, implementation)

    def density(
        self, positions: Float[Tensor, "*bs samples 3"], origins: Float[Tensor, "*bs 1 3"], rotation: Float[Tensor, "*bs 1 9"]
    ) -> Float[Tensor, "*bs samples 1"]:
        shape = positions.shape[:-1]
        world = normalise_in_box(positions, self.aabb).reshape(-1, 3)
        cam = camera_frame_positions(positions, origins.expand(*shape, 3), rotation.expand(*shape, 9))
        cam = normalise_in_box(cam, self.actor_box).reshape(-1, 3)
        return (self.world(world) + self.camera(cam)).reshape(*shape, 1)

    def density_fn(self, ray_bundle: RayBundle) -> Callable[[Tensor], Tensor]:
        """The positions -> density function nerfstudio's ProposalNetworkSampler expects, bound to
        the rays of this batch (their origins and camera orientations, or the camera given in
        metadata['camera_origin'] / ['camera_rotation'] when the rays carry one)."""
        origins = ray_bundle.metadata.get("camera_origin", ray_bundle.origins)[..., None, :]
        rotation = ray_bundle.metadata["camera_rotation"][..., None, :]
        return lambda positions: self.density(positions, origins, rotation)
