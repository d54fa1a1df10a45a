"""Scoring the training frames needs the generator's label maps: without them the error names the
first missing file before anything is rendered."""

from types import SimpleNamespace

import pytest

from divff_nerfstudio.eval.training_frames import score_training_frames
from divff_nerfstudio.utils.errors import UserError


def test_a_scene_without_label_maps_names_the_missing_file(scene_copy):
    frames = sorted((scene_copy / "frames").glob("*.bmp"))
    missing = scene_copy / "gt" / "labels" / f"{frames[3].stem}.png"
    missing.unlink()
    dataset = SimpleNamespace(image_filenames=frames)
    pipeline = SimpleNamespace(datamanager=SimpleNamespace(train_dataset=dataset), model=None)
    with pytest.raises(UserError, match=rf"{missing.name}: no label map \(1 of {len(frames)}"):
        score_training_frames(pipeline)
