"""`divff-export`: nerfstudio's ns-export (pointcloud, poisson, tsdf) for one stream of a divff run,
at one frame, optionally coloured by the relevancy of a text query.

    divff-export pointcloud --load-config CFG --output-dir exports/kitchen            # static stream
    divff-export pointcloud --load-config CFG --stream objects --frame-id 140 --output-dir exports/objects_140
    divff-export pointcloud --load-config CFG --query "red cube" --output-dir exports/red_cube

The static stream is the kitchen without the moving objects and the hands (each stream is rendered
alone: `rgb_<stream>`, `depth_<stream>`, and ns-export keeps the rays whose `opacity_<stream>` is
above 0.5). Objects and actor need a frame: every ray is rendered at that frame's time, and the actor
in that frame's camera, so they land where they were at that frame. Plain `ns-export pointcloud
--rgb-output-name rgb_static --depth-output-name depth_static --normal-method open3d` works too.
As in divff-render, the options are applied to the model right after ns-export's commands load it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

import tyro
from nerfstudio.scripts import exporter as ns_export
from nerfstudio.utils import colormaps
from typing_extensions import Annotated

from divff_nerfstudio.commands.cli import run_command
from divff_nerfstudio.commands.render import QueryOptions
from divff_nerfstudio.data.frame_time import FrameTimeError, FrameTimeOptions, VideoFrames
from divff_nerfstudio.utils.errors import UserError


class ExportError(UserError, RuntimeError):
    """An export that cannot give what was asked (e.g. a stream empty at the chosen frame)."""


@dataclass
class StreamOptions(QueryOptions, FrameTimeOptions):
    """Which stream, at which frame, coloured how."""

    stream: Literal["static", "objects", "actor", "composite"] = "static"
    """Stream to export (its colour, depth and opacity); composite: the whole scene as at the frame."""
    max_ray_batches: int = 200
    """Give up (with an error) after this many batches of rays if the stream still has too few points."""

    def output_names(self) -> tuple:
        """(rgb, depth) outputs ns-export reads: the stream alone; with --query, colours of the
        `relevancy` output (the --query-stream's map) in place of the stream's colour."""
        suffix = "" if self.stream == "composite" else f"_{self.stream}"
        rgb = f"relevancy_rgb{suffix}" if self.query is not None else f"rgb{suffix}"
        return rgb, f"depth{suffix}"

    def set_up(self, pipeline) -> None:
        model = pipeline.model
        super().set_up(pipeline)
        model.frame.time = self.resolve(pipeline)
        if self.stream in ("objects", "actor") and model.frame.time is None:
            raise FrameTimeError(f"--stream {self.stream} moves: give the frame to export with --frame-id (or --time)")
        if self.stream == "actor":
            frames = VideoFrames.from_pipeline(pipeline)
            frame_id = self.frame_id if self.frame_id is not None else frames.frame_at(model.frame.time)
            model.frame.actor_camera = frames.cameras.camera_to_worlds[frames.position(frame_id)]
        if self.query is not None:
            self._colour_by_relevancy(model)
        self._limit_batches(pipeline)

    def _colour_by_relevancy(self, model) -> None:
        """Adds `relevancy_rgb<_stream>` (turbo colours of `relevancy`) to the model's outputs; named
        for the exported stream, so ns-export keeps the points by that stream's opacity."""
        get_outputs = model.get_outputs
        name, _ = self.output_names()

        def with_relevancy(ray_bundle):
            outputs = get_outputs(ray_bundle)
            maps = model.queries.relevancy(outputs, model.language)
            outputs[name] = colormaps.apply_colormap(maps["relevancy"], colormaps.ColormapOptions(colormap="turbo"))
            return outputs

        model.get_outputs = with_relevancy

    def _limit_batches(self, pipeline) -> None:
        """ns-export's point cloud draws training rays until it has enough opaque points; a stream
        that is empty at the frame would never get there."""
        next_train = pipeline.datamanager.next_train
        calls = [0]

        def counted(step: int):
            calls[0] += 1
            if calls[0] > self.max_ray_batches:
                raise ExportError(
                    f"{self.max_ray_batches} batches of rays found too few points of the {self.stream} stream"
                    + (f" at time {pipeline.model.frame.time:.3f}" if pipeline.model.frame.time is not None else "")
                    + ": lower --num-points, raise --max-ray-batches, or check the stream holds anything there"
                )
            return next_train(step)

        pipeline.datamanager.next_train = counted


def _for_streams(command: type) -> type:
    """An ns-export command with StreamOptions; normals from open3d (divff predicts none)."""

    @dataclass
    class WithStream(StreamOptions, command):
        rgb_output_name: str = "rgb_static"
        """Name of the RGB output (set from --stream unless given)."""
        depth_output_name: str = "depth_static"
        """Name of the depth output (set from --stream unless given)."""
        if hasattr(command, "normal_method"):
            normal_method: Literal["open3d", "model_output"] = "open3d"
            """Method to estimate normals with (divff predicts no normals: open3d)."""
        if hasattr(command, "texture_method"):
            texture_method: Literal["point_cloud", "nerf"] = "point_cloud"
            """Texture from the exported points' colours (nerf: from nerfstudio's composite `rgb`, all streams)."""

        def main(self) -> None:
            if self.rgb_output_name == "rgb_static" and self.depth_output_name == "depth_static":
                self.rgb_output_name, self.depth_output_name = self.output_names()
            with self.applied(ns_export):
                super().main()

    WithStream.__name__ = WithStream.__qualname__ = command.__name__
    WithStream.__doc__ = (
        f"{command.__doc__.strip()} One divff stream (--stream) at one frame (--frame-id); --query colours it by relevancy."
    )
    return WithStream


Commands = tyro.conf.FlagConversionOff[
    Union[
        Annotated[_for_streams(ns_export.ExportPointCloud), tyro.conf.subcommand(name="pointcloud")],
        Annotated[_for_streams(ns_export.ExportPoissonMesh), tyro.conf.subcommand(name="poisson")],
        Annotated[_for_streams(ns_export.ExportTSDFMesh), tyro.conf.subcommand(name="tsdf")],
    ]
]


def entrypoint() -> None:
    run_command(lambda: tyro.cli(Commands).main())
