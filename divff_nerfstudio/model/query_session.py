"""The text query a model's renders answer, the viewer panel that sets it, and the last renders kept
so that a new query on an unchanged view costs a relevancy pass, not a render.

A parameter-free module the model delegates to: nerfstudio's viewer finds the panel's elements by
walking the pipeline's modules, and nothing here enters a checkpoint.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, Optional, Sequence, Tuple

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor, nn

from divff_nerfstudio.language.clip_encoder import ClipWeightsUnavailable
from divff_nerfstudio.model.compositing import STREAMS
from divff_nerfstudio.model.language_heads import LanguageHeads
from divff_nerfstudio.model.queries import (
    RELEVANCY_THRESHOLDS,
    QueryEncoder,
    QueryError,
    TextQuery,
    relevancy_maps,
    relevancy_over_rgb,
)
from divff_nerfstudio.model.viewer_query import QueryPanel

KEPT_RENDERS = 2
"""The viewer renders each view twice, a small preview and then the full size: both are kept, so a
new query on a still view answers at either size without rendering. Each kept render holds every
stream's features, which is why no more are kept."""


class QuerySession(nn.Module):
    def __init__(self, encoder: QueryEncoder):
        super().__init__()
        self.encoder = encoder
        self.panel = QueryPanel(self.apply_text)
        self.query: Optional[TextQuery] = None
        self.stream = "composite"
        """The stream whose map `relevancy` shows: composite or one of STREAMS."""
        self._shown: Tuple[str, ...] = ()
        """The outputs the last query's renders carried, kept as blank maps once the viewer's text
        box is emptied: the viewer would otherwise fall back to rgb and the user pick relevancy again."""
        self._renders: OrderedDict[tuple, Dict[str, Tensor]] = OrderedDict()
        """The last KEPT_RENDERS renders by camera key, the most recent last."""

    def set(self, positive: str, negatives: Optional[Sequence[str]] = None, kind: str = "clip", stream: str = "composite") -> None:
        """Renders from now on carry relevancy maps for this text (QueryError if it cannot be asked)."""
        if stream not in ("composite", *STREAMS):
            raise QueryError(f"unknown stream {stream!r}; use composite, {', '.join(STREAMS)}")
        query = TextQuery.parse(positive, negatives, kind)
        self.encoder.encode(query)  # load and check now, not in the middle of a render
        self.query, self.stream = query, stream

    def clear(self) -> None:
        self.query = None
        self._shown = ()

    def apply_text(self, text: str, negatives: str, kind: str, stream: str) -> None:
        """The viewer's query panel: blank text drops the query (its outputs stay, blank); a query that
        cannot be asked is reported and dropped the same way, never raised into the viewer."""
        if not text.strip():
            self.query = None  # the outputs shown stay, blank
            return
        try:
            self.set(text, negatives.split(","), kind, stream)
            CONSOLE.print(f"relevancy of {text.strip()!r} ({kind} embedding, {stream})")
        except (QueryError, ClipWeightsUnavailable) as err:
            CONSOLE.print(f"[yellow]query not applied: {err}")
            self.query = None

    def relevancy(self, outputs: Dict[str, Tensor], heads: LanguageHeads) -> Dict[str, Tensor]:
        """The query's relevancy maps of a render by the model's language heads, and the chosen map
        over the composite (`relevancy_over_rgb`); nothing without a query (blank maps once the viewer's
        box was emptied)."""
        if self.query is None:
            zeros = outputs["rgb"].new_zeros((*outputs["rgb"].shape[:-1], 1))
            return {k: outputs["rgb"] if k == "relevancy_over_rgb" else zeros for k in self._shown}
        maps = relevancy_maps(outputs, self.query, self.encoder, heads, self.stream)
        maps["relevancy_over_rgb"] = relevancy_over_rgb(outputs["rgb"], maps["relevancy"], RELEVANCY_THRESHOLDS[self.query.kind])
        self._shown = tuple(maps)
        return maps

    def cached_render(self, key: Optional[tuple], render: Callable[[], Dict[str, Tensor]]) -> Dict[str, Tensor]:
        """The outputs of `render()`, or of a kept render with the same key (None: never kept)."""
        self.panel.rendered()
        if key is not None and key in self._renders:
            self._renders.move_to_end(key)
            return dict(self._renders[key])  # same view, size and weights: only the query changed
        outputs = render()
        if key is not None:
            self._renders[key] = dict(outputs)
            while len(self._renders) > KEPT_RENDERS:
                self._renders.popitem(last=False)
        return outputs


def camera_key(camera: Cameras, step: int, training: bool) -> tuple:
    """Identifies a render: the camera's pose, intrinsics, size and time, and the model's step."""
    parts = (camera.camera_to_worlds, camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height, camera.times)
    return (step, training, *(p.detach().cpu().numpy().tobytes() for p in parts if p is not None))
