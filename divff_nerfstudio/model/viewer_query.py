"""Text-query controls in ns-viewer: query, negatives, embedding kind and stream.

nerfstudio's viewer installs every ViewerElement it finds on the pipeline's modules and re-renders
when one changes; the frame/time slider comes with the viewer itself because the dataparser
includes time. The panel is a parameter-free module so it is found but adds nothing to checkpoints.
"""

from __future__ import annotations

from typing import Callable

from nerfstudio.viewer.viewer_elements import ViewerDropdown, ViewerText
from torch import nn

from divff_nerfstudio.model.compositing import STREAMS
from divff_nerfstudio.model.queries import DEFAULT_NEGATIVES


class QueryPanel(nn.Module):
    def __init__(self, on_change: Callable[[str, str, str, str], None]):
        """on_change(text, negatives as comma-separated text, kind, stream) applies the query."""
        super().__init__()
        self._on_change = on_change
        self.query_text = ViewerText("Text query", "", cb_hook=self._changed, hint="e.g. red cube, hand, cutting")
        self.query_negatives = ViewerText(
            "Negatives", ", ".join(DEFAULT_NEGATIVES["clip"]), cb_hook=self._changed, hint="comma-separated"
        )
        self.query_kind = ViewerDropdown("Embedding", "clip", list(DEFAULT_NEGATIVES), cb_hook=self._changed)
        self.query_stream = ViewerDropdown("Relevancy of", "composite", ["composite", *STREAMS], cb_hook=self._changed)
        self._kind = self.query_kind.value

    def _changed(self, element) -> None:
        if element is self.query_kind and self.query_negatives.value == ", ".join(DEFAULT_NEGATIVES[self._kind]):
            # the box still holds the other embedding's defaults: video queries get video negatives
            self.query_negatives.value = ", ".join(DEFAULT_NEGATIVES[self.query_kind.value])
        self._kind = self.query_kind.value
        self._on_change(self.query_text.value, self.query_negatives.value, self.query_kind.value, self.query_stream.value)
