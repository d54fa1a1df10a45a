"""`divff-train-test-clip`: train the project's test CLIP (an open_clip checkpoint) on captioned crops of generated kitchens.

Holds colour-shape combinations out of training (a fixed list, plus every object label of the
scenes given with --hold-out-from) and reports zero-shot accuracy on seen and held-out ones.

    divff-train-test-clip --out outputs/test_clip/divff_tiny_clip.pt --hold-out-from data/EPIC-Diff/SYN_00

then train with it: ns-train divff --pipeline.datamanager.language.clip.model-name DivffTiny-CLIP
  --pipeline.datamanager.language.clip.pretrained outputs/test_clip/divff_tiny_clip.pt ...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Tuple

import tyro

from divff_nerfstudio.commands.cli import run_command
from divff_nerfstudio.language.test_clip import DEFAULT_HOLD_OUT, TestClipTraining, scene_labels, train_test_clip


def main(
    out: Path = Path("outputs/test_clip/divff_tiny_clip.pt"),
    hold_out_from: Tuple[Path, ...] = (),
    training: TestClipTraining = TestClipTraining(),
) -> None:
    """Train and save the test CLIP.

    Args:
        out: Checkpoint path (the report is written next to it as <out>.json).
        hold_out_from: Generated scenes whose object labels are also held out of training.
        training: Training settings.
    """
    hold_out = set(DEFAULT_HOLD_OUT)
    for scene in hold_out_from:
        hold_out |= set(scene_labels(scene))
    report = train_test_clip(out, training, sorted(hold_out))
    print(json.dumps({k: report[k] for k in ("seen", "held_out", "train_crops", "seconds")}, indent=1))
    print(f"saved {out}")


def entrypoint() -> None:
    run_command(lambda: tyro.cli(main))


if __name__ == "__main__":
    entrypoint()
