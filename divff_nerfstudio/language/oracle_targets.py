"""The oracle language teacher for generated scenes: targets made from the ground-truth label maps
instead of a CLIP, so a run shows what the field reaches when its teacher is perfect (and what
the real teacher costs).

Every label gets a fixed unit embedding drawn from its text (a seeded Gaussian, so distinct labels
are nearly orthogonal in the CLIP's 512 dimensions): each object's name, "background" for the
static scene and "hand" for the actor. A frame's target grid is the pixels' embeddings averaged
over each cell of the usual target grid; text queries are encoded by the same table, so "orange
cube" asks for exactly the embedding the cube's pixels carried, wherever the cube was at the time.
Relevancy's negatives name two of the oracle's classes in other words ("stuff": the static scene,
"hands": the actor), and a perfect teacher embeds a word where its class's pixels are; otherwise
they would be random directions, and any cell a tenth covered by the object would pass 0.7.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Float
from PIL import Image
from torch import Tensor, nn

from divff_nerfstudio.synthetic.gt_layout import label_map_path
from divff_nerfstudio.utils.errors import UserError

BACKGROUND = "background"
ACTOR = "hand"
SAME_AS = {"stuff": BACKGROUND, "hands": ACTOR}
"""Words the oracle's table reads as one of its classes."""


class OracleLabelsUnavailable(UserError, FileNotFoundError):
    """The scene has no per-frame label maps (not generated, or by an older generator)."""


def oracle_embeddings(texts: Sequence[str], dim: int) -> Float[Tensor, "n dim"]:
    """The fixed unit embedding of each text (whitespace and case do not matter)."""
    rows = []
    for text in texts:
        key = " ".join(text.lower().split())
        digest = hashlib.sha256(SAME_AS.get(key, key).encode()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
        rows.append(torch.randn(dim, generator=generator))
    return nn.functional.normalize(torch.stack(rows), dim=-1)


class OracleTextEncoder:
    """Encodes query text with the oracle's table (stands in for the CLIP's text tower)."""

    def __init__(self, dim: int):
        self.dim = dim

    def encode_text(self, texts: Sequence[str]) -> Float[Tensor, "n dim"]:
        return oracle_embeddings(texts, self.dim)


class OracleTargets:
    """Target grids of one generated scene's frames from gt/labels/<frame>.png."""

    def __init__(self, scene: Path, dim: int):
        self.scene = scene
        truth_path = scene / "gt" / "scene.json"
        if not truth_path.is_file():
            raise OracleLabelsUnavailable(f"{truth_path}: missing; the oracle teacher works only on scenes written by divff-make-scene")
        truth = json.loads(truth_path.read_text())
        self.names: Dict[int, str] = {0: BACKGROUND, int(truth["actor_label"]): ACTOR}
        self.names.update({int(obj["id"]): obj["label"] for obj in truth["objects"]})
        self.table = torch.zeros(256, dim)
        self.table[list(self.names)] = oracle_embeddings(list(self.names.values()), dim)

    def identity(self) -> Dict[str, object]:
        return {"oracle": {str(k): v for k, v in sorted(self.names.items())}, "dim": self.table.shape[1]}

    def grid(self, image: Path, grid_shape: Tuple[int, int]) -> Float[Tensor, "gh gw d"]:
        path = label_map_path(self.scene, image.stem)
        if not path.is_file():
            raise OracleLabelsUnavailable(
                f"{path}: no label map for frame {image.name}; generate the scene again with divff-make-scene (it writes gt/labels/)"
            )
        labels = torch.from_numpy(np.asarray(Image.open(path), dtype=np.int64))
        pixels = self.table[labels].permute(2, 0, 1)[None]  # (1, d, h, w)
        cells = nn.functional.adaptive_avg_pool2d(pixels, grid_shape)[0].permute(1, 2, 0)
        return nn.functional.normalize(cells, dim=-1)
