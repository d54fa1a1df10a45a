"""The text query a model's renders answer, the viewer panel that sets it, and the last render kept
so that a new query on an unchanged view costs a relevancy pass, not a render.

A parameter-free module the model delegates to: nerfstudio's viewer finds the panel's elements by
walking the pipeline's modules, and nothing here enters a checkpoint.
"""

from __future__ import annotations

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


class QuerySession(nn.Module):
    def __init__(self, encoder: QueryEncoder):
        super().__init__()
        self.encoder = encoder
        self.panel = QueryPanel(self.apply_text)
        self.query: Optional[TextQuery] = None
        self.stream = "composite"
        """The stream whose map `relevancy` shows: composite or one of STREAMS."""
        self._last_render: Optional[Tuple[tuple, Dict[str, Tensor]]] = None

    def set(self, positive: str, negatives: Optional[Sequence[str]] = None, kind: str = "clip", stream: str = "composite") -> None:
        """Renders from now on carry relevancy maps for this text (QueryError if it cannot be asked)."""
        if stream not in ("composite", *STREAMS):
            raise QueryError(f"unknown stream {stream!r}; use composite, {', '.join(STREAMS)}")
        query = TextQuery.parse(positive, negatives, kind)
        self.encoder.encode(query)  # load and check now, not in the middle of a render
        self.query, self.stream = query, stream

    def clear(self) -> None:
        self.query = None

    def apply_text(self, text: str, negatives: str, kind: str, stream: str) -> None:
        """The viewer's query panel: blank text clears; a query that cannot be asked is reported and
        cleared, never raised into the viewer."""
        if not text.strip():
            self.clear()
            return
        try:
            self.set(text, negatives.split(","), kind, stream)
        except (QueryError, ClipWeightsUnavailable) as err:
            CONSOLE.print(f"[yellow]query not applied: {err}")
            self.clear()

    def relevancy(self, outputs: Dict[str, Tensor], heads: LanguageHeads) -> Dict[str, Tensor]:
        """The query's relevancy maps of a render by the model's language heads, and the chosen map
        over the composite (`relevancy_over_rgb`); nothing without a query."""
        if self.query is None:
            return {}
        maps = relevancy_maps(outputs, self.query, self.encoder, heads, self.stream)
        maps["relevancy_over_rgb"] = relevancy_over_rgb(outputs["rgb"], maps["relevancy"], RELEVANCY_THRESHOLDS[self.query.kind])
        return maps

    def cached_render(self, key: Optional[tuple], render: Callable[[], Dict[str, Tensor]]) -> Dict[str, Tensor]:
        """The outputs of `render()`, or of the last render when it had the same key (None: never cached)."""
        if key is not None and self._last_render is not None and self._last_render[0] == key:
            return dict(self._last_render[1])  # same view, same weights: only the query changed
        outputs = render()
        self._last_render = (key, dict(outputs)) if key is not None else None
        return outputs


def camera_key(camera: Cameras, step: int, training: bool) -> tuple:
    """Identifies a render: the camera's pose, intrinsics, size and time, and the model's step."""
    parts = (camera.camera_to_worlds, camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height, camera.times)
    return (step, training, *(p.detach().cpu().numpy().tobytes() for p in parts if p is not None))
