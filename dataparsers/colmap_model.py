"""A COLMAP model read the way EPIC-Diff needs it: one pinhole camera, OpenGL camera-to-world
poses and per-frame near/far from the points each frame sees.

Shared by divff-colmap-import (a COLMAP model -> an EPIC-Diff folder) and the
epic-diff dataparser's own-video mode (near/far of ns-process-data's colmap/sparse/0). NeuralDiff's
converter assumed fx == fy and a distortion-free camera; here fx and fy stay separate and a
distorted camera is undistorted to the pinhole COLMAP itself would choose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import pycolmap

from dataparsers.epic_diff_scene import EpicDiffFormatError

MODEL_FILES = ("cameras", "images", "points3D")
PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
SUPPORTED_MODELS = PINHOLE_MODELS + ("SIMPLE_RADIAL", "RADIAL", "OPENCV")
DEPTH_QUANTILES = (0.001, 0.999)
"""near/far = these quantiles of the z-depths of the points a frame sees (NeuralDiff: 0.1 / 99.9 %)."""


class ColmapImportError(EpicDiffFormatError):
    """A COLMAP model (or its images) that cannot become an EPIC-Diff scene."""


def read_model(model_dir: Path) -> pycolmap.Reconstruction:
    """The reconstruction in model_dir (text or binary), checked to hold registered images that all
    share one camera of a supported model."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ColmapImportError(model_dir, "COLMAP model folder not found (expected e.g. sparse/0 with cameras, images, points3D)")
    for ext in (".bin", ".txt"):
        if all((model_dir / f"{name}{ext}").is_file() for name in MODEL_FILES):
            break
    else:
        found = sorted(p.name for p in model_dir.iterdir())
        raise ColmapImportError(
            model_dir, f"no COLMAP model here: needs cameras, images and points3D as .bin or .txt, found {found or 'nothing'}"
        )
    try:
        rec = pycolmap.Reconstruction(model_dir)
    except Exception as err:  # pycolmap raises plain RuntimeErrors/ValueErrors for unreadable files
        raise ColmapImportError(model_dir, f"COLMAP model cannot be read ({err})") from err
    registered = [image for image in rec.images.values() if image.has_pose]
    if not registered:
        raise ColmapImportError(model_dir / f"images{ext}", "no registered images: COLMAP found no camera poses")
    camera_ids = sorted({image.camera_id for image in registered})
    if len(camera_ids) > 1:
        raise ColmapImportError(
            model_dir / f"cameras{ext}",
            f"registered images use {len(camera_ids)} cameras (ids {camera_ids}); EPIC-Diff has one camera for all "
            "frames (run COLMAP with --ImageReader.single_camera 1, as ns-process-data does)",
        )
    model = rec.cameras[camera_ids[0]].model.name
    if model not in SUPPORTED_MODELS:
        raise ColmapImportError(model_dir / f"cameras{ext}", f"camera model {model} is not supported ({', '.join(SUPPORTED_MODELS)})")
    return rec


def registered_images(rec: pycolmap.Reconstruction) -> Dict[str, pycolmap.Image]:
    """Registered images by name."""
    return {image.name: image for image in rec.images.values() if image.has_pose}


def the_camera(rec: pycolmap.Reconstruction) -> pycolmap.Camera:
    """The one camera of a model checked by read_model."""
    return rec.cameras[next(iter(registered_images(rec).values())).camera_id]


def opengl_camera_to_world(image: pycolmap.Image) -> np.ndarray:
    """3x4 camera-to-world in the OpenGL convention (x right, y up, looking down -z): COLMAP's
    world-to-camera inverted, with its y and z axes negated."""
    c2w = image.cam_from_world().inverse().matrix()
    c2w[:, 1:3] *= -1
    return c2w


def depth_bounds(depths: np.ndarray) -> Optional[Tuple[float, float]]:
    """(near, far) from the depth quantiles; None without two points in front of the camera."""
    depths = depths[depths > 0]
    if len(depths) < 2:
        return None
    near, far = np.quantile(depths, DEPTH_QUANTILES)
    return float(near), float(far)


def seen_depths(rec: pycolmap.Reconstruction, image: pycolmap.Image) -> np.ndarray:
    """z-depths, in the image's camera, of the 3D points it observes (its track, not mere visibility)."""
    ids = [p.point3D_id for p in image.points2D if p.has_point3D()]
    if not ids:
        return np.zeros(0)
    xyz = np.stack([rec.points3D[i].xyz for i in ids])
    cam_from_world = image.cam_from_world().matrix()
    return xyz @ cam_from_world[2, :3] + cam_from_world[2, 3]


def near_far_per_image(
    rec: pycolmap.Reconstruction, images: List[pycolmap.Image], model_dir: Path
) -> Tuple[Dict[str, Tuple[float, float]], List[str]]:
    """(near, far) per image name; frames that see fewer than two points get the bounds of all
    frames' depths pooled, and are returned as the second value so callers can report them."""
    depths = {image.name: seen_depths(rec, image) for image in images}
    pooled = depth_bounds(np.concatenate(list(depths.values())))
    if pooled is None:
        raise ColmapImportError(model_dir, "the model has no 3D points in front of its cameras: near/far cannot be set")
    bounds, fallback = {}, []
    for name, d in depths.items():
        own = depth_bounds(d)
        if own is None or own[0] >= own[1]:
            fallback.append(name)
        bounds[name] = own if own is not None and own[0] < own[1] else pooled
    return bounds, fallback


def pinhole_of(camera: pycolmap.Camera) -> pycolmap.Camera:
    """The camera itself when it has no distortion, else COLMAP's undistorted pinhole for it (same
    size, focal lengths and principal point chosen so no blank pixels show)."""
    if camera.model.name in PINHOLE_MODELS or not np.any(camera.params[camera.extra_params_idxs()]):
        return camera
    options = pycolmap.UndistortCameraOptions()
    options.blank_pixels = 0.0
    return pycolmap.undistort_camera(options, camera)


def intrinsics(camera: pycolmap.Camera) -> np.ndarray:
    """3x3 K of a pinhole camera, fx and fy kept separate (SIMPLE_PINHOLE: fx = fy = f)."""
    return np.array(
        [
            [camera.focal_length_x, 0.0, camera.principal_point_x],
            [0.0, camera.focal_length_y, camera.principal_point_y],
            [0.0, 0.0, 1.0],
        ]
    )


class Undistorter:
    """Resamples images of a distorted camera onto its pinhole: for every pinhole pixel centre, the
    source pixel its ray came through (COLMAP's pixel coordinates put centres at +0.5, OpenCV's at
    integers, hence the shifts)."""

    def __init__(self, source: pycolmap.Camera, target: pycolmap.Camera):
        u, v = np.meshgrid(np.arange(target.width) + 0.5, np.arange(target.height) + 0.5)
        rays = target.cam_from_img(np.stack([u.ravel(), v.ravel()], axis=1))
        rays = np.concatenate([rays, np.ones((len(rays), 1))], axis=1)
        src = source.img_from_cam(rays, check_cheirality=False) - 0.5
        shape = (target.height, target.width)
        self.map_x = src[:, 0].reshape(shape).astype(np.float32)
        self.map_y = src[:, 1].reshape(shape).astype(np.float32)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return cv2.remap(image, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
