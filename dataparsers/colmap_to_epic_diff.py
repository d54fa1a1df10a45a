"""Convert a COLMAP model (images/ + sparse/0, text or binary) into an EPIC-Diff scene folder.

What NeuralDiff's converter got wrong and this one does not: frames go to frames/ (the folder the
loader reads), the default split has test and val frames, fx and fy stay separate, and a distorted
camera (SIMPLE_RADIAL, RADIAL, OPENCV) is undistorted to a pinhole instead of being treated as one.
Frames are written under their own names, so annotations made for them carry over by file name.
The scene is built in a temporary folder and moved into place, never left half-written.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
from nerfstudio.utils.rich_utils import CONSOLE

from dataparsers.colmap_model import (
    ColmapImportError,
    Undistorter,
    intrinsics,
    near_far_per_image,
    opengl_camera_to_world,
    pinhole_of,
    read_model,
    registered_images,
    the_camera,
)
from dataparsers.epic_diff_scene import staged_folder
from dataparsers.own_video import frame_ids, frames_on_disk, held_out_splits, report_unposed


@dataclass
class ColmapConversion:
    """What to convert and how. Every field is a flag of divff-colmap-import."""

    images: Path
    """Folder of the images COLMAP was run on (the whole video: frames it could not pose are reported)."""
    model: Path
    """COLMAP model folder (e.g. sparse/0): cameras, images, points3D as .bin or .txt."""
    out: Path
    """EPIC-Diff scene folder to create (meta.json + frames/)."""
    downscale: int = 1
    """Write frames this many times smaller (K scaled to match)."""
    holdout_every: int = 10
    """One test and one val frame in every this many video frames (by position in images/)."""
    overwrite: bool = False
    """Replace OUT if it already holds files."""


def convert(cfg: ColmapConversion) -> Dict[str, object]:
    """Write the scene; returns its meta.json content."""
    if cfg.downscale < 1:
        raise ValueError(f"--downscale must be at least 1, got {cfg.downscale}")
    with staged_folder(Path(cfg.out), cfg.overwrite) as tmp:
        meta = _convert_into(tmp, cfg)
    CONSOLE.print(
        f"wrote {cfg.out}: {len(meta['ids_all'])}/{len(meta['ids_all']) + len(meta['unregistered'])} frames posed, "
        f"{len(meta['ids_test'])} test, {len(meta['ids_val'])} val"
    )
    return meta


def _convert_into(out: Path, cfg: ColmapConversion) -> Dict[str, object]:
    if not Path(cfg.images).is_dir():
        raise ColmapImportError(Path(cfg.images), "images folder not found")
    rec = read_model(cfg.model)
    posed = registered_images(rec)
    for name in posed:
        if not (cfg.images / name).is_file():
            raise ColmapImportError(cfg.images / name, f"image is registered in the COLMAP model {cfg.model} but the file is missing")
    video = sorted(set(frames_on_disk(cfg.images)) | set(posed))
    unposed = [n for n in video if n not in posed]
    report_unposed(unposed, cfg.images)
    ids_of = frame_ids(video, cfg.images)
    names = sorted(posed, key=ids_of.get)
    ids = [ids_of[n] for n in names]

    camera = the_camera(rec)
    pinhole = pinhole_of(camera)
    undistort = Undistorter(camera, pinhole) if pinhole is not camera else None
    size = (round(pinhole.width / cfg.downscale), round(pinhole.height / cfg.downscale))
    K = intrinsics(pinhole)
    K[0] *= size[0] / pinhole.width
    K[1] *= size[1] / pinhole.height
    bounds, thin = near_far_per_image(rec, [posed[n] for n in names], cfg.model)
    if thin:
        CONSOLE.print(f"[yellow]{cfg.model}: {len(thin)} frame(s) see too few points; near/far of the whole scene used for them")
    splits = held_out_splits(list(ids_of.values()), ids, cfg.holdout_every)
    (out / "frames").mkdir()
    for name in names:
        _write_frame(cfg.images / name, out / "frames" / name, (camera.width, camera.height), size, undistort)
    meta = {
        "ids_all": ids,
        "ids_train": splits["train"],
        "ids_val": splits["val"],
        "ids_test": splits["test"],
        "images": {str(i): n for i, n in zip(ids, names)},
        "poses": {str(i): opengl_camera_to_world(posed[n]).tolist() for i, n in zip(ids, names)},
        "nears": {str(i): bounds[n][0] for i, n in zip(ids, names)},
        "fars": {str(i): bounds[n][1] for i, n in zip(ids, names)},
        "intrinsics": K.tolist(),
        "image_w": size[0],
        "image_h": size[1],
        "camera": {"model": camera.model.name, "width": camera.width, "height": camera.height, "params": camera.params.tolist()},
        "unregistered": unposed,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def _write_frame(src: Path, dst: Path, source_size, size, undistort) -> None:
    """Copy, or undistort and/or downscale, one frame (same file name and format)."""
    if undistort is None and size == source_size:
        shutil.copy2(src, dst)
        return
    image = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ColmapImportError(src, "image cannot be read")
    if (image.shape[1], image.shape[0]) != tuple(source_size):
        raise ColmapImportError(
            src, f"image is {image.shape[1]}x{image.shape[0]} but the COLMAP camera is {source_size[0]}x{source_size[1]}"
        )
    if undistort is not None:
        image = undistort(image)
    if (image.shape[1], image.shape[0]) != tuple(size):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(dst), np.ascontiguousarray(image)):
        raise ColmapImportError(dst, "frame could not be written")
