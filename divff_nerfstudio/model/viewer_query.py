"""Text-query controls in ns-viewer, and a browser that opens at a training camera.

nerfstudio hands every ViewerControl it finds on the pipeline the viewer itself (`_setup`). The panel
uses that, not ViewerElements: those land in the "Custom Elements" folder below every built-in
control, out of sight, and their hooks fire on every keystroke. Here the query sits above the
viewer's tabs, typing applies once it pauses, and a new browser starts at the first training view
rather than at nerfstudio's default camera, from where no training frustum was in sight.

nerfstudio's render thread (RenderStateMachine.run) reads its next action and empties that slot in two
steps, and every 0.2 s while idle it writes one there itself: a rerender request that lands in between
is dropped, and the old image stays up until the camera moves. Under load that happens often enough to
be seen, so the panel re-sends a request for a new query or time until a render has started.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import TYPE_CHECKING, Callable, Optional

import viser
import viser.transforms as vtf
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.viewer.viewer_elements import ViewerControl

from divff_nerfstudio.model.compositing import STREAMS
from divff_nerfstudio.model.queries import DEFAULT_NEGATIVES

if TYPE_CHECKING:
    from nerfstudio.viewer.viewer import Viewer

TYPING_PAUSE_S = 0.6
"""A query is applied this long after the last keystroke: "h", "ha", "han" never reach a render."""
RERENDER_WAIT_S = 1.0
"""How long a rerender request may go unanswered before it is sent again; the viewer starts a
render within its 0.2 s polling period of a request it kept."""
RERENDER_TRIES = 5


class QueryPanel(ViewerControl):
    def __init__(self, on_change: Callable[[str, str, str, str], None]):
        """on_change(text, negatives as comma-separated text, kind, stream) applies the query."""
        self._on_change = on_change
        self.text = ""
        self.negatives = ", ".join(DEFAULT_NEGATIVES["clip"])
        self.kind = "clip"
        self.stream = "composite"
        self._typing: Optional[threading.Timer] = None
        self._lock = threading.Lock()
        self._viewer: Optional[Viewer] = None
        self._renders = 0
        self._rendered = threading.Condition()

    def edit(self, text: Optional[str] = None, negatives: Optional[str] = None, kind: Optional[str] = None, stream: Optional[str] = None) -> None:
        """Applies the given values now; negatives still at one embedding's defaults follow a change
        of embedding (video queries get video negatives, edited negatives stay)."""
        with self._lock:
            if self._typing is not None:
                self._typing.cancel()
                self._typing = None
            if kind is not None and kind != self.kind and negatives is None and self.negatives == ", ".join(DEFAULT_NEGATIVES[self.kind]):
                negatives = ", ".join(DEFAULT_NEGATIVES[kind])
            self.text = self.text if text is None else text
            self.negatives = self.negatives if negatives is None else negatives
            self.kind = self.kind if kind is None else kind
            self.stream = self.stream if stream is None else stream
            self._apply()

    def type(self, text: Optional[str] = None, negatives: Optional[str] = None) -> None:
        """A keystroke in a text box: kept at once (a dropdown changed meanwhile applies it), applied
        once typing has paused for TYPING_PAUSE_S."""
        with self._lock:
            self.text = self.text if text is None else text
            self.negatives = self.negatives if negatives is None else negatives
            if self._typing is not None:
                self._typing.cancel()
            self._typing = threading.Timer(TYPING_PAUSE_S, self.edit)
            self._typing.daemon = True
            self._typing.start()

    def _apply(self) -> None:
        viewer = self._viewer
        if viewer is None:
            self._on_change(self.text, self.negatives, self.kind, self.stream)
            return
        with viewer.train_lock if viewer.train_lock is not None else contextlib.nullcontext():
            self._on_change(self.text, self.negatives, self.kind, self.stream)
        self.rerender()

    def rendered(self) -> None:
        """The model calls this as each render starts."""
        with self._rendered:
            self._renders += 1
            self._rendered.notify_all()

    def rerender(self) -> None:
        """What nerfstudio does after its own elements' hooks, re-sent from a background thread
        until a render has started (see the module's docstring)."""
        viewer = self._viewer
        if viewer is None:
            return
        with self._rendered:
            before = self._renders

        def until_rendered() -> None:
            for _ in range(RERENDER_TRIES):
                viewer._trigger_rerender()
                with self._rendered:
                    if self._rendered.wait_for(lambda: self._renders > before, timeout=RERENDER_WAIT_S):
                        return

        threading.Thread(target=until_rendered, daemon=True).start()

    def _setup(self, viewer: Viewer) -> None:
        super()._setup(viewer)
        self._viewer = viewer
        gui = viewer.viser_server.gui
        with gui.add_folder("Text query", order=viewer.stats_markdown.order + 0.5):  # above the tabs
            text = gui.add_text("Text query", self.text, hint="e.g. red cube, hand, cutting; applied as you pause")
            negatives = gui.add_text("Negatives", self.negatives, hint="comma-separated")
            kind = gui.add_dropdown("Embedding", list(DEFAULT_NEGATIVES), initial_value=self.kind)
            stream = gui.add_dropdown("Relevancy of", ["composite", *STREAMS], initial_value=self.stream)
        text.on_update(lambda _: self.type(text=text.value))
        negatives.on_update(lambda _: self.type(negatives=negatives.value))
        stream.on_update(lambda _: self.edit(stream=stream.value))

        def kind_changed(_) -> None:
            self.edit(kind=kind.value)
            negatives.value = self.negatives

        kind.on_update(kind_changed)
        viewer.control_panel._time.gui_handle.on_update(lambda _: self.rerender())  # nerfstudio's own request may be dropped
        cameras = viewer.pipeline.datamanager.train_dataset.cameras
        viewer.viser_server.on_client_connect(lambda client: open_at(client, cameras[0:1]))


def open_at(client: viser.ClientHandle, camera: Cameras) -> None:
    """Moves a newly connected browser to a training camera, once its own camera has reported in
    (its pose cannot be set before)."""
    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

    c2w = camera.camera_to_worlds[0].double().cpu().numpy()
    fov = 2 * math.atan(float(camera.cy[0]) / float(camera.fy[0]))
    moved = threading.Event()

    @client.camera.on_update
    def _(_: viser.CameraHandle) -> None:
        if moved.is_set():
            return
        moved.set()
        with client.atomic():
            client.camera.position = c2w[:3, 3] * VISER_NERFSTUDIO_SCALE_RATIO
            client.camera.wxyz = (vtf.SO3.from_matrix(c2w[:3, :3]) @ vtf.SO3.from_x_radians(math.pi)).wxyz
            client.camera.fov = fov
