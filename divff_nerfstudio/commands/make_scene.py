"""`divff-make-scene`: generate a synthetic egocentric kitchen scene in the EPIC-Diff format (with ground truth).

    divff-make-scene data/EPIC-Diff/SYN_00 clean --seed 0 --frames 120
    divff-make-scene data/EPIC-Diff/HARD_00 hard --seed 5     # the benchmark's harder scene
    divff-make-scene data/EPIC-Diff/X clean --noise 0.02 --long-carry 0.3   # one effect at a time

`clean` (the default) starts from the clean scene, `hard` from SceneConfig.hard(); every option can
be changed after either; --overwrite goes before the preset, as ns-train takes its flags before
the dataparser.
"""

from __future__ import annotations

import time
from pathlib import Path

import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from typing_extensions import Annotated

from divff_nerfstudio.commands.cli import run_command
from divff_nerfstudio.synthetic import SceneConfig, write_scene

Presets = tyro.extras.subcommand_type_from_defaults(
    {"clean": SceneConfig(), "hard": SceneConfig.hard()},
    descriptions={
        "clean": "Bright primitives moved briefly, perfect camera (the project's original scene).",
        "hard": "Held objects, hands passing in front, printed objects, exposure/white-balance drift, blur, noise, JPEG.",
    },
)


def main(
    out: tyro.conf.Positional[Path],
    scene: Annotated[Presets, tyro.conf.OmitArgPrefixes] = SceneConfig(),
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
