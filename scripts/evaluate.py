#!/usr/bin/env python
"""Evaluate a trained divff run like NeuralDiff (dynamic-mask mAP, PSNR on the test frames) and, with
language heads, like DIV-FF (object segmentation mIoU from the text query of each annotated label).

Example: python scripts/evaluate.py --load-config outputs/SYN/divff/<run>/config.yml
Writes results.json, one side-by-side image per test frame and summary.mp4 to --output-dir
(default: <run>/evaluation).
"""

from pathlib import Path
from typing import Optional

import tyro
from rich.console import Console
from rich.table import Table

from divff_nerfstudio.evaluation import evaluate_pipeline
from nerfstudio.utils.eval_utils import eval_setup


def main(load_config: Path, output_dir: Optional[Path] = None, threshold: float = 0.7) -> None:
    """Evaluate the run whose config.yml is given.

    Args:
        load_config: config.yml of the run (as written by ns-train).
        output_dir: Where to write results; default: an 'evaluation' folder beside the config.
        threshold: Relevancy above which a pixel belongs to the queried object (DIV-FF: 0.7).
    """
    _, pipeline, checkpoint, step = eval_setup(load_config, test_mode="test")
    out = output_dir or load_config.parent / "evaluation"
    result = evaluate_pipeline(pipeline, out, threshold)
    summary = result.summary()
    table = Table(title=f"{result.scene} (step {step})")
    for key in summary:
        table.add_column(key)
    table.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in summary.values()])
    console = Console()
    console.print(table)
    if result.segmentation is not None:
        seg = Table(title=f"object segmentation by text query (threshold {threshold}): mIoU {result.segmentation['mIoU']:.2f}")
        seg.add_column("label")
        seg.add_column("IoU x 100")
        for label, iou in result.segmentation["IoU"].items():
            seg.add_row(label, f"{iou * 100:.2f}")
        console.print(seg)
    console.print(f"wrote {out}/results.json, {out}/frames/*.png and {out}/summary.mp4")


if __name__ == "__main__":
    tyro.cli(main)
