"""`divff-score-export`: score a point cloud exported from a generated scene against the generator's ground truth.

Prints the fraction of points inside (and within --margin of) the moving objects at any frame of the
video (a static-stream export should have almost none), at --frame-id, and, per object, near where it
was at --frame-id and at --compare-frame-id (an object export at a frame should sit at the first).
Export with --save-world-frame True, so the points are in the scene's frame.

    divff-export pointcloud --load-config CFG --save-world-frame True --output-dir exports/static
    divff-score-export --scene data/EPIC-Diff/SYN_00 --point-cloud exports/static/point_cloud.ply --frame-id 140
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.table import Table

from divff_nerfstudio.commands.cli import run_command
from divff_nerfstudio.synthetic.truth import SceneTruth, contains


@dataclass
class ScoreExport:
    scene: Path
    """Generated scene folder (holds gt/scene.json)."""
    point_cloud: Path
    """point_cloud.ply written by divff-export / ns-export with --save-world-frame True."""
    frame_id: Optional[int] = None
    """Frame the export shows (objects / composite exports); default: the first frame."""
    compare_frame_id: Optional[int] = None
    """Another frame, to see that the points follow the objects; default: the last frame."""
    margin: float = 0.02
    """Distance (scene units, metres for generated scenes) that still counts as on an object."""

    def main(self) -> None:
        import open3d as o3d

        if not self.point_cloud.is_file():
            raise FileNotFoundError(f"{self.point_cloud} does not exist")
        points = np.asarray(o3d.io.read_point_cloud(str(self.point_cloud)).points)
        if len(points) == 0:
            raise ValueError(f"{self.point_cloud} holds no points")
        truth = SceneTruth(self.scene)
        frame = self.frame_id if self.frame_id is not None else truth.ids[0]
        other = self.compare_frame_id if self.compare_frame_id is not None else truth.ids[-1]
        table = Table(title=f"{self.point_cloud} ({len(points)} points)")
        table.add_column("where")
        table.add_column("fraction of points")
        table.add_row("inside an object at any frame", f"{truth.inside_at_any_frame(points).mean():.4f}")
        table.add_row(f"inside an object at frame {frame}", f"{truth.inside(points, frame).mean():.4f}")
        table.add_row(f"within {self.margin} of an object at frame {frame}", f"{truth.inside(points, frame, self.margin).mean():.4f}")
        table.add_row(f"within {self.margin} of an object at frame {other}", f"{truth.inside(points, other, self.margin).mean():.4f}")
        for label, now, then in zip(truth.labels.values(), truth.shapes(frame), truth.shapes(other)):
            table.add_row(
                f"within {self.margin} of the {label}: at frame {frame} | at frame {other}",
                f"{contains(now, points, self.margin).mean():.4f} | {contains(then, points, self.margin).mean():.4f}",
            )
        CONSOLE.print(table)


def entrypoint() -> None:
    run_command(lambda: tyro.cli(ScoreExport).main())


if __name__ == "__main__":
    entrypoint()
