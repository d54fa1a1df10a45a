#!/usr/bin/env python
"""Generate a synthetic egocentric kitchen scene in the EPIC-Diff format (with ground truth).

Example: python scripts/make_scene.py data/EPIC-Diff/SYN_00 --seed 0 --frames 120
"""

import time
from pathlib import Path

import tyro
from rich.console import Console
from typing_extensions import Annotated

from divff_nerfstudio.synthetic import SceneConfig, write_scene


def main(
    out: tyro.conf.Positional[Path],
    scene: Annotated[SceneConfig, tyro.conf.OmitArgPrefixes] = SceneConfig(),
    overwrite: bool = False,
) -> None:
    """Write a scene to OUT (a folder: meta.json, frames/, annotations/, object_annotations/, gt/).

    Args:
        out: Scene folder to create.
        scene: What to generate.
        overwrite: Replace OUT if it already holds files.
    """
    start = time.perf_counter()
    write_scene(out, scene, overwrite=overwrite)
    Console().print(f"wrote {out} ({scene.frames} frames, {scene.width}x{scene.height}) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    tyro.cli(main)
