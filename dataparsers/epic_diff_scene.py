"""Read and check an EPIC-Diff scene folder (meta.json + frames/), independent of nerfstudio.

Every problem is reported as an `EpicDiffFormatError` that names the file, and the frame id where
there is one, so a user can fix the data instead of reading a stack trace. Reading never writes;
`staged_folder` is how the writers (scene generator, COLMAP converter) put a scene in place whole.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

SPLITS = ("train", "val", "test")
REQUIRED_KEYS = ("ids_all", "ids_train", "ids_val", "ids_test", "images", "poses", "nears", "fars", "intrinsics")
PER_FRAME_KEYS = ("images", "poses", "nears", "fars")


class EpicDiffFormatError(ValueError):
    """The scene on disk does not follow the EPIC-Diff format."""

    def __init__(self, path: Path, problem: str, frame_id: Optional[int] = None):
        where = f"{path}" + (f" (frame id {frame_id})" if frame_id is not None else "")
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.frame_id = frame_id


@dataclass
class EpicDiffScene:
    """A checked EPIC-Diff scene. Frame ids are the file's (sparse) ids; `index_of` maps them to the
    dense 0..N-1 index that the per-frame latent codes use (order of `ids_all`, sorted by id)."""

    root: Path
    ids_all: List[int]
    splits: Dict[str, List[int]]
    image_paths: Dict[int, Path]
    poses: Dict[int, np.ndarray]  # camera-to-world 3x4, OpenGL convention
    nears: Dict[int, float]
    fars: Dict[int, float]
    K: np.ndarray  # 3x3, already scaled to the real frame size
    image_size: Tuple[int, int]  # (width, height) read from the frames
    camera: Optional[Dict[str, Any]] = None
    distortion: Optional[np.ndarray] = None  # nerfstudio's (k1, k2, k3, k4, p1, p2); None: a pinhole
    source: str = "meta.json"  # the file the scene was read from (own videos: nerfstudio's transforms.json)
    index_of: Dict[int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index_of = {frame_id: i for i, frame_id in enumerate(self.ids_all)}

    @property
    def meta_path(self) -> Path:
        return self.root / self.source

    @property
    def name(self) -> str:
        return self.root.name

    def time_of(self, frame_id: int) -> float:
        """t of the temporal code, frame index / (N - 1) in [0, 1] (nerfstudio's Cameras.times)."""
        return self.index_of[frame_id] / max(len(self.ids_all) - 1, 1)


@contextmanager
def staged_folder(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary sibling of `out` to write a scene into, renamed to `out` when the block ends
    and removed if it fails: an interrupted writer never leaves a half-written scene behind."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_scene(root: Path, check_frames: bool = True) -> EpicDiffScene:
    """Parse and check meta.json and (by default) the header of every frame image."""
    root = Path(root)
    meta_path = root / "meta.json"
    meta = read_json(meta_path)
    for key in REQUIRED_KEYS:
        if key not in meta:
            raise EpicDiffFormatError(meta_path, f"missing key '{key}' (required: {', '.join(REQUIRED_KEYS)})")

    ids_all = _id_list(meta, "ids_all", meta_path)
    all_set: set = set()
    for frame_id in ids_all:  # one pass: a long video's list is not searched once per id
        if frame_id in all_set:
            raise EpicDiffFormatError(meta_path, "'ids_all' lists this id more than once", frame_id)
        all_set.add(frame_id)
    splits = {}
    for split in SPLITS:
        ids = _id_list(meta, f"ids_{split}", meta_path)
        for frame_id in ids:
            if frame_id not in all_set:
                raise EpicDiffFormatError(meta_path, f"id in 'ids_{split}' is not in 'ids_all'", frame_id)
        splits[split] = sorted(ids)
    if not splits["train"]:
        raise EpicDiffFormatError(meta_path, "'ids_train' is empty: there is nothing to train on")

    per_frame = {key: _id_dict(meta, key, meta_path) for key in PER_FRAME_KEYS}
    for frame_id in ids_all:
        for key in PER_FRAME_KEYS:
            if frame_id not in per_frame[key]:
                raise EpicDiffFormatError(meta_path, f"id is listed in 'ids_all' but missing from '{key}'", frame_id)

    poses = check_poses({i: per_frame["poses"][i] for i in ids_all}, meta_path)
    nears, fars = {}, {}
    for i in ids_all:
        near = check_number(per_frame["nears"][i], meta_path, f"nears['{i}']", i)
        far = check_number(per_frame["fars"][i], meta_path, f"fars['{i}']", i)
        if near < 0:
            raise EpicDiffFormatError(meta_path, f"near is negative ({near})", i)
        if not near < far:
            raise EpicDiffFormatError(meta_path, f"near ({near}) is not smaller than far ({far})", i)
        nears[i], fars[i] = near, far

    image_paths = {}
    frames = root / "frames"
    for i in ids_all:
        name = per_frame["images"][i]
        if not isinstance(name, str) or not name:
            raise EpicDiffFormatError(meta_path, f"images['{i}'] must be a file name, got {name!r}", i)
        image_paths[i] = frames / name

    K_meta = _intrinsics(meta["intrinsics"], meta_path)
    if check_frames:
        image_size = check_frames_exist(image_paths, ids_all)
    else:
        with Image.open(image_paths[ids_all[0]]) as im:
            image_size = im.size
    K = scale_intrinsics(K_meta, meta, image_size, meta_path)
    camera = meta.get("camera")
    return EpicDiffScene(root, sorted(ids_all), splits, image_paths, poses, nears, fars, K, image_size, camera)


def read_json(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise EpicDiffFormatError(path, "not found: an EPIC-Diff scene folder needs a meta.json")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise EpicDiffFormatError(path, f"is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from err
    except UnicodeDecodeError as err:
        raise EpicDiffFormatError(path, "is not a text (UTF-8) file") from err
    if not isinstance(meta, dict):
        raise EpicDiffFormatError(path, f"top level must be a JSON object, got {type(meta).__name__}")
    return meta


def _as_id(value: Any, path: Path, where: str) -> int:
    """Frame ids are integers in meaning; JSON gives them as ints in lists and strings as dict keys."""
    if isinstance(value, bool):
        raise EpicDiffFormatError(path, f"{where}: frame id must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise EpicDiffFormatError(path, f"{where}: frame id must be an integer, got {value!r}")


def _id_list(meta: Dict[str, Any], key: str, path: Path) -> List[int]:
    value = meta[key]
    if not isinstance(value, list):
        raise EpicDiffFormatError(path, f"'{key}' must be a list of frame ids, got {type(value).__name__}")
    return [_as_id(v, path, f"'{key}'") for v in value]


def _id_dict(meta: Dict[str, Any], key: str, path: Path) -> Dict[int, Any]:
    value = meta[key]
    if not isinstance(value, dict):
        raise EpicDiffFormatError(path, f"'{key}' must be an object keyed by frame id, got {type(value).__name__}")
    return {_as_id(k, path, f"key {k!r} of '{key}'"): v for k, v in value.items()}


def check_number(value: Any, path: Path, where: str, frame_id: Optional[int] = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EpicDiffFormatError(path, f"{where} must be a number, got {value!r}", frame_id)
    if not math.isfinite(value):
        raise EpicDiffFormatError(path, f"{where} is not finite ({value})", frame_id)
    return float(value)


def _matrix(value: Any, path: Path, where: str, frame_id: Optional[int] = None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise EpicDiffFormatError(path, f"{where} is not a numeric matrix", frame_id) from err
    return arr


def check_pose(value: Any, path: Path, frame_id: int) -> np.ndarray:
    pose = _matrix(value, path, f"poses['{frame_id}']", frame_id)
    if pose.shape == (4, 4) and np.allclose(pose[3], [0, 0, 0, 1]):
        pose = pose[:3]
    if pose.shape != (3, 4):
        raise EpicDiffFormatError(path, f"pose must be a 3x4 camera-to-world matrix, got shape {pose.shape}", frame_id)
    if not np.isfinite(pose).all():
        raise EpicDiffFormatError(path, "pose has NaN or infinite entries", frame_id)
    rot = pose[:, :3]
    if not np.allclose(rot.T @ rot, np.eye(3), atol=1e-3) or np.linalg.det(rot) < 0:
        raise EpicDiffFormatError(path, "pose rotation is not a proper rotation (orthonormal, det +1)", frame_id)
    return pose


def check_poses(values: Dict[int, Any], path: Path) -> Dict[int, np.ndarray]:
    """check_pose of every frame, as whole arrays (a long video's frames one by one took 28 s per
    500,000); when any frame fails, check_pose finds the first and says what is wrong with it."""
    ids = list(values)
    try:
        poses = np.asarray([values[i] for i in ids], dtype=np.float64)
    except (TypeError, ValueError):
        poses = np.empty((0,))  # ragged or not numbers: some frame is bad
    if poses.ndim == 3 and poses.shape[1:] in ((3, 4), (4, 4)):
        good = np.isfinite(poses).all(axis=(1, 2))
        if poses.shape[1] == 4:
            good &= np.isclose(poses[:, 3], [0, 0, 0, 1]).all(axis=1)
            poses = poses[:, :3]
        rot = np.nan_to_num(poses[:, :, :3])
        good &= np.isclose(np.einsum("nji,njk->nik", rot, rot), np.eye(3), atol=1e-3).all(axis=(1, 2))
        good &= np.linalg.det(rot) >= 0
        if good.all():
            return dict(zip(ids, poses))
    return {i: check_pose(values[i], path, i) for i in ids}


def _intrinsics(value: Any, path: Path) -> np.ndarray:
    K = _matrix(value, path, "'intrinsics'")
    if K.shape != (3, 3):
        raise EpicDiffFormatError(path, f"'intrinsics' must be a 3x3 matrix, got shape {K.shape}")
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise EpicDiffFormatError(path, f"'intrinsics' needs finite, positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
    return K


def check_frames_exist(image_paths: Dict[int, Path], ids: List[int]) -> Tuple[int, int]:
    """Every frame must exist, decode as an image, and have the same size as the first."""
    size = None
    first = None
    for frame_id in ids:
        path = image_paths[frame_id]
        if not path.is_file():
            raise EpicDiffFormatError(path, "frame image is missing", frame_id)
        try:
            with Image.open(path) as im:
                this = im.size
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise EpicDiffFormatError(path, f"frame image cannot be read ({err})", frame_id) from err
        if size is None:
            size, first = this, path
        elif this != size:
            raise EpicDiffFormatError(
                path, f"frame is {this[0]}x{this[1]} but {first.name} is {size[0]}x{size[1]}: all frames must have one size", frame_id
            )
    assert size is not None
    return size


def scale_intrinsics(K: np.ndarray, meta: Dict[str, Any], image_size: Tuple[int, int], path: Path) -> np.ndarray:
    """Scale K to the frames' real size when meta.json says which size it was made for."""
    width, height = image_size
    K = K.copy()
    if "image_w" in meta and "image_h" in meta:
        meta_w = check_number(meta["image_w"], path, "'image_w'")
        meta_h = check_number(meta["image_h"], path, "'image_h'")
        if meta_w <= 0 or meta_h <= 0:
            raise EpicDiffFormatError(path, f"'image_w'/'image_h' must be positive, got {meta_w}x{meta_h}")
        K[0] *= width / meta_w
        K[1] *= height / meta_h
    if not (0 < K[0, 2] < width and 0 < K[1, 2] < height):
        raise EpicDiffFormatError(
            path,
            f"intrinsics do not match the {width}x{height} frames: principal point ({K[0, 2]:.1f}, {K[1, 2]:.1f}) "
            "lies outside the image (set 'image_w'/'image_h' to the size K was made for)",
        )
    return K
