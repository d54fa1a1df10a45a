"""Shared fixtures, made once per test session: small generated EPIC-Diff scenes, the test CLIP and a
small divff run with language on."""

import shutil
from pathlib import Path

import pytest
import torch

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


LANGUAGE_STEPS = {"geometry": 80, "features": 60, "total": 200}


@pytest.fixture(scope="session")
def language_run(small_scene, test_clip, tmp_path_factory) -> Path:
    """ns-train divff on the small scene with the test CLIP, and the optional DINO head on (a small
    random timm ViT as its checkpoint: no DINO weights here); returns its config.yml."""
    import timm
    from test_divff_end_to_end import ns_train

    out = tmp_path_factory.mktemp("lang_runs")
    torch.manual_seed(0)
    dino = out / "vit_tiny.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict(), dino)
    return ns_train(
        "divff", small_scene, out, LANGUAGE_STEPS["total"],
        "--pipeline.datamanager.language.clip.model-name", "DivffTiny-CLIP",
        "--pipeline.datamanager.language.clip.pretrained", str(test_clip),
        "--pipeline.datamanager.language.cache-dir", str(out / "cache"),
        "--pipeline.model.geometry-steps", str(LANGUAGE_STEPS["geometry"]),
        "--pipeline.model.feature-steps", str(LANGUAGE_STEPS["features"]),
        # 96x64 frames: crops of 10-38 px (the 228x128 default's 10-20 px would see only colour here)
        "--pipeline.datamanager.language.pyramid.patch-fractions", "0.15", "0.3", "0.6",
        "--pipeline.datamanager.language.pyramid.overlap", "0.5",
        "--pipeline.datamanager.language.dino.enabled", "True",
        "--pipeline.datamanager.language.dino.model-name", "vit_tiny_patch16_224",
        "--pipeline.datamanager.language.dino.checkpoint", str(dino),
        "--pipeline.datamanager.language.dino.pca-dim", "16",
    )  # fmt: skip
