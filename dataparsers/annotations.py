"""Evaluation annotations of an EPIC-Diff scene: dynamic masks, object label polygons, affordances.

Masks (annotations/<frame file name>) mark everything that moves; they exist for test frames only.
Object labels come in two layouts, both read when present:
- VIA-2 style in the scene folder: object_annotations/te.json keyed by file name + size, with
  `regions[].shape_attributes.all_points_x/y` and `regions[].region_attributes.label`;
- DIV-FF's VIA-3 project under the data root: object_annotations/<scene>/te.json with `file`,
  `metadata` (`xy` = [shape, x0, y0, x1, y1, ...], `av` = attribute values) and `attribute`,
  drawn on 480x270 frames and scaled to the frame size.
Affordances (DIV-FF): affordance_annotations/<scene>/aff_annotations.pkl under the data root, or
affordance_annotations/aff_annotations.pkl in the scene folder: a pickled dict with `text_queries`
(Q narrations such as "#C C cut onion") and `images` ({frame file name: (H, W, Q) mask}).
"""

from __future__ import annotations

import json
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from dataparsers.epic_diff_scene import EpicDiffFormatError, EpicDiffScene

MASK_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg")
VIA3_CANVAS = (480, 270)
"""Frame size (width, height) DIV-FF's VIA-3 polygons were drawn on."""
_VIA3_POLYGON = 7
AFFORDANCE_FILE = "aff_annotations.pkl"
NARRATION_PREFIX = "#C C "
"""EPIC-KITCHENS narrations start with '#C C ' (the camera wearer); the query is what follows."""


@dataclass
class LabelledPolygon:
    label: str
    points: np.ndarray  # (M, 2) x, y in frame pixels


def mask_path(scene: EpicDiffScene, frame_id: int) -> Optional[Path]:
    """The dynamic mask of a frame: same file name under annotations/, or same stem with another
    image suffix; None when the frame has no mask."""
    name = scene.image_paths[frame_id].name
    folder = scene.root / "annotations"
    candidates = [folder / name] + [folder / (Path(name).stem + s) for s in MASK_SUFFIXES]
    return next((p for p in candidates if p.is_file()), None)


@contextmanager
def _open_mask(path: Path, image_size: Tuple[int, int], frame_id: Optional[int]) -> Iterator[Image.Image]:
    """The mask image, checked to decode and to have its frame's size (from the header)."""
    try:
        with Image.open(path) as im:
            if im.size != tuple(image_size):
                raise EpicDiffFormatError(
                    path, f"mask is {im.size[0]}x{im.size[1]} but its frame is {image_size[0]}x{image_size[1]}", frame_id
                )
            yield im
    except (UnidentifiedImageError, OSError) as err:
        raise EpicDiffFormatError(path, f"mask cannot be read ({err})", frame_id) from err


def load_mask(path: Path, image_size: Tuple[int, int], frame_id: Optional[int] = None) -> np.ndarray:
    """Binary (H, W) bool mask: any non-zero value is dynamic (1-bit and 0/255 masks alike)."""
    with _open_mask(path, image_size, frame_id) as im:
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr.any(axis=2)
    return arr != 0


def check_mask_sizes(scene: EpicDiffScene, frame_ids: List[int]) -> Dict[int, Optional[Path]]:
    """Mask path per frame, checking (from the file header) that each matches its frame's size."""
    out = {}
    for frame_id in frame_ids:
        path = mask_path(scene, frame_id)
        if path is not None:
            with _open_mask(path, scene.image_size, frame_id):
                pass
        out[frame_id] = path
    return out


def label_files(scene: EpicDiffScene) -> List[Path]:
    """Object-label files that exist for this scene, VIA-2 (scene folder) first."""
    candidates = [scene.root / "object_annotations" / "te.json"]
    for data_root in (scene.root.parent, scene.root.parent.parent):
        candidates.append(data_root / "object_annotations" / scene.name / "te.json")
    return [p for p in candidates if p.is_file()]


def load_object_labels(scene: EpicDiffScene) -> Dict[int, List[LabelledPolygon]]:
    """Labelled polygons per frame id, merged from every label file found."""
    by_name = {path.name: frame_id for frame_id, path in scene.image_paths.items()}
    by_stem = {path.stem: frame_id for frame_id, path in scene.image_paths.items()}
    out: Dict[int, List[LabelledPolygon]] = {}
    for path in label_files(scene):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise EpicDiffFormatError(path, f"is not valid JSON ({err.msg} at line {err.lineno})") from err
        if not isinstance(data, dict):
            raise EpicDiffFormatError(path, "object labels must be a JSON object")
        parsed = _parse_via3(data, path, scene.image_size) if "metadata" in data and "file" in data else _parse_via2(data, path)
        for filename, polygons in parsed:
            frame_id = by_name.get(Path(filename).name, by_stem.get(Path(filename).stem))
            if frame_id is None:
                continue  # labels of frames the scene does not use
            out.setdefault(frame_id, []).extend(polygons)
    return out


def _parse_via2(data: dict, path: Path) -> List[Tuple[str, List[LabelledPolygon]]]:
    entries = data.get("_via_img_metadata", data)
    out = []
    for key, entry in entries.items():
        if not isinstance(entry, dict) or "filename" not in entry:
            raise EpicDiffFormatError(path, f"entry {key!r} has no 'filename'")
        polygons = []
        for region in entry.get("regions", []):
            shape = region.get("shape_attributes", {})
            label = region.get("region_attributes", {}).get("label")
            xs, ys = shape.get("all_points_x"), shape.get("all_points_y")
            if label is None or xs is None or ys is None or len(xs) != len(ys):
                raise EpicDiffFormatError(path, f"region of {entry['filename']} needs a label and equal-length all_points_x/y")
            polygons.append(LabelledPolygon(str(label), np.stack([xs, ys], axis=1).astype(np.float64)))
        out.append((entry["filename"], polygons))
    return out


def _parse_via3(data: dict, path: Path, image_size: Tuple[int, int]) -> List[Tuple[str, List[LabelledPolygon]]]:
    files = {str(fid): f.get("fname", "") for fid, f in data["file"].items()}
    view_to_file = {str(vid): str(v["fid_list"][0]) for vid, v in data.get("view", {}).items() if v.get("fid_list")}
    attributes = data.get("attribute", {})
    sx, sy = image_size[0] / VIA3_CANVAS[0], image_size[1] / VIA3_CANVAS[1]
    per_file: Dict[str, List[LabelledPolygon]] = {}
    for key, region in data["metadata"].items():
        xy = region.get("xy", [])
        if len(xy) < 7 or xy[0] != _VIA3_POLYGON:
            continue  # not a polygon (points, boxes, temporal segments)
        vid = str(region.get("vid", key.split("_")[0]))
        fid = view_to_file.get(vid, vid)
        if fid not in files:
            raise EpicDiffFormatError(path, f"region {key!r} refers to view {vid!r} with no file")
        label = _via3_label(region.get("av", {}), attributes)
        if label is None:
            continue
        pts = np.asarray(xy[1:], dtype=np.float64).reshape(-1, 2) * [sx, sy]
        per_file.setdefault(files[fid], []).append(LabelledPolygon(label, pts))
    return list(per_file.items())


def _via3_label(values: dict, attributes: dict) -> Optional[str]:
    """The first attribute value of a region, mapped through the attribute's options if it is a key."""
    for attr_id, value in values.items():
        options = attributes.get(str(attr_id), {}).get("options", {})
        if isinstance(options, dict) and str(value) in options:
            return str(options[str(value)])
        if value not in ("", None):
            return str(value)
    return None


def rasterize(polygons: List[LabelledPolygon], image_size: Tuple[int, int]) -> Dict[str, np.ndarray]:
    """One (H, W) bool mask per label: the union of that label's polygons in the frame."""
    masks: Dict[str, Image.Image] = {}
    for poly in polygons:
        canvas = masks.setdefault(poly.label, Image.new("1", tuple(image_size), 0))
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in poly.points.tolist()], fill=1, outline=1)
    return {label: np.asarray(im, dtype=bool) for label, im in masks.items()}


def affordance_files(scene: EpicDiffScene) -> List[Path]:
    """Affordance annotation files that exist for this scene, the scene folder's first."""
    candidates = [scene.root / "affordance_annotations" / AFFORDANCE_FILE]
    for data_root in (scene.root.parent, scene.root.parent.parent):
        candidates.append(data_root / "affordance_annotations" / scene.name / AFFORDANCE_FILE)
    return [p for p in candidates if p.is_file()]


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: an annotation file must not be able to run
    code on the machine that evaluates it."""

    _ALLOWED = {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    } | {("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED or (module == "numpy" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed here (only dicts, lists, strings and numpy arrays)")


def load_affordances(scene: EpicDiffScene) -> Dict[int, Dict[str, np.ndarray]]:
    """Per frame id, one (H, W) bool mask per affordance query (queries whose mask is empty in a
    frame included: the evaluation skips them there), merged from every affordance file found."""
    by_stem = {path.stem: frame_id for frame_id, path in scene.image_paths.items()}
    width, height = scene.image_size
    out: Dict[int, Dict[str, np.ndarray]] = {}
    for path in affordance_files(scene):
        try:
            with open(path, "rb") as f:
                data = _ArraysOnly(f).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as err:
            raise EpicDiffFormatError(path, f"cannot be read as affordance annotations ({err})") from err
        if not isinstance(data, dict) or not isinstance(data.get("text_queries"), (list, tuple)) or not isinstance(data.get("images"), dict):
            raise EpicDiffFormatError(path, "needs a dict with 'text_queries' (list of text) and 'images' ({frame file: HxWxQ mask})")
        queries = [str(q).replace(NARRATION_PREFIX, "").strip() for q in data["text_queries"]]
        for filename, masks in data["images"].items():
            frame_id = by_stem.get(Path(str(filename)).stem)
            if frame_id is None:
                continue  # annotations of frames the scene does not use
            masks = np.asarray(masks)
            if masks.ndim == 2:
                masks = masks[..., None]
            if masks.ndim != 3 or masks.shape[2] != len(queries):
                raise EpicDiffFormatError(path, f"mask of {filename} has shape {masks.shape}, expected (H, W, {len(queries)})", frame_id)
            frame = out.setdefault(frame_id, {})
            for q, query in enumerate(queries):
                if query == "undefined":
                    continue
                mask = masks[..., q] != 0
                if mask.shape != (height, width):  # drawn at another resolution
                    mask = np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST), dtype=bool)
                frame[query] = frame[query] | mask if query in frame else mask
    return out
