"""DIV-FF's segmentation metrics by text query: per test frame, each annotated label (an object's
name, or an affordance such as "cut onion") is queried, the relevancy thresholded to a mask and
compared with the label's annotated mask; TP/FP/FN are accumulated per label over frames, IoU per
label, mIoU over labels (x 100). Objects are asked of the image-language (CLIP) embedding with
threshold 0.7, affordances of the video-language embedding with 0.54, as DIV-FF does. A label whose
mask is empty in a frame is not scored in that frame."""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from matplotlib import colormaps

from divff_nerfstudio.model.language_heads import LanguageHeads
from divff_nerfstudio.model.queries import QueryEncoder, TextQuery, relevancy_maps

OBJECT_THRESHOLD = 0.7
AFFORDANCE_THRESHOLD = 0.54


class QuerySegmentationScore:
    def __init__(
        self, encoder: QueryEncoder, heads: LanguageHeads, threshold: float, kind: str = "clip", negatives: Sequence[str] = ()
    ):
        self.encoder = encoder
        self.heads = heads
        self.threshold = threshold
        self.kind = kind
        self.negatives = tuple(negatives)
        self.counts: Dict[str, np.ndarray] = defaultdict(lambda: np.zeros(3, dtype=np.int64))  # tp, fp, fn

    def add_frame(
        self, outputs: Dict[str, torch.Tensor], truths: Dict[str, np.ndarray], image: np.ndarray
    ) -> List[Tuple[str, np.ndarray]]:
        """Score one frame against {label: (H, W) bool mask}; returns per scored label an image:
        relevancy over the frame | mask comparison (green: hit, red: false alarm, blue: missed)."""
        panels = []
        for label, truth in sorted(truths.items()):
            if not truth.any():
                continue
            query = TextQuery.parse(label, self.negatives, self.kind)
            rel = relevancy_maps(outputs, query, self.encoder, self.heads)["relevancy"][..., 0].cpu().numpy()
            pred = rel > self.threshold
            self.counts[label] += [(pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()]
            heat = colormaps["turbo"](rel)[..., :3]
            overlay = 0.5 * image + 0.5 * heat
            compare = 0.35 * image.mean(-1, keepdims=True).repeat(3, -1)
            compare[pred & truth] = (0.1, 0.9, 0.1)
            compare[pred & ~truth] = (0.95, 0.1, 0.1)
            compare[~pred & truth] = (0.1, 0.3, 1.0)
            panels.append((label, np.concatenate([overlay, compare], axis=1)))
        return panels

    def summary(self) -> Dict[str, object]:
        iou = {label: float(tp / max(tp + fp + fn, 1)) for label, (tp, fp, fn) in sorted(self.counts.items())}
        return {
            "mIoU": float(np.mean(list(iou.values()))) * 100 if iou else None,
            "IoU": iou,
            "threshold": self.threshold,
            "embedding": self.kind,
        }
