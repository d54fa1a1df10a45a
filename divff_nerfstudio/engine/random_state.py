"""The random generators training draws from (torch, numpy, python), saved, restored and fenced off.

Checkpoints carry them so a resumed run draws the rays an uninterrupted one would; work that may or
may not happen in a run (extracting targets when the cache is cold, building the CLIP) is fenced off
so that it cannot shift them: a warm and a cold cache give the same model.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Dict, Iterator

import numpy as np
import torch


def random_states() -> Dict:
    """In types torch's safe checkpoint loader accepts (tensors, lists, numbers)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }


def restore_random_states(states: Dict) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])


@contextmanager
def fenced_random_states() -> Iterator[None]:
    """Whatever the body draws, the generators leave it as they entered (torch forks the CUDA
    generators too)."""
    states = random_states()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        try:
            yield
        finally:
            restore_random_states(states)
