"""Shared fixtures: small generated EPIC-Diff scenes (generated once per test session)."""

import shutil
from pathlib import Path

import pytest

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
