"""The decomposition of the frames a run trained on, scored against a generated scene's label map
of every frame (gt/labels/<frame>.png).

A scene's test split has a dozen annotated frames: one frame where a fast arm goes to the wrong
stream moves object-stream AP by several points, and two runs of the same configuration differ by
up to 15. The training frames are eight times as many, and their decomposition is what a user gets
from the video they trained on, so comparing two configurations there needs fewer runs to tell
them apart. It says nothing about new views or times; the test split stays the benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from nerfstudio.pipelines.base_pipeline import Pipeline
from PIL import Image
from rich.progress import track

from divff_nerfstudio.eval.evaluation import EvaluationResult, FrameResult, average_precision, psnr, stream_scores
from divff_nerfstudio.synthetic.gt_layout import label_map_path
from divff_nerfstudio.utils.errors import UserError

_KEYS = ("rgb", "dynamic_mask", "accumulation_objects", "accumulation_actor")


def score_training_frames(pipeline: Pipeline) -> EvaluationResult:
    """mAP, object- and actor-stream AP and PSNR of every training frame (same scores as the test
    split's, with the label maps as annotation)."""
    dataset = pipeline.datamanager.train_dataset
    paths = [label_map_path(Path(p).parent.parent, Path(p).stem) for p in dataset.image_filenames]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UserError(
            f"{missing[0]}: no label map ({len(missing)} of {len(paths)} training frames have none); "
            "training frames can only be scored on scenes written by divff-make-scene"
        )
    model = pipeline.model
    model.eval()
    result = EvaluationResult(scene=paths[0].parent.parent.parent.name)
    for i in track(range(len(dataset)), description="scoring the training frames", transient=True):
        outputs = model.render_geometry(dataset.cameras[i : i + 1].to(model.device), _KEYS)
        gt = dataset.get_image_float32(i)[..., :3].numpy()
        labels = np.asarray(Image.open(paths[i]))
        if labels.shape != gt.shape[:2]:
            raise UserError(f"{paths[i]}: label map is {labels.shape[1]}x{labels.shape[0]}, the frame {gt.shape[1]}x{gt.shape[0]}")
        ap_objects, ap_actor = stream_scores(outputs, labels)
        result.frames.append(
            FrameResult(
                frame_id=int(dataset.metadata["frame_ids"][i]),
                psnr=psnr(outputs["rgb"].clamp(0, 1).cpu().numpy(), gt),
                ap=average_precision(outputs["dynamic_mask"][..., 0].cpu().numpy(), labels > 0),
                ap_objects=ap_objects,
                ap_actor=ap_actor,
            )
        )
    return result
