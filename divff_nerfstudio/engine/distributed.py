"""Training in several processes (torch DDP), on GPUs through nerfstudio's launcher and on the CPU.

nerfstudio's launcher asserts CUDA and its pipeline wraps the model with `device_ids=[local_rank]`,
which torch refuses for a model on the CPU. The pipeline here wraps by device (pipeline.py), so
the only piece the CPU needs is a worker that joins a gloo group and runs the same train loop:
that is how the multi-process path is tested without a GPU. On GPUs, `ns-train divff
--machine.num-devices N` goes through nerfstudio's launcher unchanged.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, List

import torch.distributed as dist
import torch.multiprocessing as mp
from nerfstudio.configs.base_config import InstantiateConfig
from nerfstudio.utils import comms

TrainLoop = Callable[[int, int, Any, int], Any]
"""nerfstudio's train_loop signature: (local_rank, world_size, config, global_rank)."""


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextmanager
def main_process_first() -> Iterator[None]:
    """The body runs on rank 0 first and on the other ranks once it is done: rank 0 fills a cache
    (the language targets), the others read it instead of all extracting the same frames at once."""
    distributed = is_distributed()
    if distributed and dist.get_rank() != 0:
        dist.barrier()
    yield
    if distributed and dist.get_rank() == 0:
        dist.barrier()


def gather_objects(obj: Any) -> List[Any]:
    """Each rank's `obj`, in rank order, on every rank ([obj] without torch.distributed)."""
    if not is_distributed():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _cpu_worker(local_rank: int, main_func: TrainLoop, world_size: int, dist_url: str, config: InstantiateConfig) -> None:
    dist.init_process_group(backend="gloo", init_method=dist_url, world_size=world_size, rank=local_rank)
    comms.LOCAL_PROCESS_GROUP = dist.new_group(list(range(world_size)))  # one machine: every rank is local
    try:
        main_func(local_rank, world_size, config, local_rank)
        comms.synchronize()
    finally:
        dist.destroy_process_group()


def spawn_cpu_processes(main_func: TrainLoop, world_size: int, config: InstantiateConfig) -> None:
    """Run `main_func` (nerfstudio's train_loop or one of the same signature) in `world_size` CPU
    processes joined by gloo on this machine; an error in any of them is raised here."""
    from nerfstudio.scripts.train import _find_free_port  # here: that module imports the method plugins

    dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.spawn(_cpu_worker, nprocs=world_size, args=(main_func, world_size, dist_url, config), join=True)
