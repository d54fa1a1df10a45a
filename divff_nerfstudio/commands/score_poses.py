"""`divff-score-poses`: score recovered camera poses against a generated scene's true ones, after a
similarity alignment (eval/pose_scores.py says which and why).

    divff-score-poses --truth data/EPIC-Diff/SYN_00 --recovered processed/
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro
from nerfstudio.utils.rich_utils import CONSOLE

from divff_nerfstudio.commands.cli import run_command
from divff_nerfstudio.eval.pose_scores import score


@dataclass
class ScorePoses:
    truth: Path
    """Generated EPIC-Diff scene (meta.json holds the true poses)."""
    recovered: Path
    """Folder with recovered poses: ns-process-data output (transforms.json) or an EPIC-Diff scene."""
    output: Optional[Path] = None
    """Also write the scores here as JSON."""

    def main(self) -> None:
        scores = score(self.truth, self.recovered)
        CONSOLE.print_json(data=scores)
        if self.output is not None:
            self.output.write_text(json.dumps(scores, indent=1))
            CONSOLE.print(f"wrote {self.output}")


def entrypoint() -> None:
    run_command(lambda: tyro.cli(ScorePoses).main())


if __name__ == "__main__":
    entrypoint()
