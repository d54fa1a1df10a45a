#!/usr/bin/env python
"""Benchmark: what a CLIP teaches, before any field is trained on it.

For each scene, the test frames' 2D language targets (made as training makes them: the patch
pyramid, region pooling, the video extractor; cached under the scene's divff_cache/test_frames) are
scored by text query exactly as `divff-evaluate` scores its `teacher_mIoU`: DIV-FF's negatives,
threshold 0.7 for objects (0.54 for affordances), TP / FP / FN per label over the frames. A field
needs minutes of training per scene; this needs only the targets, so CLIPs (or target settings) can
be compared on many scenes. Missed pixels and false alarms are printed apart: they call for
opposite remedies.

Example: python scripts/bench_teacher.py data/EPIC-Diff/LANG_73 data/EPIC-Diff/LANG_74 \
    --language.clip.model-name DivffTiny-CLIP --language.clip.pretrained outputs/test_clip/divff_tiny_clip.pt
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import Progress

from dataparsers.annotations import rasterize
from divff_nerfstudio.divff_config import divff_method
from divff_nerfstudio.eval.evaluation import query_image_path
from divff_nerfstudio.eval.images import save_png
from divff_nerfstudio.eval.language_evaluation import AFFORDANCE_THRESHOLD, OBJECT_THRESHOLD, QuerySegmentationScore
from divff_nerfstudio.eval.teacher_targets import TeacherTargets
from divff_nerfstudio.language.spec import LanguageTargetsConfig
from divff_nerfstudio.model.queries import QueryEncoder


@dataclass
class BenchTeacher:
    scenes: tyro.conf.Positional[Tuple[Path, ...]]
    """Scene folders in the EPIC-Diff format (generated or real) with object labels."""
    language: LanguageTargetsConfig = field(default_factory=LanguageTargetsConfig)
    """How targets are made, as --pipeline.datamanager.language of ns-train divff: the CLIP
    (--language.clip.model-name, --language.clip.pretrained), the pyramid, the regions, the cache."""
    output_dir: Optional[Path] = None
    """Where to write per scene the results (JSON) and, per frame and label, the teacher's relevancy |
    mask comparison images (green: hit, red: false alarm, blue: missed). Default: no files."""
    threads: int = 2


def score_scene(scene: Path, language: LanguageTargetsConfig, output_dir: Optional[Path]) -> Dict[str, Dict[str, object]]:
    config = copy.deepcopy(divff_method.config)
    datamanager_config = config.pipeline.datamanager
    datamanager_config.data = datamanager_config.dataparser.data = scene
    datamanager_config.language = language
    datamanager = datamanager_config.setup(device="cpu", test_mode="test")
    targets = TeacherTargets(datamanager)
    spec = datamanager.train_dataset.metadata["language"]
    encoder = QueryEncoder(spec.clip, spec.video)
    dataset = datamanager.eval_dataset
    polygons = dataset.metadata.get("object_labels", [[]] * len(dataset))
    affordance_masks = dataset.metadata.get("affordance_masks", [{}] * len(dataset))
    scores = {
        "object_segmentation": QuerySegmentationScore(encoder, None, OBJECT_THRESHOLD),
        "affordance_segmentation": QuerySegmentationScore(encoder, None, AFFORDANCE_THRESHOLD, kind="video"),
    }
    with Progress(console=CONSOLE, transient=True) as progress:
        task = progress.add_task(f"scoring the teacher on {scene.name}", total=len(dataset))
        for i in range(len(dataset)):
            if polygons[i] or affordance_masks[i]:
                image = dataset.get_image_float32(i)[..., :3].numpy()
                size = (image.shape[1], image.shape[0])
                embeddings = targets.embeddings(i)
                truths = {"clip": rasterize(polygons[i], size) if polygons[i] else {}, "video": affordance_masks[i]}
                for score in scores.values():
                    for label, panel in score.add_teacher_frame(truths[score.kind], image, embeddings[score.kind]):
                        if output_dir is not None:
                            frame = int(dataset.metadata["frame_ids"][i])
                            save_png(query_image_path(output_dir / scene.name, score.kind, frame, label), panel)
            progress.advance(task)
    results = {}
    for name, score in scores.items():
        if score.teacher_counts:
            summary = score.summary()
            tp, fp, fn = (int(v) for v in np.sum(list(score.teacher_counts.values()), axis=0))
            results[name] = {"teacher_mIoU": summary["teacher_mIoU"], "teacher_IoU": summary["teacher_IoU"],
                             "pixels": {"hit": tp, "false_alarm": fp, "missed": fn}}  # fmt: skip
    return results


def main(bench: BenchTeacher) -> None:
    torch.set_num_threads(bench.threads)
    means: List[float] = []
    for scene in bench.scenes:
        results = score_scene(scene, bench.language, bench.output_dir)
        if not results:
            CONSOLE.print(f"[yellow]{scene}: no object labels or affordance masks on its test frames; nothing scored")
            continue
        for name, result in results.items():
            ious = ", ".join(f"{label} {100 * iou:.1f}" for label, iou in result["teacher_IoU"].items())
            pixels = result["pixels"]
            CONSOLE.print(
                f"{scene.name} {name.split('_')[0]}: teacher mIoU {result['teacher_mIoU']:.1f} ({ious}); pixels hit "
                f"{pixels['hit']}, false alarms {pixels['false_alarm']}, missed {pixels['missed']}"
            )
        if "object_segmentation" in results:
            means.append(results["object_segmentation"]["teacher_mIoU"])
        if bench.output_dir is not None:
            (bench.output_dir / scene.name).mkdir(parents=True, exist_ok=True)
            (bench.output_dir / scene.name / "teacher.json").write_text(json.dumps(results, indent=2))
    if means:
        CONSOLE.print(f"teacher object mIoU, mean over {len(means)} scene(s): {np.mean(means):.1f}")
    if bench.output_dir is not None:
        CONSOLE.print(f"per-frame relevancy images and teacher.json per scene: {bench.output_dir}")


if __name__ == "__main__":
    main(tyro.cli(BenchTeacher))
