"""Where a generated scene keeps the per-frame label maps, in one place: the generator writes them,
the oracle language teacher and the training-frame scores read them."""

from __future__ import annotations

from pathlib import Path


def label_map_path(scene: Path, frame_stem: str) -> Path:
    """<scene>/gt/labels/<frame>.png: 0 static, object ids, 255 actor."""
    return Path(scene) / "gt" / "labels" / f"{frame_stem}.png"
