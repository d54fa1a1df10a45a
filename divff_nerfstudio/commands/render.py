"""`divff-render`: nerfstudio's ns-render (camera-path, interpolate, spiral, dataset) plus a text
query given on the command line, whose relevancy maps become renderable outputs, time frozen at a
frame (`--frame-id` / `--time`), and `time-lapse`: one camera held still while time runs.

    divff-render interpolate --load-config CFG --query "red cube" \
        --rendered-output-names rgb relevancy relevancy_objects --output-path renders/red_cube.mp4
    divff-render interpolate --load-config CFG --frame-id 140 --rendered-output-names rgb rgb_objects
    divff-render time-lapse --load-config CFG --viewpoint-frame-id 140 --rendered-output-names rgb rgb_static

ns-render's commands load the pipeline inside their `main`; query and time are set on the model
right after that load (the commands' `eval_setup` is wrapped while they run), everything else is
nerfstudio's own rendering. Camera-path JSON files keep their per-camera `render_time` (written by
the viewer's render panel), which nerfstudio hands to `Cameras.times`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import ModuleType
from typing import Iterator, Literal, Optional, Tuple, Union

import tyro
from nerfstudio.scripts import render as ns_render
from typing_extensions import Annotated

from divff_nerfstudio.commands.cli import run_command
from divff_nerfstudio.data.frame_time import FrameTimeOptions, VideoFrames, fixed_viewpoint
from divff_nerfstudio.model.queries import QueryError


@dataclass
class QueryOptions:
    query: Optional[str] = None
    """Text to look for; adds outputs relevancy, relevancy_composite, relevancy_static, ..._objects, ..._actor."""
    negatives: Tuple[str, ...] = ()
    """Negative phrases (default: object, things, stuff, hands, less any that names the query; for video: general task, background, ...)."""
    query_kind: str = "clip"
    """clip (things) or video (actions, affordances)."""
    query_stream: str = "composite"
    """Stream whose map is the `relevancy` output: composite, static, objects or actor."""

    def set_up(self, pipeline) -> None:
        """What to do to the model once loaded: set the query, if any."""
        if self.query is not None:
            queries = pipeline.model.queries
            if queries is None:
                raise QueryError("this model has no language heads (trained as divff-geometry): --query cannot be asked")
            queries.set(self.query, self.negatives, self.query_kind, self.query_stream)

    @contextlib.contextmanager
    def applied(self, command_module: ModuleType = ns_render) -> Iterator[None]:
        """While active, the command module's `eval_setup` also runs `set_up` on the pipeline."""
        load = command_module.eval_setup

        def load_and_set_up(*args, **kwargs):
            config, pipeline, checkpoint, step = load(*args, **kwargs)
            self.set_up(pipeline)
            return config, pipeline, checkpoint, step

        command_module.eval_setup = load_and_set_up
        try:
            yield
        finally:
            command_module.eval_setup = load


@dataclass
class QueryAndTimeOptions(QueryOptions, FrameTimeOptions):
    def set_up(self, pipeline) -> None:
        """Query, and the frozen time of every camera (None: each camera's own time, 0 if none)."""
        super().set_up(pipeline)
        pipeline.model.frame.time = self.resolve(pipeline)


def _with_options(command: type, options: type = QueryAndTimeOptions) -> type:
    @dataclass
    class WithOptions(options, command):
        def main(self) -> None:
            with self.applied():
                super().main()

    WithOptions.__name__ = WithOptions.__qualname__ = command.__name__
    WithOptions.__doc__ = command.__doc__
    return WithOptions


@dataclass
class RenderTimeLapse(ns_render.BaseRender):
    """Hold one camera still while time runs over every frame of the video (NeuralDiff's
    fixed-viewpoint video): the objects move, the static stream stays put."""

    viewpoint_frame_id: Optional[int] = None
    """Camera of this frame (an id of meta.json's ids_all); default: the middle frame of the video."""
    frame_rate: int = 8
    """Frames per second of the video (one video frame per frame of the scene)."""
    output_format: Literal["images", "video"] = "video"
    """How to save output data."""

    def main(self) -> None:
        _, pipeline, _, _ = ns_render.eval_setup(
            self.load_config, eval_num_rays_per_chunk=self.eval_num_rays_per_chunk, test_mode="test"
        )
        frames = VideoFrames.from_pipeline(pipeline)
        viewpoint = self.viewpoint_frame_id if self.viewpoint_frame_id is not None else frames.ids[len(frames.ids) // 2]
        cameras = fixed_viewpoint(frames, viewpoint)
        if self.output_format == "video" and self.output_path.suffix == "":
            self.output_path = self.output_path.with_suffix(".mp4")
        ns_render._render_trajectory_video(
            pipeline,
            cameras,
            output_filename=self.output_path,
            rendered_output_names=self.rendered_output_names,
            rendered_resolution_scaling_factor=1.0 / self.downscale_factor,
            seconds=len(cameras) / self.frame_rate,
            output_format=self.output_format,
            image_format=self.image_format,
            jpeg_quality=self.jpeg_quality,
            depth_near_plane=self.depth_near_plane,
            depth_far_plane=self.depth_far_plane,
            colormap_options=self.colormap_options,
        )


Commands = tyro.conf.FlagConversionOff[
    Union[
        Annotated[_with_options(ns_render.RenderCameraPath), tyro.conf.subcommand(name="camera-path")],
        Annotated[_with_options(ns_render.RenderInterpolated), tyro.conf.subcommand(name="interpolate")],
        Annotated[_with_options(ns_render.SpiralRender), tyro.conf.subcommand(name="spiral")],
        Annotated[_with_options(ns_render.DatasetRender), tyro.conf.subcommand(name="dataset")],
        Annotated[_with_options(RenderTimeLapse, QueryOptions), tyro.conf.subcommand(name="time-lapse")],
    ]
]


def entrypoint() -> None:
    run_command(lambda: tyro.cli(Commands).main())
