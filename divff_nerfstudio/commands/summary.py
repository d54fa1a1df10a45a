"""`divff-summary`: NeuralDiff's summary videos of a trained divff run: per frame GT | composite |
static | objects | actor (summary.mp4), and the scene from one fixed viewpoint as time runs
(fixed_viewpoint.mp4), each with one image per frame.

    divff-summary --load-config outputs/SYN/divff/<run>/config.yml    # -> <run>/summary/
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import tyro
from nerfstudio.utils.eval_utils import eval_setup
from nerfstudio.utils.rich_utils import CONSOLE
from typing_extensions import Annotated

from divff_nerfstudio.commands.cli import run_command
from divff_nerfstudio.eval.summary_video import SummaryOptions, write_summary


@dataclass
class SummaryVideo:
    """Render NeuralDiff's summary videos of a trained divff run."""

    load_config: Path
    """config.yml of the run (as written by ns-train)."""
    output_dir: Optional[Path] = None
    """Where to write; default: a 'summary' folder beside the config."""
    options: Annotated[SummaryOptions, tyro.conf.OmitArgPrefixes] = field(default_factory=SummaryOptions)

    def main(self) -> None:
        _, pipeline, _, _ = eval_setup(self.load_config, test_mode="test")
        out = self.output_dir or self.load_config.parent / "summary"
        written = write_summary(pipeline, out, self.options)
        for name, count in written.items():
            CONSOLE.print(f"wrote {out / name} ({count} frames)")


def entrypoint() -> None:
    run_command(lambda: tyro.cli(SummaryVideo).main())


if __name__ == "__main__":
    entrypoint()
