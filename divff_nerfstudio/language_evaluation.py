"""DIV-FF's object segmentation metric: per test frame, each annotated object label is queried, the
relevancy thresholded to a mask and compared with the label's polygons; TP/FP/FN are accumulated
per label over frames, IoU per label, mIoU over labels (x 100)."""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from matplotlib import colormaps

from dataparsers.annotations import LabelledPolygon, rasterize
from divff_nerfstudio.language_heads import LanguageHeads
from divff_nerfstudio.queries import QueryEncoder, TextQuery, relevancy_maps


class ObjectSegmentationScore:
    def __init__(self, encoder: QueryEncoder, heads: LanguageHeads, threshold: float = 0.7, negatives: Sequence[str] = ()):
        self.encoder = encoder
        self.heads = heads
        self.threshold = threshold
        self.negatives = tuple(negatives)
        self.counts: Dict[str, np.ndarray] = defaultdict(lambda: np.zeros(3, dtype=np.int64))  # tp, fp, fn

    def add_frame(
        self, outputs: Dict[str, torch.Tensor], polygons: List[LabelledPolygon], image: np.ndarray
    ) -> List[Tuple[str, np.ndarray]]:
        """Score one frame; returns per label an image: relevancy over the frame | mask comparison
        (green: hit, red: false alarm, blue: missed)."""
        h, w = image.shape[:2]
        panels = []
        for label, truth in sorted(rasterize(polygons, (w, h)).items()):
            rel = relevancy_maps(outputs, TextQuery.parse(label, self.negatives), self.encoder, self.heads)["relevancy"][..., 0].cpu().numpy()
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
        }
