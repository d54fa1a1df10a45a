"""`divff-make-scene`: generate a synthetic egocentric kitchen scene in the EPIC-Diff format (with ground truth).

    divff-make-scene data/EPIC-Diff/SYN_00 --seed 0 --frames 120
"""

from __future__ import annotations

import time
from pathlib import Path

import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from typing_extensions import Annotated

from divff_nerfstudio.commands.cli import run_command
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
    CONSOLE.print(f"wrote {out} ({scene.frames} frames, {scene.width}x{scene.height}) in {time.perf_counter() - start:.1f} s")


def entrypoint() -> None:
    run_command(lambda: tyro.cli(main))


if __name__ == "__main__":
    entrypoint()
