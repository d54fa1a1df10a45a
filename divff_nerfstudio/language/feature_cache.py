"""On-disk cache of per-frame target grids, keyed by a fingerprint of everything that changes them.

Layout: `<root>/<kind>-<fingerprint>/<frame key>.npy` (fp16) and `manifest.json` (what was
fingerprinted, readable). A changed setting, encoder or image gives another fingerprint and so
another folder: re-extraction; an unchanged one finds its files: no work. Files are written to a
temporary name and renamed, so a killed extraction leaves only complete frames and resumes from
there; a full disk stops with a message and keeps them; a file that does not load as the expected
grid is reported and extracted again, and so is a folder whose manifest records another identity.
When nothing matches, the caches of other settings are listed with what differs.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import Progress
from torch import Tensor

from divff_nerfstudio.utils.atomic_files import atomic_write
from divff_nerfstudio.utils.digests import fingerprint
from divff_nerfstudio.utils.errors import UserError


class FeatureCache:
    """Target grids of one kind ("clip", "video") for one fingerprint."""

    def __init__(self, root: Path, kind: str, identity: Dict):
        self.identity = identity
        self.kind = kind
        self.folder = root / f"{kind}-{fingerprint(identity)}"
        self.manifest = self.folder / "manifest.json"
        self.as_stored = json.loads(json.dumps(identity, default=str))
        """The identity as manifest.json holds it once read back (tuples as lists, paths as text)."""

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

    def check_manifest(self) -> None:
        """A folder whose manifest records another identity (copied in from another scene or
        setting under this name) is reported and emptied, so none of its grids is taken as ours."""
        stored = read_manifest(self.manifest)
        if stored is None and not self.manifest.exists():
            return
        if stored != self.as_stored:
            CONSOLE.print(f"[yellow]{self.manifest}: this cache was written for other settings or another scene; extracting again")
            for path in self.folder.glob("*.npy"):
                path.unlink()
            self.manifest.unlink(missing_ok=True)

    def differences_from_other_caches(self) -> List[str]:
        """For each cache of the same kind under the same root (another fingerprint), the settings
        in which it differs from this one: what the user changed since the last extraction."""
        ours = self.as_stored
        found = []
        for other in sorted(self.folder.parent.glob(f"{self.kind}-*")):
            stored = read_manifest(other / "manifest.json")
            if other == self.folder or stored is None:
                continue
            changed = sorted(k for k in set(ours) | set(stored) if ours.get(k) != stored.get(k))
            found.append(f"{other.name} (differs in {', '.join(changed)})")
        return found

    def save(self, key: str, grid: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.manifest.exists():
            atomic_write(self.manifest, lambda f: f.write(json.dumps(self.identity, indent=1, default=str).encode()))
        atomic_write(self.path(key), lambda f: np.save(f, grid.astype(np.float16), allow_pickle=False))


class CacheWriteError(UserError, RuntimeError):
    """A grid could not be stored (disk full, no permission): what is cached so far stays valid."""


class CacheReadError(UserError, RuntimeError):
    """A grid checked before training can no longer be read (deleted or damaged meanwhile)."""


def read_manifest(path: Path) -> Optional[Dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class CachedFrames:
    """The grids of every frame, left in the cache folder and read when a batch needs them: a long
    video's targets need not fit in memory. The `keep` frames read last stay in memory, which is
    what sampling rays from a subset of frames for many steps (long videos) reuses."""

    def __init__(self, cache: FeatureCache, keys: Sequence[str], shape: Tuple[int, ...], keep: int):
        self.cache, self.keys, self.keep = cache, list(keys), max(keep, 1)
        self.shape = (len(self.keys), *shape)
        self._kept: OrderedDict[int, Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, frames: Union[Sequence[int], Tensor]) -> Tensor:
        """The grids of `frames` (indices into the dataset), stacked."""
        out = []
        for i in [int(f) for f in frames]:
            grid = self._kept.pop(i, None)
            if grid is None:
                stored = self.cache.load(self.keys[i], self.shape[1:])
                if stored is None:
                    raise CacheReadError(
                        f"{self.cache.path(self.keys[i])}: a cached target grid went missing or bad during training; "
                        "run the same command again to extract it (the rest stays cached)"
                    )
                grid = torch.from_numpy(stored)
            self._kept[i] = grid  # the most recently used last
            if len(self._kept) > self.keep:
                self._kept.popitem(last=False)
            out.append(grid)
        return torch.stack(out)


def cached_grids(
    cache: FeatureCache,
    keys: Sequence[str],
    shape: Tuple[int, ...],
    extract: Callable[[int], Tensor],
    description: str,
    keep: Optional[int] = None,
) -> Union[Tensor, CachedFrames]:
    """All frames' grids: loaded from the cache, the missing ones extracted (with a progress bar)
    and stored as they come. Returned as one fp16 tensor (n, *shape), or, given `keep`, as
    CachedFrames that read them back as needed (every file is still checked once here)."""
    cache.check_manifest()
    held = keep is None
    out = torch.empty((len(keys), *shape), dtype=torch.float16) if held else None
    missing = []
    for i, key in enumerate(keys):
        grid = cache.load(key, shape)
        if grid is None:
            missing.append(i)
        elif held:
            out[i] = torch.from_numpy(grid)
    if missing:
        _extract_missing(cache, keys, missing, extract, description, out)
    return out if held else CachedFrames(cache, keys, shape, keep)


def _extract_missing(
    cache: FeatureCache, keys: Sequence[str], missing: List[int], extract: Callable[[int], Tensor], description: str, out: Optional[Tensor]
) -> None:
    if len(missing) == len(keys):
        for other in cache.differences_from_other_caches():
            CONSOLE.print(f"[yellow]{description}: not using the cache {other}")
    CONSOLE.print(f"{description}: {len(keys) - len(missing)} frames cached, extracting {len(missing)} into {cache.folder}")
    with Progress(console=CONSOLE) as progress:
        task = progress.add_task(description, total=len(missing))
        for n, i in enumerate(missing):
            grid = extract(i).to(torch.float16)
            try:
                cache.save(keys[i], grid.numpy())
            except OSError as err:
                raise CacheWriteError(
                    f"{cache.path(keys[i])}: could not store {description} ({err.strerror or err}). "
                    f"The {len(keys) - len(missing) + n} frames cached so far are kept; free space and run again to resume."
                ) from err
            if out is not None:
                out[i] = grid
            progress.advance(task)
