"""What the model is built with on the device it runs on.

On CUDA with tiny-cuda-nn installed, the hash grids, MLPs and direction encoding run its fused
kernels (nerfstudio's `implementation` switch; nerfstudio puts its pure-torch path about 4x behind);
anywhere else the torch path, with the project's own hash-grid kernel on the CPU. Grid and sample
sizes follow the device too: the CPU sizes were chosen on 2 cores, a GPU affords nerfacto's. Both
are chosen once, said in the log, and written into the model's config, which the trainer saves
again (config.yml), so a run loads with what it was trained with on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, Union

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import HashEncoding, SHEncoding
from nerfstudio.field_components.mlp import MLP
from torch import Tensor, nn

from divff_nerfstudio.model.hash_encoding import FastHashEncoding

Implementation = Literal["auto", "tcnn", "torch"]


@dataclass(frozen=True)
class Sizes:
    """The model config's fields a device preset fills when they are left unset (None)."""

    static_levels: int
    static_log2_hashmap_size: int
    static_max_res: int
    transient_levels: int
    transient_log2_hashmap_size: int
    transient_max_res: int
    num_proposal_samples: int
    num_nerf_samples: int


CPU_SIZES = Sizes(12, 17, 512, 8, 15, 256, 48, 24)
"""Sized for 2 CPU cores (the measurements are in DivffModelConfig's field docs)."""
GPU_SIZES = Sizes(16, 19, 2048, 16, 17, 1024, 96, 48)
"""nerfacto's static grid (16 levels of 2^19 up to 2048) and per-ray samples (96 proposal, 48
field); the object and actor streams cover smaller things and get a quarter of its table."""


def tcnn_importable() -> bool:
    try:
        import tinycudann  # noqa: F401
    except (ImportError, OSError, EnvironmentError):  # not installed, or built for no usable GPU
        return False
    return True


class DevicePresetError(ValueError):
    pass


def resolve(config, device: Union[str, torch.device]) -> str:
    """Fills the config's unset sizes and its implementation for `device`, in place; returns what
    was chosen, for the log. An explicit `tcnn` where it cannot run is an error, not a fallback: a
    run trained with it has tiny-cuda-nn's parameter layout."""
    on_cuda = torch.device(device).type == "cuda"
    preset = GPU_SIZES if on_cuda else CPU_SIZES
    for f in fields(Sizes):
        if getattr(config, f.name) is None:
            setattr(config, f.name, getattr(preset, f.name))
    if config.implementation == "auto":
        config.implementation = "tcnn" if on_cuda and tcnn_importable() else "torch"
    elif config.implementation == "tcnn" and not (on_cuda and tcnn_importable()):
        raise DevicePresetError(
            f"implementation 'tcnn' needs CUDA and tiny-cuda-nn (device {device}, tinycudann "
            f"{'importable' if tcnn_importable() else 'not importable'}); a run trained with it loads only there"
        )
    sizes = ", ".join(f"{f.name} {getattr(config, f.name)}" for f in fields(Sizes))
    return f"divff on {torch.device(device).type}: {'tiny-cuda-nn' if config.implementation == 'tcnn' else 'torch'} grids and MLPs; {sizes}"


class TcnnFlat(nn.Module):
    """A tiny-cuda-nn module (nerfstudio's wrapper) that takes inputs of any leading shape and gives
    float32: tiny-cuda-nn takes (n, d) only and answers in half precision."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    @property
    def in_dim(self) -> int:
        return self.module.in_dim

    def get_out_dim(self) -> int:
        return self.module.get_out_dim()

    def forward(self, x: Float[Tensor, "*bs d"]) -> Float[Tensor, "*bs out"]:
        return self.module(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1).float()


def hash_grid(levels: int, log2_size: int, max_res: int, implementation: str = "torch") -> nn.Module:
    """A hash-grid encoding: tiny-cuda-nn's, or the project's torch/CPU-kernel one."""
    if implementation == "tcnn":
        return TcnnFlat(HashEncoding(num_levels=levels, min_res=16, max_res=max_res, log2_hashmap_size=log2_size, features_per_level=2, implementation="tcnn"))
    return FastHashEncoding(num_levels=levels, min_res=16, max_res=max_res, log2_hashmap_size=log2_size, features_per_level=2)


def mlp(*args, implementation: str = "torch", **kwargs) -> nn.Module:
    """nerfstudio's MLP (same arguments and defaults), with tiny-cuda-nn's fused kernel where chosen."""
    made = MLP(*args, implementation=implementation, **kwargs)
    return TcnnFlat(made) if implementation == "tcnn" else made


def direction_encoding(implementation: str = "torch") -> nn.Module:
    """Spherical harmonics of the view direction, degree 4 (nerfacto's)."""
    made = SHEncoding(levels=4, implementation=implementation)
    return TcnnFlat(made) if implementation == "tcnn" else made
