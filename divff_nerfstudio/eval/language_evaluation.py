"""DIV-FF's segmentation metrics by text query: per test frame, each annotated label (an object's
name, or an affordance such as "cut onion") is queried, the relevancy thresholded to a mask and
compared with the label's annotated mask; TP/FP/FN are accumulated per label over frames, IoU per
label, mIoU over labels (x 100). Objects are asked of the image-language (CLIP) embedding with
threshold 0.7, affordances of the video-language embedding with 0.54, as DIV-FF does. A label whose
mask is empty in a frame is not scored in that frame.

Given the frame's 2D targets, the teacher is scored beside the field on the same labels and pixels
(`teacher_mIoU`): a distilled field should match or beat the targets it learned from."""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Float
from matplotlib import colormaps

from divff_nerfstudio.model.language_heads import LanguageHeads, relevancy
from divff_nerfstudio.model.queries import RELEVANCY_THRESHOLDS, QueryEncoder, TextQuery, relevancy_maps

OBJECT_THRESHOLD = RELEVANCY_THRESHOLDS["clip"]
AFFORDANCE_THRESHOLD = RELEVANCY_THRESHOLDS["video"]


class QuerySegmentationScore:
    def __init__(
        self, encoder: QueryEncoder, heads: Optional[LanguageHeads], threshold: float, kind: str = "clip", negatives: Sequence[str] = ()
    ):
        self.encoder = encoder
        self.heads = heads
        self.threshold = threshold
        self.kind = kind
        self.negatives = tuple(negatives)
        self.counts: Dict[str, np.ndarray] = defaultdict(lambda: np.zeros(3, dtype=np.int64))  # tp, fp, fn
        self.teacher_counts: Dict[str, np.ndarray] = defaultdict(lambda: np.zeros(3, dtype=np.int64))

    def add_frame(
        self,
        outputs: Dict[str, torch.Tensor],
        truths: Dict[str, np.ndarray],
        image: np.ndarray,
        teacher: Optional[Float[torch.Tensor, "h w d"]] = None,
    ) -> List[Tuple[str, np.ndarray]]:
        """Score one frame against {label: (H, W) bool mask}; returns per scored label an image:
        relevancy over the frame | mask comparison (green: hit, red: false alarm, blue: missed),
        the field's row above the teacher's when the frame's target embeddings are given."""
        teacher_panels = dict(self.add_teacher_frame(truths, image, teacher)) if teacher is not None else {}
        panels = []
        for label, truth in sorted(truths.items()):
            if not truth.any():
                continue
            query = TextQuery.parse(label, self.negatives, self.kind)
            rel = relevancy_maps(outputs, query, self.encoder, self.heads)["relevancy"][..., 0]
            panel = self._score(self.counts, label, rel.cpu().numpy(), truth, image)
            if label in teacher_panels:
                panel = np.concatenate([panel, teacher_panels[label]], axis=0)
            panels.append((label, panel))
        return panels

    def add_teacher_frame(
        self, truths: Dict[str, np.ndarray], image: np.ndarray, teacher: Float[torch.Tensor, "h w d"]
    ) -> List[Tuple[str, np.ndarray]]:
        """Score the frame's 2D targets alone: what a CLIP teaches can be compared before any field
        is trained on it (scripts/bench_teacher.py)."""
        panels = []
        for label, truth in sorted(truths.items()):
            if not truth.any():
                continue
            positive, negatives = self.encoder.encode(TextQuery.parse(label, self.negatives, self.kind))
            rel = relevancy(teacher.float(), positive.to(teacher.device), negatives.to(teacher.device))[..., 0]
            panels.append((label, self._score(self.teacher_counts, label, rel.cpu().numpy(), truth, image)))
        return panels

    def _score(self, counts: Dict[str, np.ndarray], label: str, rel: np.ndarray, truth: np.ndarray, image: np.ndarray) -> np.ndarray:
        pred = rel > self.threshold
        counts[label] += [(pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()]
        heat = colormaps["turbo"](rel)[..., :3]
        overlay = 0.5 * image + 0.5 * heat
        compare = 0.35 * image.mean(-1, keepdims=True).repeat(3, -1)
        compare[pred & truth] = (0.1, 0.9, 0.1)
        compare[pred & ~truth] = (0.95, 0.1, 0.1)
        compare[~pred & truth] = (0.1, 0.3, 1.0)
        return np.concatenate([overlay, compare], axis=1)

    def summary(self) -> Dict[str, object]:
        out: Dict[str, object] = {"threshold": self.threshold, "embedding": self.kind}
        for prefix, counts in (("", self.counts), ("teacher_", self.teacher_counts)):
            iou = {label: float(tp / max(tp + fp + fn, 1)) for label, (tp, fp, fn) in sorted(counts.items())}
            if prefix and not iou:
                continue
            out[f"{prefix}mIoU"] = float(np.mean(list(iou.values()))) * 100 if iou else None
            out[f"{prefix}IoU"] = iou
        return out
