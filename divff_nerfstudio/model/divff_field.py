"""The triple-stream radiance field of NeuralDiff on nerfstudio components (hash grids, small MLPs).

- static stream: world position (hash grid) -> density + features; + view direction (SH) and a
  per-image appearance code -> colour;
- object stream: its own world-position hash grid + the temporal code z(t) -> density, colour, beta;
- actor stream: the sample point in the camera frame of its own frame (the actor moves with the
  camera, so it is static there) + z(t) -> density, colour, beta.

The reference feeds the static MLP trunk into the object stream; with hash grids a separate, smaller
grid for objects is cheaper and keeps object gradients out of the static geometry.
Hash grids run through hash_encoding.py (a C++ CPU kernel, nerfstudio's encoding elsewhere). Each
stream also returns its input features, from which the language heads (language_heads.py) read.
"""

from __future__ import annotations

from enum import Enum
from typing import Dict, Mapping, Optional, Tuple

import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RaySamples
from nerfstudio.field_components.activations import trunc_exp
from nerfstudio.field_components.embedding import Embedding
from nerfstudio.fields.base_field import Field
from torch import Tensor, nn

from divff_nerfstudio.model.device_preset import TcnnFlat, direction_encoding, hash_grid, mlp


class DivffFieldHeadNames(Enum):
    """Names of the field's outputs, one per stream quantity."""

    STATIC_DENSITY = "static_density"
    STATIC_RGB = "static_rgb"
    OBJECT_DENSITY = "object_density"
    OBJECT_RGB = "object_rgb"
    OBJECT_BETA = "object_beta"
    ACTOR_DENSITY = "actor_density"
    ACTOR_RGB = "actor_rgb"
    ACTOR_BETA = "actor_beta"
    STATIC_FEATURES = "static_features"
    OBJECT_FEATURES = "object_features"
    ACTOR_FEATURES = "actor_features"
    """Each stream's own input features (hash encoding, + temporal code): what language heads read."""


_H = DivffFieldHeadNames
_STREAM_HEADS: Dict[str, Dict[str, DivffFieldHeadNames]] = {
    "density": {"static": _H.STATIC_DENSITY, "objects": _H.OBJECT_DENSITY, "actor": _H.ACTOR_DENSITY},
    "rgb": {"static": _H.STATIC_RGB, "objects": _H.OBJECT_RGB, "actor": _H.ACTOR_RGB},
    "beta": {"objects": _H.OBJECT_BETA, "actor": _H.ACTOR_BETA},
    "features": {"static": _H.STATIC_FEATURES, "objects": _H.OBJECT_FEATURES, "actor": _H.ACTOR_FEATURES},
}


def stream_outputs(outputs: Mapping[DivffFieldHeadNames, Tensor], quantity: str) -> Dict[str, Tensor]:
    """One quantity (density, rgb, beta, features) of the field's outputs keyed by stream name
    (STREAMS; beta: objects and actor only): the one place head names meet stream names."""
    return {stream: outputs[head] for stream, head in _STREAM_HEADS[quantity].items()}


def camera_frame_positions(
    positions: Float[Tensor, "*bs 3"], origins: Float[Tensor, "*bs 3"], rotation: Float[Tensor, "*bs 9"]
) -> Float[Tensor, "*bs 3"]:
    """World points in the frame of the camera that cast the ray: R^T (x - o), R = c2w rotation."""
    rot = rotation.reshape(*rotation.shape[:-1], 3, 3)
    return ((positions - origins).unsqueeze(-2) @ rot).squeeze(-2)


def normalise_in_box(positions: Float[Tensor, "*bs 3"], aabb: Float[Tensor, "2 3"]) -> Float[Tensor, "*bs 3"]:
    """Positions mapped to [0, 1]^3 by a box (outside the box: outside [0, 1])."""
    return (positions - aabb[0]) / (aabb[1] - aabb[0])


def inside_unit_cube(x: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 1"]:
    return ((x >= 0) & (x <= 1)).all(dim=-1, keepdim=True).to(x.dtype)


class TemporalCode(nn.Module):
    """A smooth low-rank code of time t in [0, 1]: sin/cos features times a learned matrix.

    Like the reference (sin/cos of the normalised frame index, then a learned K x D matrix), with the
    highest frequency tied to the number of frames so held-out frames between two training frames
    get a code between theirs instead of an aliased one.
    """

    def __init__(self, num_frames: int, out_dim: int = 17, num_frequencies: int = 8, frames_per_period: float = 6.0):
        super().__init__()
        max_cycles = max(num_frames / frames_per_period, 1.0)
        freqs = torch.logspace(0, torch.log10(torch.tensor(max_cycles)), num_frequencies) if num_frequencies > 1 else torch.ones(1)
        self.register_buffer("frequencies", freqs * 2 * torch.pi, persistent=False)
        self.linear = nn.Linear(1 + 2 * num_frequencies, out_dim)

    def features(self, times: Float[Tensor, "*bs 1"]) -> Float[Tensor, "*bs k"]:
        angles = times * self.frequencies
        return torch.cat([times, torch.sin(angles), torch.cos(angles)], dim=-1)

    def forward(self, times: Float[Tensor, "*bs 1"]) -> Float[Tensor, "*bs out_dim"]:
        return self.linear(self.features(times))


def _relu() -> nn.Module:
    """The hidden activation, in place: a hidden layer's output is needed by nothing but its ReLU
    (whose backward reads its own result), and a fresh 8 MB tensor per layer and chunk cost 9 % of
    a render on the CPU."""
    return nn.ReLU(inplace=True)


def mlp_with_ray_inputs(
    mlp: nn.Module, per_sample: Float[Tensor, "rays samples a"], per_ray: Float[Tensor, "rays 1 b"]
) -> Float[Tensor, "rays samples out"]:
    """mlp(cat([per_sample, per_ray broadcast over the samples])), with the per-ray part of the
    first layer computed once per ray: no per-sample copy of per-ray inputs (time code, view
    direction, appearance) is ever made, and the first layer does a fraction of the work. Same
    parameters as nerfstudio's torch MLP, so checkpoints are unchanged. A tiny-cuda-nn MLP (half
    precision out) takes the concatenated input: its layers are one fused kernel."""
    if isinstance(mlp, TcnnFlat):
        return mlp(torch.cat([per_sample, per_ray.expand(*per_sample.shape[:-1], -1)], dim=-1))
    assert not mlp._skip_connections, "skip connections would need the concatenated input"
    first = mlp.layers[0]
    split = per_sample.shape[-1]
    x = nn.functional.linear(per_sample, first.weight[:, :split], first.bias)
    x += nn.functional.linear(per_ray, first.weight[:, split:])  # in place: a fresh tensor here cost 8 % of a render
    for layer in mlp.layers[1:]:  # as MLP.pytorch_fwd: the activation between layers
        x = layer(mlp.activation(x) if mlp.activation is not None else x)
    return mlp.out_activation(x) if mlp.out_activation is not None else x


class LevelFade(nn.Module):
    """Lets only the coarsest levels of a hash-grid encoding through (a fractional level fades in);
    the finer levels get no input and so no gradient while they are held back."""

    def __init__(self, levels: int):
        super().__init__()
        self.register_buffer("weights", torch.ones(levels, 1), persistent=False)
        self.fading = False

    def set(self, active: float) -> None:
        levels = self.weights.shape[0]
        self.weights.copy_((active - torch.arange(levels, dtype=torch.float32)).clamp(0, 1).view(-1, 1))
        self.fading = active < levels

    def forward(self, encoding: Float[Tensor, "*bs f"]) -> Float[Tensor, "*bs f"]:
        if not self.fading:
            return encoding
        return (encoding.unflatten(-1, (self.weights.shape[0], -1)) * self.weights).flatten(-2)


class TransientStream(nn.Module):
    """Object or actor stream: hash features of its coordinates + temporal code -> sigma, rgb, beta.

    With `time_grid`, a second hash grid over (x, y, time_scale * t) too: the temporal code enters
    only through the small MLP, which draws a hand that moves far between frames as a blur of its
    poses; a grid with time as a coordinate can put it where it is in each frame.
    """

    def __init__(self, levels: int, log2_size: int, max_res: int, code_dim: int, hidden: int, implementation: str = "torch", time_grid: bool = False, time_scale: float = 1.0):
        super().__init__()
        self.time_scale = time_scale
        self.grid = hash_grid(levels, log2_size, max_res, implementation)
        self.fade = LevelFade(levels)
        self.time_grid = hash_grid(levels, log2_size, max_res, implementation) if time_grid else None
        time_dim = self.time_grid.get_out_dim() if self.time_grid is not None else 0
        self.mlp = mlp(self.grid.get_out_dim() + time_dim + code_dim, 2, hidden, out_dim=5, activation=_relu(), implementation=implementation)

    def get_out_dim(self) -> int:
        return self.mlp.in_dim

    def forward(
        self, x: Float[Tensor, "rays samples 3"], code: Float[Tensor, "rays 1 c"], features: bool = True, times: Optional[Float[Tensor, "rays 1 1"]] = None
    ) -> Dict[str, Float[Tensor, "rays samples _"]]:
        """Density, colour and beta; with `features`, also the MLP's input (for language heads)."""
        encoding = self.fade(self.grid(x))
        if self.time_grid is not None:
            assert times is not None, "a stream with a time grid needs the rays' times"
            xyt = torch.cat([x[..., :2], self.time_scale * times.expand(*x.shape[:-1], 1)], dim=-1)
            encoding = torch.cat([encoding, self.fade(self.time_grid(xyt))], dim=-1)
        raw = mlp_with_ray_inputs(self.mlp, encoding, code)
        out = {
            "density": trunc_exp(raw[..., :1] - 1.0) * inside_unit_cube(x),
            "rgb": torch.sigmoid(raw[..., 1:4]),
            "beta": nn.functional.softplus(raw[..., 4:5]),
        }
        if features:
            out["features"] = torch.cat([encoding, code.expand(*encoding.shape[:-1], -1)], dim=-1)
        return out


class DivffField(Field):
    """Static, object and actor streams evaluated at the same samples (see module docstring)."""

    def __init__(
        self,
        aabb: Float[Tensor, "2 3"],
        actor_extent: float,
        num_images: int,
        num_frames: int,
        static_levels: int = 12,
        static_log2_size: int = 17,
        static_max_res: int = 512,
        transient_levels: int = 8,
        transient_log2_size: int = 15,
        transient_max_res: int = 256,
        hidden_dim: int = 64,
        geo_feat_dim: int = 15,
        appearance_dim: int = 8,
        temporal_code_dim: int = 17,
        temporal_frequencies: int = 8,
        use_average_appearance_embedding: bool = True,
        implementation: str = "torch",
        time_grids: Tuple[str, ...] = (),
        time_grid_scale: float = 1.0,
    ):
        """implementation: "torch" or "tcnn" (tiny-cuda-nn) for the grids, MLPs and the direction
        encoding (device_preset chooses)."""
        super().__init__()
        self.register_buffer("aabb", aabb.clone())
        # The actor lives within arm's reach: a cube of half-size actor_extent around the camera.
        self.register_buffer("actor_box", torch.tensor([[-1.0] * 3, [1.0] * 3]) * actor_extent)
        self.geo_feat_dim = geo_feat_dim
        self.use_average_appearance_embedding = use_average_appearance_embedding

        self.static_grid = hash_grid(static_levels, static_log2_size, static_max_res, implementation)
        self.static_fade = LevelFade(static_levels)
        self.static_mlp = mlp(self.static_grid.get_out_dim(), 2, hidden_dim, out_dim=1 + geo_feat_dim, activation=_relu(), implementation=implementation)
        self.direction_encoding = direction_encoding(implementation)
        self.appearance = Embedding(num_images, appearance_dim)
        self.static_rgb_mlp = mlp(
            geo_feat_dim + self.direction_encoding.get_out_dim() + appearance_dim,
            2,
            hidden_dim,
            out_dim=3,
            activation=_relu(),
            out_activation=nn.Sigmoid(),
            implementation=implementation,
        )
        self.temporal_code = TemporalCode(num_frames, temporal_code_dim, temporal_frequencies)
        self.objects = TransientStream(transient_levels, transient_log2_size, transient_max_res, temporal_code_dim, hidden_dim, implementation, "objects" in time_grids, time_grid_scale)
        self.actor = TransientStream(transient_levels, transient_log2_size, transient_max_res, temporal_code_dim, hidden_dim, implementation, "actor" in time_grids, time_grid_scale)

    def set_levels(self, fraction: float, transient: bool = False) -> None:
        """Let only this fraction of the static grid's levels through (and, with `transient`, of
        the object and actor grids'), so early in training the static stream cannot draw anything
        as small as an object and the object stream learns the objects at every place they rest."""
        fades = [self.static_fade, *((self.objects.fade, self.actor.fade) if transient else ())]
        for fade in fades:
            fade.set(fraction * fade.weights.shape[0])

    def static_density(self, positions: Float[Tensor, "*bs 3"]) -> Tuple[Tensor, Tensor]:
        """Static density and geometry features at world positions (also used for static exports)."""
        density, geo, _ = self._static(positions)
        return density, geo

    def _static(self, positions: Float[Tensor, "*bs 3"]) -> Tuple[Tensor, Tensor, Tensor]:
        """Density, geometry features and the grid encoding they come from."""
        x = normalise_in_box(positions, self.aabb)
        encoding = self.static_fade(self.static_grid(x))
        h = self.static_mlp(encoding)
        return trunc_exp(h[..., :1] - 1.0) * inside_unit_cube(x), h[..., 1:], encoding

    def get_density(self, ray_samples: RaySamples) -> Tuple[Tensor, Tensor]:
        return self.static_density(ray_samples.frustums.get_positions())

    def feature_dims(self) -> Dict[str, int]:
        """Sizes of STATIC/OBJECT/ACTOR_FEATURES, by stream."""
        return {"static": self.static_grid.get_out_dim(), "objects": self.objects.get_out_dim(), "actor": self.actor.get_out_dim()}

    def _appearance(self, ray_samples: RaySamples) -> Float[Tensor, "*rays 1 a"]:
        """Per ray: looked up once, not once per sample."""
        shape = (*ray_samples.shape[:-1], 1, self.appearance.out_dim)
        if ray_samples.camera_indices is None:
            return self.appearance.mean(dim=0).expand(shape)
        if self.training:
            return self.appearance(ray_samples.camera_indices[..., :1, 0])
        if self.use_average_appearance_embedding:
            return self.appearance.mean(dim=0).expand(shape)
        return torch.zeros(shape, device=ray_samples.camera_indices.device)

    def get_outputs(self, ray_samples: RaySamples, density_embedding: Optional[Tensor] = None, features: bool = True) -> Dict:
        """Static colour from the static features (`density_embedding`), and the object and actor
        streams; the object and actor features only with `features`. Needs ray_samples.times and
        ray_samples.metadata['camera_rotation'] (and takes the actor's camera centre from
        metadata['camera_origin'] when present, else the ray origin). Rays carry one direction, time
        and camera each: those are read from a ray's first sample and enter the MLPs once per ray."""
        assert density_embedding is not None, "the static colour needs the static geometry features"
        positions = ray_samples.frustums.get_positions()
        directions = self.direction_encoding((ray_samples.frustums.directions[..., :1, :] + 1.0) / 2.0)
        per_ray = torch.cat([directions, self._appearance(ray_samples)], dim=-1)
        static_rgb = mlp_with_ray_inputs(self.static_rgb_mlp, density_embedding, per_ray)
        times = ray_samples.times[..., :1, :]
        code = self.temporal_code(times)
        objects = self.objects(normalise_in_box(positions, self.aabb), code, features, times)
        rotation = ray_samples.metadata["camera_rotation"][..., :1, :]
        # the actor's camera: the ray's own, unless the rays carry another one (a frame's actor exported)
        origins = ray_samples.metadata.get("camera_origin", ray_samples.frustums.origins)[..., :1, :]
        actor = self.actor(normalise_in_box(camera_frame_positions(positions, origins, rotation), self.actor_box), code, features, times)
        outputs = {
            DivffFieldHeadNames.STATIC_RGB: static_rgb,
            DivffFieldHeadNames.OBJECT_DENSITY: objects["density"],
            DivffFieldHeadNames.OBJECT_RGB: objects["rgb"],
            DivffFieldHeadNames.OBJECT_BETA: objects["beta"],
            DivffFieldHeadNames.ACTOR_DENSITY: actor["density"],
            DivffFieldHeadNames.ACTOR_RGB: actor["rgb"],
            DivffFieldHeadNames.ACTOR_BETA: actor["beta"],
        }
        if features:
            outputs[DivffFieldHeadNames.OBJECT_FEATURES] = objects["features"]
            outputs[DivffFieldHeadNames.ACTOR_FEATURES] = actor["features"]
        return outputs

    def forward(self, ray_samples: RaySamples, compute_normals: bool = False, features: bool = True) -> Dict[DivffFieldHeadNames, Tensor]:
        """All streams at every sample; each stream's features (what language heads read) only
        with `features`."""
        static_density, geo, encoding = self._static(ray_samples.frustums.get_positions())
        outputs = self.get_outputs(ray_samples, density_embedding=geo, features=features)
        outputs[DivffFieldHeadNames.STATIC_DENSITY] = static_density
        if features:
            outputs[DivffFieldHeadNames.STATIC_FEATURES] = encoding
        return outputs
