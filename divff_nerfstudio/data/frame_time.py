"""Time in renders and exports: which frame of the video a render shows.

The object and actor streams read a temporal code of t = frame index / (N - 1), where the frame
index is the position of the frame id in meta.json's `ids_all` (the dataparser sets
`Cameras.times` that way). Users think in frame ids (the numbers in the frame file names), so the
commands take `--frame-id` (or a raw `--time`) and map it here; `VideoFrames` also holds the camera
of every frame of the video, whatever its split, for fixed-viewpoint time-lapses and the summary video.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.pipelines.base_pipeline import Pipeline


class FrameTimeError(ValueError):
    """A frame id or time that the loaded scene does not have."""


@dataclass
class VideoFrames:
    """Every frame of the scene's video, in order: ids (meta.json's ids_all), cameras with their
    times and image files."""

    ids: List[int]
    cameras: Cameras
    image_filenames: List[Path]
    meta_path: Path

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline) -> "VideoFrames":
        """Collected from the train, val and test splits of the run's epic-diff dataparser."""
        dataparser = getattr(pipeline.datamanager, "dataparser", None)
        scene = getattr(dataparser, "scene", None)
        if scene is None:
            raise FrameTimeError(
                f"frame ids need the epic-diff dataparser (meta.json's ids_all); this run uses {type(dataparser).__name__}"
            )
        by_id: Dict[int, tuple] = {}
        for split in ("train", "val", "test"):
            outputs = dataparser.get_dataparser_outputs(split)
            for k, frame_id in enumerate(outputs.metadata["frame_ids"]):
                by_id.setdefault(frame_id, (outputs.cameras[k : k + 1], outputs.image_filenames[k]))
        ids = [i for i in scene.ids_all if i in by_id]
        cameras = [by_id[i][0] for i in ids]
        stacked = Cameras(
            camera_to_worlds=torch.cat([c.camera_to_worlds for c in cameras]),
            fx=torch.cat([c.fx for c in cameras]),
            fy=torch.cat([c.fy for c in cameras]),
            cx=torch.cat([c.cx for c in cameras]),
            cy=torch.cat([c.cy for c in cameras]),
            width=torch.cat([c.width for c in cameras]),
            height=torch.cat([c.height for c in cameras]),
            camera_type=torch.cat([c.camera_type for c in cameras]),
            times=torch.tensor([[scene.time_of(i)] for i in ids]),
        )
        return cls(ids, stacked, [Path(by_id[i][1]) for i in ids], scene.meta_path)

    def position(self, frame_id: int) -> int:
        """Index of a frame id in `ids` (FrameTimeError naming meta.json if the scene lacks it)."""
        if frame_id not in self.ids:
            raise FrameTimeError(f"{self.meta_path}: frame id {frame_id} is not in ids_all ({self.ids[0]} ... {self.ids[-1]})")
        return self.ids.index(frame_id)

    def time_of(self, frame_id: int) -> float:
        return float(self.cameras.times[self.position(frame_id), 0])

    def frame_at(self, time: float) -> int:
        """The frame id whose time is nearest to `time`."""
        return self.ids[int(torch.argmin((self.cameras.times[:, 0] - time).abs()))]


@dataclass
class FrameTimeOptions:
    """Freeze time at one frame for a whole render or export."""

    frame_id: Optional[int] = None
    """Render every camera at this frame (an id of meta.json's ids_all, as in the frame file names)."""
    time: Optional[float] = None
    """Or at this time in [0, 1] (frame index / (number of frames - 1))."""

    def resolve(self, pipeline: Pipeline) -> Optional[float]:
        """The time to freeze at, or None when neither option is given."""
        if self.frame_id is not None and self.time is not None:
            raise FrameTimeError("give --frame-id or --time, not both")
        if self.time is not None:
            if not 0.0 <= self.time <= 1.0:
                raise FrameTimeError(f"--time must lie in [0, 1] (frame index / (N - 1)), got {self.time}")
            return float(self.time)
        if self.frame_id is not None:
            return VideoFrames.from_pipeline(pipeline).time_of(self.frame_id)
        return None


def fixed_viewpoint(frames: VideoFrames, frame_id: int) -> Cameras:
    """The camera of one frame, repeated once per frame of the video with that frame's time: the
    scene from a fixed viewpoint as time runs (the actor is seen as from that head pose)."""
    still = frames.cameras[torch.full((len(frames.ids),), frames.position(frame_id), dtype=torch.long)]
    still.times = frames.cameras.times.clone()
    return still
