"""On-disk cache of per-frame target grids, keyed by a fingerprint of everything that changes them.

Layout: `<root>/<kind>-<fingerprint>/<frame key>.npy` (fp16) and `manifest.json` (what was
fingerprinted, readable). A changed setting, encoder or image gives another fingerprint and so
another folder: re-extraction; an unchanged one finds its files: no work. Files are written to a
temporary name and renamed, so a killed extraction leaves only complete frames and resumes from
there; a file that does not load as the expected grid is reported and extracted again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from torch import Tensor

CONSOLE = Console()


def fingerprint(identity: Dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:16]


class FeatureCache:
    """Target grids of one kind ("clip", "video") for one fingerprint."""

    def __init__(self, root: Path, kind: str, identity: Dict):
        self.identity = identity
        self.folder = root / f"{kind}-{fingerprint(identity)}"

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npy"

    def load(self, key: str, shape: Tuple[int, ...]) -> Optional[np.ndarray]:
        """The stored grid, or None when missing; an unreadable or misshapen file is reported and
        removed (then extracted again), never returned."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            grid = np.load(path, allow_pickle=False)
            if grid.shape != shape or grid.dtype != np.float16 or not np.isfinite(grid).all():
                raise ValueError(f"holds {grid.dtype} {grid.shape}, expected float16 {shape} and finite values")
        except (ValueError, OSError, EOFError) as err:
            CONSOLE.print(f"[yellow]{path}: corrupt feature cache file ({err}); extracting it again")
            path.unlink(missing_ok=True)
            return None
        return grid

    def save(self, key: str, grid: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest = self.folder / "manifest.json"
        if not manifest.exists():
            atomic_write(manifest, lambda f: f.write(json.dumps(self.identity, indent=1, default=str).encode()))
        atomic_write(self.path(key), lambda f: np.save(f, grid.astype(np.float16), allow_pickle=False))


def atomic_write(path: Path, write: Callable) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def cached_grids(
    cache: FeatureCache, keys: Sequence[str], shape: Tuple[int, ...], extract: Callable[[int], Tensor], description: str
) -> Tensor:
    """All frames' grids as one fp16 tensor (n, *shape): loaded from the cache, the missing ones
    extracted (with a progress bar) and stored as they come."""
    out = torch.empty((len(keys), *shape), dtype=torch.float16)
    missing = []
    for i, key in enumerate(keys):
        grid = cache.load(key, shape)
        if grid is None:
            missing.append(i)
        else:
            out[i] = torch.from_numpy(grid)
    if missing:
        CONSOLE.print(f"{description}: {len(keys) - len(missing)} frames cached, extracting {len(missing)} into {cache.folder}")
        with Progress(console=CONSOLE) as progress:
            task = progress.add_task(description, total=len(missing))
            for i in missing:
                grid = extract(i).to(torch.float16)
                cache.save(keys[i], grid.numpy())
                out[i] = grid
                progress.advance(task)
    return out
