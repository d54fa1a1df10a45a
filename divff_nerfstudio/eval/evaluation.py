"""NeuralDiff's evaluation of a trained divff pipeline: dynamic-mask mAP and PSNR per test frame.

The foreground score of a pixel is the composite share of the object + actor streams. Per frame:
average precision of that score against the annotation mask (frames with an empty mask skipped),
mAP = mean x 100. Where the generator's ground truth exists (gt/<frame>.npz), the object stream
is also scored against the object mask and the actor stream against the actor mask.
With language heads, object segmentation and, where affordance masks exist, affordance segmentation
(language_evaluation.py) run on the same renders, and on the test frames' own 2D targets
(teacher_targets.py: the teacher's mIoU beside the field's).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from nerfstudio.pipelines.base_pipeline import Pipeline
from rich.progress import Progress
from sklearn.metrics import average_precision_score
from torch import Tensor

from dataparsers.annotations import load_mask, rasterize
from divff_nerfstudio.eval.images import VideoStream, output_image, save_png, side_by_side
from divff_nerfstudio.eval.language_evaluation import AFFORDANCE_THRESHOLD, OBJECT_THRESHOLD, QuerySegmentationScore
from divff_nerfstudio.eval.teacher_targets import TeacherTargets
from divff_nerfstudio.model.compositing import STREAMS

ACTOR_LABEL = 255
PANELS = ("ground truth", "composite", "static", "objects", "actor", "predicted mask", "annotation")


QUERY_FOLDERS = {"clip": "language", "video": "affordances"}
"""Where each kind of query's per-frame relevancy images go, under an evaluation's output folder."""


def query_image_path(out: Path, kind: str, frame_id: int, label: str) -> Path:
    """<out>/language/<frame>_<label>.png (affordances/ for video queries), the label made file-safe."""
    return out / QUERY_FOLDERS[kind] / f"{frame_id:06d}_{re.sub(r'[^A-Za-z0-9.-]+', '_', label)}.png"


def average_precision(score: np.ndarray, mask: np.ndarray) -> Optional[float]:
    """AP of a per-pixel score against a binary mask; None when the mask is empty (no positives)."""
    labels = mask.reshape(-1).astype(bool)
    if not labels.any():
        return None
    return float(average_precision_score(labels, score.reshape(-1)))


def stream_scores(outputs: Dict[str, Tensor], labels: np.ndarray) -> Tuple[Optional[float], Optional[float]]:
    """Object- and actor-stream AP of a render against a label map (0 static, object ids, 255 actor):
    each stream's share should hold its own pixels, whatever the other dynamic stream does."""
    objects = (labels > 0) & (labels != ACTOR_LABEL)
    return (
        average_precision(outputs["accumulation_objects"][..., 0].cpu().numpy(), objects),
        average_precision(outputs["accumulation_actor"][..., 0].cpu().numpy(), labels == ACTOR_LABEL),
    )


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    mse = float(np.mean((pred - gt) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@dataclass
class FrameResult:
    frame_id: int
    psnr: float
    ap: Optional[float]
    ap_objects: Optional[float] = None
    ap_actor: Optional[float] = None


@dataclass
class EvaluationResult:
    scene: str
    frames: List[FrameResult] = field(default_factory=list)
    segmentation: Optional[Dict[str, object]] = None
    """Object segmentation by text query (mIoU, IoU per label), when the model has language heads."""
    affordances: Optional[Dict[str, object]] = None
    """Affordance segmentation by video-language query, when the scene has affordance masks."""
    training_frames: Optional["EvaluationResult"] = None
    """The same scores on the training frames (training_frames.py), when asked for."""

    def summary(self) -> Dict[str, Optional[float]]:
        def mean(values: List[Optional[float]], scale: float = 1.0) -> Optional[float]:
            kept = [v for v in values if v is not None]
            return float(np.mean(kept)) * scale if kept else None

        return {
            "mAP": mean([f.ap for f in self.frames], 100),
            "PSNR": mean([f.psnr for f in self.frames]),
            "mAP_objects": mean([f.ap_objects for f in self.frames], 100),
            "mAP_actor": mean([f.ap_actor for f in self.frames], 100),
            "num_frames": len(self.frames),
        }

    def to_json(self) -> dict:
        out = {"scene": self.scene, "summary": self.summary(), "frames": [f.__dict__ for f in self.frames]}
        if self.segmentation is not None:
            out["object_segmentation"] = self.segmentation
        if self.affordances is not None:
            out["affordance_segmentation"] = self.affordances
        if self.training_frames is not None:
            out["training_frames"] = {"summary": self.training_frames.summary(), "frames": [f.__dict__ for f in self.training_frames.frames]}
        return out


@dataclass
class Thresholds:
    """Relevancy thresholds of the query segmentations (flags of divff-evaluate)."""

    threshold: float = OBJECT_THRESHOLD
    """Relevancy above which a pixel belongs to the queried object (DIV-FF: 0.7)."""
    affordance_threshold: float = AFFORDANCE_THRESHOLD
    """Video relevancy above which a pixel has the queried affordance (DIV-FF: 0.54)."""


def evaluate_pipeline(
    pipeline: Pipeline,
    output_dir: Optional[Path] = None,
    thresholds: Thresholds = Thresholds(),
    teacher: bool = True,
    training_frames: Optional[EvaluationResult] = None,
) -> EvaluationResult:
    """Render every frame of the pipeline's eval dataset and score it; with output_dir, write a
    side-by-side image per frame (GT | composite | static | objects | actor | mask | annotation),
    an mp4 of them and results.json, and per frame and object label (affordance) a relevancy image
    (language/<frame>_<label>.png, affordances/<frame>_<query>.png; the field above, the teacher
    below). `teacher`: also score the test frames' own targets (extracted once into the cache).
    `training_frames`: the training frames' scores, kept in the result and results.json."""
    dataset = pipeline.datamanager.eval_dataset
    meta = dataset.metadata
    scene_root = Path(dataset.image_filenames[0]).parent.parent
    result = EvaluationResult(scene=str(meta.get("scene_name", scene_root.name)), training_frames=training_frames)
    model = pipeline.model
    model.eval()
    language = getattr(model, "language", None) is not None
    segmentation = QuerySegmentationScore(model.queries.encoder, model.language, thresholds.threshold) if language else None
    affordance_masks = meta.get("affordance_masks", [{}] * len(dataset))
    affordances = None
    if language and any(affordance_masks):
        affordances = QuerySegmentationScore(model.queries.encoder, model.language, thresholds.affordance_threshold, kind="video")
    targets = TeacherTargets(pipeline.datamanager) if language and teacher else None
    # every image is written as its frame is scored: a long video's test frames are never all held
    out = Path(output_dir) if output_dir is not None else None
    video = VideoStream(out / "summary.mp4", fps=4) if out is not None else None
    with Progress() as progress:
        task = progress.add_task("evaluating", total=len(dataset))
        for i in range(len(dataset)):
            camera = dataset.cameras[i : i + 1].to(model.device)
            outputs = model.get_outputs_for_camera(camera)
            gt = dataset.get_image_float32(i)[..., :3].numpy()
            pred = output_image(outputs, "rgb")
            score = outputs["dynamic_mask"][..., 0].cpu().numpy()
            size = (gt.shape[1], gt.shape[0])
            mask_path = meta["dynamic_mask_filenames"][i]
            mask = load_mask(mask_path, size, meta["frame_ids"][i]) if mask_path is not None else None
            frame = FrameResult(meta["frame_ids"][i], psnr(pred, gt), average_precision(score, mask) if mask is not None else None)
            truth_path = scene_root / "gt" / f"{Path(dataset.image_filenames[i]).stem}.npz"
            if truth_path.is_file():
                frame.ap_objects, frame.ap_actor = stream_scores(outputs, np.load(truth_path)["labels"])
            result.frames.append(frame)
            polygons = meta.get("object_labels", [[]] * len(dataset))[i]
            frame_targets = targets.embeddings(i) if targets is not None and (polygons or affordance_masks[i]) else {}
            scored = {"clip": [], "video": []}
            if segmentation is not None and polygons:
                scored["clip"] = segmentation.add_frame(outputs, rasterize(polygons, size), gt, frame_targets.get("clip"))
            if affordances is not None and affordance_masks[i]:
                scored["video"] = affordances.add_frame(outputs, affordance_masks[i], gt, frame_targets.get("video"))
            if out is not None:
                annotation = np.repeat(mask[..., None], 3, -1).astype(np.float32) if mask is not None else np.zeros_like(gt)
                row = [gt, pred, *(output_image(outputs, f"rgb_{k}") for k in STREAMS)]
                panel = side_by_side([*row, output_image(outputs, "dynamic_mask", "gray"), annotation])
                save_png(out / "frames" / f"{frame.frame_id:06d}.png", panel)
                video.add(panel)
                for kind, images in scored.items():
                    for label, image in images:
                        save_png(query_image_path(out, kind, frame.frame_id, label), image)
            progress.advance(task)
    if segmentation is not None:
        result.segmentation = segmentation.summary()
    if affordances is not None:
        result.affordances = affordances.summary()
    if out is not None:
        video.close()
        (out / "results.json").write_text(json.dumps(result.to_json(), indent=2))
        (out / "panels.txt").write_text(" | ".join(PANELS) + "\n")
    return result
