"""`divff-extract-targets`: extract (or complete) a scene's language targets into the feature cache without training.

`ns-train divff` does the same on start; running it ahead lets a long extraction be interrupted
and resumed (finished frames are kept), and reports what the cache holds.

    divff-extract-targets --data data/EPIC-Diff/SYN_00 \
      --language.clip.model-name DivffTiny-CLIP --language.clip.pretrained outputs/test_clip/divff_tiny_clip.pt
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import tyro
from nerfstudio.utils.rich_utils import CONSOLE

from dataparsers.epic_diff import EpicDiffDataParserConfig
from divff_nerfstudio.commands.cli import run_command
from divff_nerfstudio.data.divff_datamanager import DivffDataManagerConfig
from divff_nerfstudio.language.spec import LanguageTargetsConfig


def main(data: Path, language: LanguageTargetsConfig = LanguageTargetsConfig(), threads: int = 2) -> None:
    """Fill the feature cache of the scene's training frames.

    Args:
        data: EPIC-Diff scene folder.
        language: The same language settings as ns-train's --pipeline.datamanager.language.
        threads: CPU threads for torch.
    """
    torch.set_num_threads(threads)
    start = time.perf_counter()
    config = DivffDataManagerConfig(data=data, dataparser=EpicDiffDataParserConfig(data=data), language=language)
    manager = config.setup(device="cpu", test_mode="val")
    seconds = time.perf_counter() - start
    for kind, grids in manager.targets.grids.items():
        folder = manager.targets.folders[kind]
        size = sum(f.stat().st_size for f in folder.glob("*.npy"))
        CONSOLE.print(
            f"{kind}: {grids.shape[0]} frames x {tuple(grids.shape[1:])} fp16, "
            f"{size / 2**20:.1f} MB on disk ({size / max(grids.shape[0], 1) / 2**10:.1f} KB per frame) in {folder}"
        )
    CONSOLE.print(f"done in {seconds:.1f} s")


def entrypoint() -> None:
    run_command(lambda: tyro.cli(main))


if __name__ == "__main__":
    entrypoint()
