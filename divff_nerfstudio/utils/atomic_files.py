"""Writing a file so that readers only ever see the old content or the complete new one.

A kill, a full disk or a power cut during a plain write leaves a truncated file under the final
name, which the next run loads as if valid (or fails on). Writing to a hidden temporary name in the
same folder, syncing it and renaming it over the target makes the switch one atomic step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable, Optional

STAGED_SUFFIX = ".tmp"


def staged_name(path: Path, staging: Optional[Path] = None) -> Path:
    """Where the next content of `path` is staged: hidden, in `staging` (a folder on the same file
    system) or next to path. Loaders that parse every name in a folder (nerfstudio's checkpoint
    listing does) need the staging folder to be another one."""
    return (staging or path.parent) / f".{path.name}.{os.getpid()}{STAGED_SUFFIX}"


def atomic_write(path: Path, write: Callable[[BinaryIO], object], staging: Optional[Path] = None) -> None:
    """Call write(f) on a staged file and rename it to path; on any error (OSError for a full disk
    included) the staged file is removed and path keeps its previous content. A kill leaves at
    most a staged file behind, never a partial path."""
    tmp = staged_name(path, staging)
    try:
        with tmp.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
