"""Own videos: the frames of one video, ordered and split, and nerfstudio's `ns-process-data`
output (transforms.json + images/ + colmap/sparse/0) read as an EPIC-Diff scene.

A frame's id is the number in its file name (ns-process-data writes frame_00001.png, ... in video
order; EPIC-Diff names frames by video frame number), so ids give the temporal order the object and
actor streams need. Held-out frames are picked by position in the whole video, registered or not,
so a frame COLMAP could not pose does not shift the split: test at positions 4, 14, 24, ... and val
at 9, 19, 29, ... (every 10th, as the scene generator splits). Frames on disk that have no pose are
reported by name, never dropped silently.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import pycolmap
from nerfstudio.utils.rich_utils import CONSOLE

from dataparsers.colmap_model import near_far_per_image, read_model, registered_images
from dataparsers.epic_diff_scene import (
    EpicDiffFormatError,
    EpicDiffScene,
    check_frames_exist,
    check_number,
    check_poses,
    read_json,
    scale_intrinsics,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TRANSFORMS = "transforms.json"
MODELS = Path("colmap/sparse")
"""Where ns-process-data leaves COLMAP's models (one folder per model), relative to its output."""
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
"""nerfstudio's distortion parameters, in the order of `camera_utils.get_distortion_params`."""
_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def frame_ids(names: Iterable[str], source: Path) -> Dict[str, int]:
    """Frame id per file name: the last number in the name (frame_00012.png -> 12)."""
    ids: Dict[str, int] = {}
    taken: Dict[int, str] = {}
    for name in names:
        match = _NUMBER.search(Path(name).stem)
        if match is None:
            raise EpicDiffFormatError(source, f"frame {name!r} has no number in its name to order the video by")
        frame_id = int(match.group(1))
        if frame_id in taken:
            raise EpicDiffFormatError(source, f"frames {taken[frame_id]!r} and {name!r} have the same number", frame_id)
        ids[name], taken[frame_id] = frame_id, name
    return ids


def held_out_splits(video_ids: List[int], posed_ids: List[int], every: int = 10) -> Dict[str, List[int]]:
    """train / val / test ids among the posed frames, chosen by position in the whole video."""
    if every < 3:
        raise ValueError(f"holdout_every must be at least 3 (one test, one val and some train frames in every group), got {every}")
    position = {frame_id: k for k, frame_id in enumerate(sorted(video_ids))}
    test_at, val_at = every // 2 - 1, every - 1
    splits: Dict[str, List[int]] = {"train": [], "val": [], "test": []}
    for frame_id in sorted(posed_ids):
        slot = position[frame_id] % every
        splits["test" if slot == test_at else "val" if slot == val_at else "train"].append(frame_id)
    return splits


def frames_on_disk(folder: Path) -> List[str]:
    """Image file names in a folder (the whole video, registered or not)."""
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def report_unposed(names: List[str], source: Path) -> None:
    """Say which frames have no pose (COLMAP could not register them)."""
    if names:
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        CONSOLE.print(f"[yellow]{source}: {len(names)} frame(s) have no pose (not registered by COLMAP), left out: {shown}")


def load_transforms_scene(
    root: Path, colmap_model: Optional[Path] = None, every: int = 10, check_frames: bool = True
) -> EpicDiffScene:
    """An ns-process-data folder as an EPIC-Diff scene. Poses come from transforms.json (already
    OpenGL camera-to-world); near/far per frame from the points that frame sees in the COLMAP model
    (`colmap_model` relative to root; None: found under colmap/sparse/), as EPIC-Diff's were made."""
    root = Path(root)
    path = root / TRANSFORMS
    meta = read_json(path)
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise EpicDiffFormatError(path, "'frames' is missing or empty: no posed frames")
    camera = _camera(meta, frames, path)
    by_name = {}
    for k, frame in enumerate(frames):
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise EpicDiffFormatError(path, f"frames[{k}] needs 'file_path' and 'transform_matrix'")
        by_name[Path(frame["file_path"]).name] = frame
    image_dir = root / Path(frames[0]["file_path"]).parent
    video = sorted(set(frames_on_disk(image_dir)) | set(by_name))
    ids_of = frame_ids(video, path)
    report_unposed([n for n in video if n not in by_name], image_dir)
    ids = sorted(ids_of[n] for n in by_name)
    name_of = {ids_of[n]: n for n in by_name}
    poses = check_poses({i: by_name[name_of[i]]["transform_matrix"] for i in ids}, path)
    image_paths = {i: root / by_name[name_of[i]]["file_path"] for i in ids}

    nears, fars = _near_far(root, colmap_model, by_name, ids_of)
    K = np.array([[camera["fl_x"], 0.0, camera["cx"]], [0.0, camera["fl_y"], camera["cy"]], [0.0, 0.0, 1.0]])
    if check_frames:
        image_size = check_frames_exist(image_paths, ids)
    else:
        image_size = (int(camera["w"]), int(camera["h"]))
    K = scale_intrinsics(K, {"image_w": camera["w"], "image_h": camera["h"]}, image_size, path)
    distortion = np.array([float(meta.get(key, 0.0)) for key in DISTORTION_KEYS])
    splits = held_out_splits([ids_of[n] for n in video], ids, every)
    return EpicDiffScene(
        root, ids, splits, image_paths, poses, nears, fars, K, image_size,
        camera={key: meta[key] for key in ("camera_model", "w", "h", "fl_x", "fl_y", "cx", "cy") if key in meta},
        distortion=distortion if distortion.any() else None,
        source=TRANSFORMS,
    )  # fmt: skip


def _camera(meta: dict, frames: list, path: Path) -> dict:
    """The one pinhole (+ OpenCV distortion) camera of transforms.json."""
    per_frame = {key for frame in frames if isinstance(frame, dict) for key in frame if key in ("fl_x", "fl_y", "w", "h")}
    if per_frame:
        raise EpicDiffFormatError(path, "frames carry their own intrinsics (several cameras); EPIC-Diff has one camera for all frames")
    model = meta.get("camera_model", "OPENCV")
    if model != "OPENCV":
        raise EpicDiffFormatError(path, f"camera_model {model!r} is not supported (OPENCV, i.e. a pinhole with optional distortion)")
    camera = {}
    for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
        if key not in meta:
            raise EpicDiffFormatError(path, f"missing camera key '{key}'")
        camera[key] = check_number(meta[key], path, f"'{key}'")
    return camera


def _near_far(root: Path, colmap_model: Optional[Path], by_name: Dict[str, dict], ids_of: Dict[str, int]):
    """Per-frame near/far from the points each frame sees in the COLMAP model transforms.json came
    from (depths do not change under nerfstudio's applied_transform, a rotation)."""
    model_dir, rec = _model_of(root, colmap_model, by_name)
    images = registered_images(rec)
    bounds, fallback = near_far_per_image(rec, [images[n] for n in by_name], model_dir)
    if fallback:
        CONSOLE.print(f"[yellow]{model_dir}: {len(fallback)} frame(s) see too few points; near/far of the whole scene used for them")
    nears = {ids_of[n]: bounds[n][0] for n in by_name}
    fars = {ids_of[n]: bounds[n][1] for n in by_name}
    return nears, fars


def _same_cameras(images: Dict[str, pycolmap.Image], by_name: Dict[str, dict]) -> bool:
    """Whether a model registers every frame of transforms.json at the same place: distances between
    camera centres agree (transforms.json is the model turned by nerfstudio's applied_transform,
    and COLMAP's models of one video differ in scale)."""
    if not all(n in images for n in by_name):
        return False
    model = np.stack([images[n].projection_center() for n in by_name])
    listed = np.stack([np.asarray(frame["transform_matrix"], dtype=np.float64)[:3, 3] for frame in by_name.values()])
    return np.allclose(np.linalg.norm(model - model[0], axis=1), np.linalg.norm(listed - listed[0], axis=1), rtol=1e-4, atol=1e-6)


def _model_of(root: Path, colmap_model: Optional[Path], by_name: Dict[str, dict]) -> Tuple[Path, pycolmap.Reconstruction]:
    """The given model, or the first under colmap/sparse/ that holds the cameras of transforms.json. COLMAP may split a video into several models and ns-process-data always takes
    sparse/0, so a larger sibling is pointed out with the command that uses it."""
    if colmap_model is not None:
        candidates = [root / colmap_model]
    else:
        folder = root / MODELS
        candidates = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        if not candidates:
            raise EpicDiffFormatError(folder, "no COLMAP model folder (ns-process-data writes colmap/sparse/0): near/far come from its points")
    chosen, sizes = None, {}
    for model_dir in candidates:
        rec = read_model(model_dir)
        images = registered_images(rec)
        sizes[model_dir] = len(images)
        if chosen is None and _same_cameras(images, by_name):
            chosen = (model_dir, rec)
    if chosen is None:
        where = candidates[0] if colmap_model is not None else root / MODELS
        raise EpicDiffFormatError(where, f"no COLMAP model here holds the {len(by_name)} cameras of {TRANSFORMS} (same frames, same poses)")
    for model_dir, size in sizes.items():
        if size > len(by_name):
            CONSOLE.print(
                f"[yellow]{model_dir} poses {size} frames but {TRANSFORMS} has {len(by_name)}: COLMAP split the video and "
                f"ns-process-data took sparse/0. To train on the larger model: ns-process-data video --data <video> "
                f"--output-dir {root} --skip-colmap --colmap-model-path {model_dir.relative_to(root)}"
            )
    return chosen
