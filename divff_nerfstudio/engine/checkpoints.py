"""Checkpoint files of a divff run: written atomically, read back checked, found newest first.

A kill during a save must leave the previous checkpoint as the newest complete one, and a torn or
foreign file must be reported by name, never loaded: a CPU run takes hours.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, List, Optional

import torch
from nerfstudio.utils.rich_utils import CONSOLE

from divff_nerfstudio.utils import compat
from divff_nerfstudio.utils.atomic_files import STAGED_SUFFIX, atomic_write
from divff_nerfstudio.utils.errors import UserError


class CheckpointError(UserError, RuntimeError):
    """No checkpoint could be written or none could be read: the message names the file."""


def checkpoint_step(path: Path) -> Optional[int]:
    """The step of a `step-000001000.ckpt` file; None for anything else (staged files included)."""
    if not (path.name.startswith("step-") and path.suffix == ".ckpt"):
        return None
    digits = path.stem[len("step-") :]
    return int(digits) if digits.isdigit() else None


def checkpoints_newest_first(folder: Path) -> List[Path]:
    found = [(step, path) for path in folder.glob("step-*.ckpt") if (step := checkpoint_step(path)) is not None]
    return [path for _, path in sorted(found, reverse=True)]


def read_checkpoint(path: Path) -> Dict:
    """The checkpoint as nerfstudio's loader will read it (torch's safe unpickler), or an error
    naming the file."""
    compat.install()  # the numpy scalars nerfstudio's schedulers store
    try:
        state = torch.load(path, map_location="cpu")
    except Exception as err:  # torch raises RuntimeError, EOFError, pickle or zip errors for a torn file
        raise CheckpointError(f"{path}: not a complete checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or "step" not in state or "pipeline" not in state:
        raise CheckpointError(f"{path}: not a nerfstudio checkpoint (no step or pipeline)")
    return state


def newest_complete_checkpoint(load_dir: Path) -> Dict:
    if not load_dir.is_dir():
        raise CheckpointError(f"{load_dir}: --load-dir is not a folder")
    candidates = checkpoints_newest_first(load_dir)
    if not candidates:
        raise CheckpointError(f"{load_dir}: no step-*.ckpt checkpoint in --load-dir")
    for path in candidates:
        try:
            return read_checkpoint(path)
        except CheckpointError as err:
            CONSOLE.print(f"[yellow]{err}; trying the previous checkpoint")
    raise CheckpointError(f"{load_dir}: none of the {len(candidates)} checkpoints loads")


def remove_staged_checkpoints(run_dir: Path) -> None:
    """Checkpoints a killed save left half-written under their staging name."""
    for path in run_dir.glob(f".step-*.ckpt.*{STAGED_SUFFIX}"):
        CONSOLE.print(f"[yellow]{path}: removing an incomplete checkpoint left by an interrupted save")
        path.unlink(missing_ok=True)


def write_checkpoint(path: Path, state: Dict, staging: Path) -> None:
    """Serialise, stage in `staging` (same file system, outside the checkpoint folder whose names
    nerfstudio parses), sync and rename to `path`; a failed write (disk full) raises CheckpointError
    naming the file and the previous checkpoint that stays."""
    content = io.BytesIO()  # serialised first: torch.save hides a failed write behind a RuntimeError
    torch.save(state, content)
    try:
        atomic_write(path, lambda f: f.write(content.getbuffer()), staging=staging)
    except OSError as err:
        previous = [p.name for p in checkpoints_newest_first(path.parent)]
        kept = f"the previous checkpoint {previous[0]} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(f"{path}: checkpoint not saved ({err.strerror or err}); {kept}") from err
