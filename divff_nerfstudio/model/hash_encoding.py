"""A fast multi-resolution hash encoding for CPUs (same table layout as nerfstudio's).

On the CPU, a small C++ kernel (hash_grid_cpu.cpp, compiled once by torch's extension loader and
cached) does forward and backward with every point-level pair in registers. Where it cannot be
built (no compiler) or the tensors live on a GPU, a vectorised torch version runs instead:
nerfstudio's torch fallback hashes the 8 cell corners one by one; here all corners of all levels
are hashed in one pass and the power-of-two table size turns the modulo into a mask. Parameters,
initialisation and `get_out_dim` come from nerfstudio's `HashEncoding`, so configs and
checkpoints look the same.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import HashEncoding
from torch import Tensor

_PRIMES = (1, 2654435761, 805459861)
_KERNEL_SOURCE = Path(__file__).with_name("hash_grid_cpu.cpp")
_kernel: Optional[Any] = None
_kernel_failed = False


def cpu_kernel() -> Optional[Any]:
    """The compiled CPU kernel, built on first use; None (with one warning) if it cannot be built.

    Built for the CPU it runs on (-march=native: the forward pass took 4.4-5.2 ms instead of
    6.0-7.2 ms for 32K points x 12 levels on an AVX-512 machine), or for the generic target where
    the compiler refuses that flag."""
    global _kernel, _kernel_failed
    if _kernel is None and not _kernel_failed:
        from torch.utils.cpp_extension import load

        errors = []
        for flags in (["-O3", "-march=native", "-fopenmp"], ["-O3", "-fopenmp"]):
            try:
                _kernel = load(name="divff_hash_grid_cpu", sources=[str(_KERNEL_SOURCE)], extra_cflags=flags, extra_ldflags=["-fopenmp"], verbose=False)
                break
            except Exception as err:  # no compiler, headers or flag: the torch version still works
                errors.append(str(err))
        if _kernel is None:
            _kernel_failed = True
            warnings.warn(f"hash grid CPU kernel unavailable ({errors[-1]}); using the slower torch version")
    return _kernel


class FastHashEncoding(HashEncoding):
    """nerfstudio's HashEncoding (torch implementation) with a vectorised forward pass.

    The hash of a corner is the xor of one term per axis, so the two possible terms per axis
    (cell and cell + 1) are computed once and the 8 corners come from broadcasting; likewise the
    trilinear weights. Arithmetic is int32: the products wrap modulo 2^32, which keeps the low bits
    the power-of-two table size uses, so the indices equal nerfstudio's.
    """

    def __init__(self, num_levels: int = 16, min_res: int = 16, max_res: int = 1024, log2_hashmap_size: int = 19, features_per_level: int = 2):
        super().__init__(
            num_levels=num_levels,
            min_res=min_res,
            max_res=max_res,
            log2_hashmap_size=log2_hashmap_size,
            features_per_level=features_per_level,
            implementation="torch",
        )
        wrapped = [p - 2**32 if p >= 2**31 else p for p in _PRIMES]
        self.register_buffer("primes", torch.tensor(wrapped, dtype=torch.int32), persistent=False)
        self.register_buffer("level_offsets", (torch.arange(num_levels, dtype=torch.int32) * self.hash_table_size).view(-1, 1, 1, 1), persistent=False)
        self.register_buffer("level_scales", self.scalings.view(-1, 1).float().clone(), persistent=False)
        self.mask = self.hash_table_size - 1

    use_kernel: bool = True
    """Use the compiled CPU kernel when the inputs are on the CPU (tests switch it off to compare)."""

    def pytorch_fwd(self, in_tensor: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs output_dim"]:
        if self.use_kernel and in_tensor.device.type == "cpu" and in_tensor.dtype == torch.float32:
            kernel = cpu_kernel()
            if kernel is not None:
                x = in_tensor.reshape(-1, 3).contiguous()
                scales = self.level_scales.view(-1).contiguous()
                out = _KernelHashGrid.apply(self.hash_table, x, scales, self.hash_table_size, kernel)
                return out.reshape(*in_tensor.shape[:-1], -1)
        return self.torch_fwd(in_tensor)

    def torch_fwd(self, in_tensor: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs output_dim"]:
        batch = in_tensor.shape[:-1]
        x = in_tensor.reshape(-1, 1, 3) * self.level_scales  # (n, L, 3)
        cell = torch.floor(x)
        frac = x - cell
        cell = cell.to(torch.int32)
        terms = torch.stack([cell, cell + 1], dim=-1) * self.primes.view(3, 1)  # (n, L, 3, 2)
        hashed = terms[..., 0, :, None, None] ^ terms[..., 1, None, :, None] ^ terms[..., 2, None, None, :]  # (n, L, 2, 2, 2)
        index = ((hashed & self.mask) + self.level_offsets).long()  # int64: the fast scatter/gather kernels
        w = torch.stack([1.0 - frac, frac], dim=-1)  # (n, L, 3, 2)
        weights = w[..., 0, :, None, None] * w[..., 1, None, :, None] * w[..., 2, None, None, :]  # (n, L, 2, 2, 2)
        n, levels = x.shape[:2]
        encoded = _InterpolateCorners.apply(self.hash_table, index.reshape(-1, 8), weights.reshape(-1, 8))  # (n L, F)
        return encoded.reshape(*batch, -1)


class _InterpolateCorners(torch.autograd.Function):
    """sum_k w_k table[index_k] with a gradient for the table only (positions need none here).

    torch's generic gather backward (embedding_dense_backward) dominated the step on CPUs; a flat
    scatter_add_ of the weighted output gradient is several times faster.
    """

    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor, weights: Tensor) -> Tensor:  # index, weights: (m, 8)
        ctx.save_for_backward(index, weights)
        ctx.table_shape = table.shape
        corners = table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[1])  # (m, 8, F)
        return torch.bmm(weights.unsqueeze(1), corners).squeeze(1)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        index, weights = ctx.saved_tensors
        rows, width = ctx.table_shape
        contributions = weights.unsqueeze(-1) * grad_out.unsqueeze(1)  # (m, 8, F)
        flat_index = (index.unsqueeze(-1) * width + torch.arange(width, device=index.device)).reshape(-1)
        grad_table = torch.zeros(rows * width, dtype=grad_out.dtype, device=grad_out.device)
        grad_table.scatter_add_(0, flat_index, contributions.reshape(-1))
        return grad_table.view(rows, width), None, None


class _KernelHashGrid(torch.autograd.Function):
    """The C++ kernel as an autograd function (gradient for the table; positions need none)."""

    @staticmethod
    def forward(ctx, table: Tensor, x: Tensor, scales: Tensor, table_size: int, kernel: Any) -> Tensor:
        ctx.save_for_backward(x, scales)
        ctx.table_size, ctx.rows, ctx.kernel = table_size, table.shape[0], kernel
        return kernel.forward(x, table.contiguous(), scales, table_size)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, scales = ctx.saved_tensors
        grad_table = ctx.kernel.backward(grad_out.contiguous(), x, scales, ctx.table_size, ctx.rows)
        return grad_table, None, None, None, None
