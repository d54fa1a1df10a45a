"""`divff-evaluate`: evaluate a trained divff run like NeuralDiff (dynamic-mask mAP, PSNR on the test frames) and, with
language heads, like DIV-FF (object segmentation mIoU from the text query of each annotated label;
affordance mIoU from video-language queries where the scene has affordance masks), beside the same
scores of the teacher (the test frames' own 2D language targets).

    divff-evaluate --load-config outputs/SYN/divff/<run>/config.yml

Writes results.json, one side-by-side image per test frame and summary.mp4 to --output-dir
(default: <run>/evaluation). On a generated scene, --training-frames also scores the decomposition
of every training frame against the generator's label maps (eval/training_frames.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import tyro
from nerfstudio.utils.eval_utils import eval_setup
from nerfstudio.utils.rich_utils import CONSOLE
from rich.table import Table
from typing_extensions import Annotated

from divff_nerfstudio.commands.cli import run_command
from divff_nerfstudio.eval.evaluation import EvaluationResult, Thresholds, evaluate_pipeline
from divff_nerfstudio.eval.training_frames import score_training_frames


def _iou_table(title: str, scores: Dict) -> Table:
    """IoU per query of the field and of its teacher (the test frames' own 2D targets)."""
    teacher = scores.get("teacher_IoU", {})
    title = f"{title} (threshold {scores['threshold']}): mIoU {scores['mIoU']:.2f}"
    if teacher:
        title += f", teacher's {scores['teacher_mIoU']:.2f}"
    table = Table(title=title)
    table.add_column("query")
    table.add_column("IoU x 100")
    if teacher:
        table.add_column("teacher's IoU x 100")
    for label, iou in scores["IoU"].items():
        table.add_row(label, f"{iou * 100:.2f}", *([f"{teacher[label] * 100:.2f}"] if teacher else []))
    return table


def _summary_table(title: str, result: EvaluationResult) -> Table:
    summary = result.summary()
    table = Table(title=title)
    for key in summary:
        table.add_column(key)
    table.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in summary.values()])
    return table


def main(
    load_config: Path,
    output_dir: Optional[Path] = None,
    thresholds: Annotated[Thresholds, tyro.conf.OmitArgPrefixes] = Thresholds(),
    teacher: bool = True,
    training_frames: bool = False,
) -> None:
    """Evaluate the run whose config.yml is given.

    Args:
        load_config: config.yml of the run (as written by ns-train).
        output_dir: Where to write results; default: an 'evaluation' folder beside the config.
        thresholds: Relevancy thresholds of the object and affordance segmentations.
        teacher: Score the test frames' own language targets too (extracted into the cache on the first evaluation).
        training_frames: Also score every training frame's decomposition against the label maps of a scene written by divff-make-scene (eight times the test frames: less spread between runs).
    """
    _, pipeline, checkpoint, step = eval_setup(load_config, test_mode="test")
    out = output_dir or load_config.parent / "evaluation"
    scored = score_training_frames(pipeline) if training_frames else None
    result = evaluate_pipeline(pipeline, out, thresholds, teacher, scored)
    CONSOLE.print(_summary_table(f"{result.scene} (step {step})", result))
    if scored is not None:
        CONSOLE.print(_summary_table(f"training frames against their label maps (step {step})", scored))
    if result.segmentation is not None and result.segmentation["mIoU"] is not None:
        CONSOLE.print(_iou_table("object segmentation by text query", result.segmentation))
    if result.affordances is not None and result.affordances["mIoU"] is not None:
        CONSOLE.print(_iou_table("affordance segmentation by video query", result.affordances))
    CONSOLE.print(f"wrote {out}/results.json, {out}/frames/*.png and {out}/summary.mp4")


def entrypoint() -> None:
    run_command(lambda: tyro.cli(main))


if __name__ == "__main__":
    entrypoint()
