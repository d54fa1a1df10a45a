#!/usr/bin/env python
"""Evaluate a trained divff run like NeuralDiff (dynamic-mask mAP, PSNR on the test frames) and, with
language heads, like DIV-FF (object segmentation mIoU from the text query of each annotated label;
affordance mIoU from video-language queries where the scene has affordance masks).

Example: python scripts/evaluate.py --load-config outputs/SYN/divff/<run>/config.yml
Writes results.json, one side-by-side image per test frame and summary.mp4 to --output-dir
(default: <run>/evaluation).
"""

from pathlib import Path
from typing import Dict, Optional

import tyro
from rich.console import Console
from rich.table import Table

from divff_nerfstudio.evaluation import evaluate_pipeline
from divff_nerfstudio.language_evaluation import AFFORDANCE_THRESHOLD, OBJECT_THRESHOLD
from nerfstudio.utils.eval_utils import eval_setup


def _iou_table(title: str, scores: Dict) -> Table:
    table = Table(title=f"{title} (threshold {scores['threshold']}): mIoU {scores['mIoU']:.2f}")
    table.add_column("query")
    table.add_column("IoU x 100")
    for label, iou in scores["IoU"].items():
        table.add_row(label, f"{iou * 100:.2f}")
    return table


def main(
    load_config: Path,
    output_dir: Optional[Path] = None,
    threshold: float = OBJECT_THRESHOLD,
    affordance_threshold: float = AFFORDANCE_THRESHOLD,
) -> None:
    """Evaluate the run whose config.yml is given.

    Args:
        load_config: config.yml of the run (as written by ns-train).
        output_dir: Where to write results; default: an 'evaluation' folder beside the config.
        threshold: Relevancy above which a pixel belongs to the queried object (DIV-FF: 0.7).
        affordance_threshold: Video relevancy above which a pixel has the queried affordance (DIV-FF: 0.54).
    """
    _, pipeline, checkpoint, step = eval_setup(load_config, test_mode="test")
    out = output_dir or load_config.parent / "evaluation"
    result = evaluate_pipeline(pipeline, out, threshold, affordance_threshold)
    summary = result.summary()
    table = Table(title=f"{result.scene} (step {step})")
    for key in summary:
        table.add_column(key)
    table.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in summary.values()])
    console = Console()
    console.print(table)
    if result.segmentation is not None and result.segmentation["mIoU"] is not None:
        console.print(_iou_table("object segmentation by text query", result.segmentation))
    if result.affordances is not None and result.affordances["mIoU"] is not None:
        console.print(_iou_table("affordance segmentation by video query", result.affordances))
    console.print(f"wrote {out}/results.json, {out}/frames/*.png and {out}/summary.mp4")


if __name__ == "__main__":
    tyro.cli(main)
