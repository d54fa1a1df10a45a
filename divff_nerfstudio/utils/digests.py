"""Short content digests that name cached work: what a cache folder or file was made from.

Each is stable across runs and versions (changing one re-extracts every user's cache), so the
three kinds differ on purpose: settings by their JSON, frames by their whole content (small,
and any edit must count), model weights by size plus first and last MiB (GBs, read fast).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping

_LENGTH = 16


def fingerprint(identity: Mapping) -> str:
    """Of settings (anything JSON can write; other values by their str)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:_LENGTH]


def file_digest(path: Path) -> str:
    """Of a small file's whole content (a frame)."""
    return hashlib.sha1(path.read_bytes()).hexdigest()[:_LENGTH]


def weights_digest(path: Path, chunk: int = 1 << 20) -> str:
    """Of a possibly huge checkpoint: its size and the first and last MiB, enough to tell
    checkpoints apart without reading GBs."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(size - chunk, chunk))
            h.update(f.read(chunk))
    return h.hexdigest()[:_LENGTH]
