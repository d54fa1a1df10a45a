"""scripts/bench_neighbours.py: the yardstick for test-frame PSNR that time interpolation allows."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataparsers.annotations import load_mask, mask_path
from dataparsers.epic_diff_scene import EpicDiffFormatError, load_scene

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_neighbours.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_neighbours", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_frame_whose_moving_pixels_are_its_neighbours_mean_is_explained_by_the_blend(scene_copy):
    """Repaint a test frame's masked pixels with the mean of the training frames just before and
    after it: the blend then matches it (up to 8-bit rounding) and the nearer frame alone does not;
    pixels outside the mask count as perfect, so the whole frame scores above its masked part."""
    bench = _bench()
    scene = load_scene(scene_copy)
    frame_id = next(i for i in scene.splits["test"] if load_mask(mask_path(scene, i), scene.image_size).any())
    before = max(i for i in scene.splits["train"] if i < frame_id)
    after = min(i for i in scene.splits["train"] if i > frame_id)
    images = {i: np.asarray(Image.open(scene.image_paths[i]).convert("RGB"), dtype=np.float64) for i in (frame_id, before, after)}
    mask = load_mask(mask_path(scene, frame_id), scene.image_size)
    repainted = np.where(mask[..., None], (images[before] + images[after]) / 2, images[frame_id])
    Image.fromarray(np.round(repainted).astype(np.uint8)).save(scene.image_paths[frame_id])

    figures = bench.frame_figures(load_scene(scene_copy), frame_id)
    assert figures["blend_masked"] > 45 and figures["nearest_masked"] < 40
    assert figures["blend"] > figures["blend_masked"] and figures["nearest"] > figures["nearest_masked"]
    summary = bench.scene_figures(load_scene(scene_copy))
    assert summary["frames"] == sum(bench.frame_figures(scene, i) is not None for i in scene.splits["test"])


def test_a_test_frame_that_is_the_only_training_frame_is_a_format_error_naming_it(scene_copy):
    """With the splits overlapping on a single frame there is nothing around it to interpolate
    from: the error names meta.json and the frame, not a bare `min()` of an empty list."""
    bench = _bench()
    meta_path = scene_copy / "meta.json"
    meta = json.loads(meta_path.read_text())
    frame_id = load_scene(scene_copy).splits["test"][0]
    meta["ids_train"] = [frame_id]
    meta_path.write_text(json.dumps(meta))

    with pytest.raises(EpicDiffFormatError, match=rf"meta\.json \(frame id {frame_id}\): a test frame has no training frame"):
        bench._neighbours(load_scene(scene_copy), frame_id)
