"""Shared fixtures: small generated EPIC-Diff scenes (generated once per test session)."""

import shutil
from pathlib import Path

import pytest

from divff_nerfstudio.language.test_clip import TestClipTraining, train_test_clip
from divff_nerfstudio.synthetic import SceneConfig, write_scene

SMALL = SceneConfig(seed=3, frames=20, width=96, height=64, objects=3)


@pytest.fixture(scope="session")
def small_scene(tmp_path_factory) -> Path:
    """A 20-frame 96x64 scene. Read-only: copy it (scene_copy) before changing anything."""
    return write_scene(tmp_path_factory.mktemp("scenes") / "SYN_small", SMALL)


@pytest.fixture
def scene_copy(small_scene, tmp_path) -> Path:
    """A private copy of the small scene that a test may break."""
    dst = tmp_path / "data" / small_scene.name
    shutil.copytree(small_scene, dst)
    return dst


@pytest.fixture(scope="session")
def test_clip(tmp_path_factory, small_scene) -> Path:
    """The project's test CLIP, trained here (the small scene's object labels held out) and saved
    as an open_clip checkpoint; its accuracy report lies next to it (<path>.json)."""
    from divff_nerfstudio.language.test_clip import DEFAULT_HOLD_OUT, scene_labels

    path = tmp_path_factory.mktemp("clip") / "divff_tiny_clip.pt"
    train_test_clip(path, TestClipTraining(), sorted(set(DEFAULT_HOLD_OUT) | set(scene_labels(small_scene))))
    return path


@pytest.fixture(scope="session")
def tiny_xclip(tmp_path_factory) -> Path:
    """A randomly initialised X-CLIP of the project's tiny architecture, saved like real weights."""
    from divff_nerfstudio.language.xclip_video import save_tiny_xclip

    return save_tiny_xclip(tmp_path_factory.mktemp("xclip") / "tiny")
