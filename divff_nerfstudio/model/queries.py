"""Open-vocabulary text queries: checked, encoded once, turned into relevancy maps.

A query names what to look for (`positive`), what to compare against (`negatives`, LERF's canonical
phrases by default) and which embedding it asks (`clip`: things; `video`: actions/affordances).
Text comes from people (viewer, command line), so it is checked here: empty text is refused with a
message, very long text is cut to what the tokenizer reads anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from jaxtyping import Float
from nerfstudio.utils.colormaps import ColormapOptions, apply_colormap
from torch import Tensor

from divff_nerfstudio.language.clip_encoder import ClipEncoder, ClipEncoderConfig
from divff_nerfstudio.language.oracle_targets import OracleTextEncoder
from divff_nerfstudio.language.video_targets import VideoTargetExtractor
from divff_nerfstudio.model.compositing import STREAMS
from divff_nerfstudio.model.language_heads import LanguageHeads, relevancy

DEFAULT_NEGATIVES: Dict[str, Tuple[str, ...]] = {
    "clip": ("object", "things", "stuff", "hands"),
    "video": ("general task", "background", "object", "things"),
}
RELEVANCY_THRESHOLDS: Dict[str, float] = {"clip": 0.7, "video": 0.54}
"""Relevancy above which a pixel shows the query (DIV-FF's object and affordance thresholds)."""
_FILLER_WORDS = frozenset({"a", "an", "the", "of", "some"})
MAX_QUERY_CHARS = 300
"""Longer text is cut: CLIP tokenizers read at most 77 tokens."""


class QueryError(ValueError):
    """A query that cannot be answered (empty text, unknown kind); the message is for the user."""


@dataclass(frozen=True)
class TextQuery:
    positive: str
    negatives: Tuple[str, ...]
    kind: str = "clip"

    @classmethod
    def parse(cls, positive: str, negatives: Optional[Sequence[str]] = None, kind: str = "clip") -> "TextQuery":
        if kind not in DEFAULT_NEGATIVES:
            raise QueryError(f"unknown query kind {kind!r}; use one of {', '.join(DEFAULT_NEGATIVES)}")
        text = " ".join(str(positive).split())[:MAX_QUERY_CHARS]
        if not text:
            raise QueryError("the query is empty: type what to look for, e.g. 'red cube' or 'hand'")
        negs = tuple(n for n in (" ".join(str(n).split())[:MAX_QUERY_CHARS] for n in (negatives or ())) if n)
        return cls(text, _not_naming(text, negs or DEFAULT_NEGATIVES[kind]), kind)


def _words(text: str) -> frozenset:
    """Content words, lower case, a plural's "s" dropped ("Hands" and "hand" are one word)."""
    words = ("".join(c for c in w if c.isalnum()) for w in text.lower().split())
    return frozenset(w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words if w and w not in _FILLER_WORDS)


def _not_naming(positive: str, negatives: Tuple[str, ...]) -> Tuple[str, ...]:
    """The negatives without those that name what the query names: DIV-FF's "hands" keeps object
    queries off the hands, but asked for "hand" it would hold every hand at 0.5. Unless that would
    leave none."""
    named = _words(positive)
    kept = tuple(n for n in negatives if not (_words(n) & named))
    return kept or negatives


class QueryEncoder:
    """Text embeddings of queries; builds the CLIP on first use (so renders without a query never
    load weights) and remembers the last query's embeddings."""

    def __init__(self, clip: ClipEncoderConfig, video: VideoTargetExtractor, oracle_dim: Optional[int] = None):
        """oracle_dim: encode text with the oracle teacher's table of this size instead of the CLIP."""
        self.clip_config = clip
        self.video = video
        self.oracle_dim = oracle_dim
        self._encoder: Optional[Union[ClipEncoder, OracleTextEncoder]] = None
        self._last: Optional[Tuple[TextQuery, Tensor, Tensor]] = None

    def encode(self, query: TextQuery) -> Tuple[Float[Tensor, " d"], Float[Tensor, "m d"]]:
        if self._last is None or self._last[0] != query:
            if self._encoder is None:
                self._encoder = ClipEncoder(self.clip_config) if self.oracle_dim is None else OracleTextEncoder(self.oracle_dim)
            texts = [query.positive, *query.negatives]
            if query.kind == "video":
                emb = self.video.encode_text(texts, self._encoder)
            else:
                emb = self._encoder.encode_text(texts)
            self._last = (query, emb[0], emb[1:])
        return self._last[1], self._last[2]


@torch.no_grad()
def relevancy_maps(
    outputs: Dict[str, Tensor], query: TextQuery, encoder: QueryEncoder, heads: LanguageHeads, stream: str = "composite"
) -> Dict[str, Tensor]:
    """`relevancy_<stream>` for the composite and each stream, and `relevancy` (the one chosen by
    `stream`). A stream's map is 0 where that stream holds less than half of the pixel: "only
    moving objects matching 'mug'"."""
    positive, negatives = encoder.encode(query)
    hidden = {k: outputs[f"language_{k}"] for k in STREAMS}
    embeddings = heads.embed(hidden, query.kind)
    maps = {}
    for name, emb in embeddings.items():
        rel = relevancy(emb, positive.to(emb.device), negatives.to(emb.device))
        if name != "composite":
            rel = rel * (outputs[f"accumulation_{name}"] > 0.5).to(rel.dtype)
        maps[f"relevancy_{name}"] = rel
    maps["relevancy"] = maps[f"relevancy_{stream}"]
    return maps


def relevancy_over_rgb(
    rgb: Float[Tensor, "*bs 3"], rel: Float[Tensor, "*bs 1"], threshold: float
) -> Float[Tensor, "*bs 3"]:
    """The composite with the relevancy colour map blended in where relevancy passes the threshold
    (LERF users' view: what the query found, in the scene it was found in)."""
    span = (rel - threshold) / max(1.0 - threshold, 1e-6)
    heat = apply_colormap(span.clamp(0, 1), ColormapOptions(colormap="turbo"))
    return torch.where(rel > threshold, 0.4 * rgb + 0.6 * heat, rgb)
