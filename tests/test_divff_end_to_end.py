"""End to end through the real commands: ns-train divff-geometry (the decomposition without
language) on a tiny generated scene, evaluate.py, ns-render loading the checkpoint, and ns-train
nerfacto through the epic-diff dataparser."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def run(*cmd: str, cwd: Path, warnings: bool = False) -> subprocess.CompletedProcess:
    """The command's result (it must succeed); `warnings`: as a user runs it, warnings shown."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"} if warnings else {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def ns_train(method: str, scene: Path, out: Path, steps: int, *extra: str) -> Path:
    """Train with ns-train on the CPU into out (run name "e2e"); returns the run's config.yml."""
    run(
        str(BIN / "ns-train"), method,
        "--data", str(scene),
        "--machine.device-type", "cpu",
        "--max-num-iterations", str(steps),
        "--steps-per-save", str(steps),
        "--logging.steps-per-log", "5",
        "--pipeline.datamanager.train-num-rays-per-batch", "512",
        "--vis", "tensorboard",
        "--output-dir", str(out),
        "--timestamp", "e2e",
        *extra,
        cwd=out,
    )  # fmt: skip
    return out / scene.name / method / "e2e" / "config.yml"


@pytest.fixture(scope="module")
def trained(small_scene, tmp_path_factory) -> Path:
    return ns_train("divff-geometry", small_scene, tmp_path_factory.mktemp("runs"), 100)


def scalars(run_dir: Path, tag: str):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def test_training_loss_falls_and_checkpoint_is_written(trained):
    losses = scalars(trained.parent, "Train Loss")
    assert len(losses) >= 10
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.5, losses
    assert list((trained.parent / "nerfstudio_models").glob("step-*.ckpt"))


def test_evaluate_writes_metrics_images_and_video(trained, small_scene, tmp_path):
    proc = run(
        str(BIN / "divff-evaluate"), "--load-config", str(trained), "--output-dir", str(tmp_path), "--training-frames",
        cwd=tmp_path, warnings=True,
    )  # fmt: skip
    # the dependencies' known deprecation warnings are not printed (before: five lines per frame)
    for known in ("non-tuple sequence for multidimensional indexing", "torch.cuda.amp.custom_fwd", "No CUDA runtime is found"):
        assert known not in proc.stderr + proc.stdout, known
    results = json.loads((tmp_path / "results.json").read_text())
    summary = results["summary"]
    assert summary["num_frames"] == 2
    assert 0 <= summary["mAP"] <= 100 and 0 <= summary["mAP_objects"] <= 100 and 0 <= summary["mAP_actor"] <= 100
    assert summary["PSNR"] > 12, "100 steps already beat a flat grey image"
    # every training frame scored against its label map, with the same scores
    training = results["training_frames"]
    assert [f["frame_id"] for f in training["frames"]] == json.loads((small_scene / "meta.json").read_text())["ids_train"]
    assert 0 <= training["summary"]["mAP"] <= 100 and 0 <= training["summary"]["mAP_actor"] <= 100
    assert training["summary"]["PSNR"] > 12
    frames = sorted((tmp_path / "frames").glob("*.png"))
    assert len(frames) == 2
    from PIL import Image

    assert Image.open(frames[0]).size == (96 * 7, 64)
    assert (tmp_path / "summary.mp4").stat().st_size > 0


def test_ns_render_loads_the_checkpoint(trained, tmp_path):
    run(
        str(BIN / "ns-render"), "dataset",
        "--load-config", str(trained),
        "--split", "test",
        "--rendered-output-names", "rgb", "rgb_objects", "dynamic_mask",
        "--output-path", str(tmp_path),
        cwd=trained.parents[3],
    )  # fmt: skip
    rendered = sorted(p for p in tmp_path.rglob("*") if p.suffix in (".png", ".jpg"))
    assert len(rendered) == 2 * 3, rendered


def test_ns_render_of_new_cameras_without_frame_metadata(trained, tmp_path):
    """Interpolated cameras carry no times or rotations: the model supplies them (time 0)."""
    video = tmp_path / "path.mp4"
    run(
        str(BIN / "ns-render"), "interpolate",
        "--load-config", str(trained),
        "--interpolation-steps", "2",
        "--rendered-output-names", "rgb_actor",
        "--output-path", str(video),
        cwd=trained.parents[3],
    )  # fmt: skip
    import mediapy

    frames = mediapy.read_video(video)
    assert frames.shape[1:3] == (64, 96) and len(frames) >= 2


def test_nerfacto_trains_through_the_dataparser_offline(small_scene, tmp_path):
    run(
        str(BIN / "ns-train"), "nerfacto",
        "--data", str(small_scene),
        "--machine.device-type", "cpu",
        "--max-num-iterations", "5",
        "--pipeline.datamanager.train-num-rays-per-batch", "256",
        "--pipeline.model.hidden-dim", "32",
        "--vis", "tensorboard",
        "--output-dir", str(tmp_path),
        "--timestamp", "nf",
        "epic-diff",
        cwd=tmp_path,
    )  # fmt: skip
    assert list((tmp_path / small_scene.name / "nerfacto" / "nf" / "nerfstudio_models").glob("*.ckpt"))


def test_lpips_without_weights_is_nan_not_a_crash(monkeypatch):
    import urllib.error

    from divff_nerfstudio.utils import compat

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    build = compat._offline_safe_lpips(offline)
    with pytest.warns(UserWarning, match="alexnet-owt-7be5be79.pth"):
        metric = build(normalize=True)
    import torch

    assert torch.isnan(metric(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)))
