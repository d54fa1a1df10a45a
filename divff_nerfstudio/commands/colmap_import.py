"""`divff-colmap-import`: convert a COLMAP model (images/ + sparse/0) into an EPIC-Diff scene
(meta.json + frames/).

    divff-colmap-import --images clip/images --model clip/sparse/0 --out data/EPIC-Diff/MY_CLIP
"""

from __future__ import annotations

import tyro

from dataparsers.colmap_to_epic_diff import ColmapConversion, convert
from divff_nerfstudio.commands.cli import run_command


def entrypoint() -> None:
    run_command(lambda: convert(tyro.cli(ColmapConversion)))


if __name__ == "__main__":
    entrypoint()
