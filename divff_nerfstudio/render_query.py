"""`divff-render`: nerfstudio's ns-render (camera-path, interpolate, spiral, dataset) plus a text
query given on the command line, whose relevancy maps become renderable outputs.

    divff-render interpolate --load-config CFG --query "red cube" \
        --rendered-output-names rgb relevancy relevancy_objects --output-path renders/red_cube.mp4

ns-render's commands load the pipeline inside their `main`; the query is set on the model right
after that load (the commands' `eval_setup` is wrapped while they run), everything else is
nerfstudio's own rendering.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple, Union

import tyro
from typing_extensions import Annotated

from nerfstudio.scripts import render as ns_render


@dataclass
class QueryOptions:
    query: Optional[str] = None
    """Text to look for; adds outputs relevancy, relevancy_composite, relevancy_static, ..._objects, ..._actor."""
    negatives: Tuple[str, ...] = ()
    """Negative phrases (default: object, things, stuff, texture; for video: general task, background, ...)."""
    query_kind: str = "clip"
    """clip (things) or video (actions, affordances)."""
    query_stream: str = "composite"
    """Stream whose map is the `relevancy` output: composite, static, objects or actor."""

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        if self.query is None:
            yield
            return
        load = ns_render.eval_setup

        def load_and_query(*args, **kwargs):
            config, pipeline, checkpoint, step = load(*args, **kwargs)
            pipeline.model.set_query(self.query, self.negatives, self.query_kind, self.query_stream)
            return config, pipeline, checkpoint, step

        ns_render.eval_setup = load_and_query
        try:
            yield
        finally:
            ns_render.eval_setup = load


def _with_query(command: type) -> type:
    @dataclass
    class WithQuery(QueryOptions, command):
        def main(self) -> None:
            with self.applied():
                super().main()

    WithQuery.__name__ = WithQuery.__qualname__ = command.__name__
    WithQuery.__doc__ = command.__doc__
    return WithQuery


Commands = tyro.conf.FlagConversionOff[
    Union[
        Annotated[_with_query(ns_render.RenderCameraPath), tyro.conf.subcommand(name="camera-path")],
        Annotated[_with_query(ns_render.RenderInterpolated), tyro.conf.subcommand(name="interpolate")],
        Annotated[_with_query(ns_render.SpiralRender), tyro.conf.subcommand(name="spiral")],
        Annotated[_with_query(ns_render.DatasetRender), tyro.conf.subcommand(name="dataset")],
    ]
]


def entrypoint() -> None:
    tyro.cli(Commands).main()
