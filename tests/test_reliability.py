"""Faults provoked for real against real commands: Ctrl-C and SIGKILL during training and during a
checkpoint save, a full disk (a small tmpfs) under a checkpoint and under the feature cache,
truncated and foreign checkpoints and caches, and the same seed giving the same model."""

import json
import os
import random
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from test_divff_end_to_end import BIN

from divff_nerfstudio.engine.checkpoints import CheckpointError, newest_complete_checkpoint, read_checkpoint
from divff_nerfstudio.engine.random_state import fenced_random_states
from divff_nerfstudio.language.feature_cache import CacheWriteError, FeatureCache, cached_grids

STEPS, SAVE_EVERY = 30, 10


def squeezed(text: str) -> str:
    """Text without whitespace: rich wraps and folds long lines (paths) wherever it likes."""
    return "".join(text.split())


def train_command(scene: Path, out: Path, name: str, *extra: str) -> list:
    return [
        str(BIN / "ns-train"), "divff-geometry",
        "--data", str(scene),
        "--machine.device-type", "cpu",
        "--max-num-iterations", str(STEPS),
        "--steps-per-save", str(SAVE_EVERY),
        "--pipeline.datamanager.train-num-rays-per-batch", "512",
        "--pipeline.datamanager.change-prior.at-step", "5",  # resumed runs read its evidence from the checkpoint
        "--vis", "tensorboard",
        "--output-dir", str(out),
        "--timestamp", name,
        *extra,
    ]  # fmt: skip


def run_dir(scene: Path, out: Path, name: str) -> Path:
    return out / scene.name / "divff-geometry" / name


def start(cmd: list, log: Path) -> subprocess.Popen:
    """A command as a user runs it in a terminal. SIGINT is reset to the default in the child: a
    test session started in the background of a shell without job control inherits SIGINT ignored,
    and Python then never turns Ctrl-C into KeyboardInterrupt."""
    return subprocess.Popen(
        cmd,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finish(cmd: list, log: Path) -> subprocess.CompletedProcess:
    proc = start(cmd, log)
    proc.wait(timeout=900)
    return subprocess.CompletedProcess(cmd, proc.returncode, log.read_text())


def wait_for(proc: subprocess.Popen, ready, timeout: float = 600) -> None:
    end = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"training ended (status {proc.returncode}) before the fault could be provoked"
        assert time.time() < end, "timed out waiting to provoke the fault"
        time.sleep(0.001)


def parameters(checkpoint: Path) -> dict:
    state = read_checkpoint(checkpoint)  # torch's safe loader, as nerfstudio reads it
    return {k: v for k, v in state["pipeline"].items() if torch.is_tensor(v)}


def assert_same_model(a: Path, b: Path) -> None:
    pa, pb = parameters(a), parameters(b)
    assert pa.keys() == pb.keys()
    worst = max((pa[k].float() - pb[k].float()).abs().max().item() for k in pa if pa[k].numel())
    assert worst == 0.0, f"{a} and {b} differ by up to {worst}"


def final_checkpoint(run: Path) -> Path:
    return run / "nerfstudio_models" / f"step-{STEPS - 1:09d}.ckpt"


@pytest.fixture(scope="module")
def reference(small_scene, tmp_path_factory) -> Path:
    """The final checkpoint of an uninterrupted run: what interrupted runs must reach."""
    out = tmp_path_factory.mktemp("reliability")
    done = finish(train_command(small_scene, out, "reference"), out / "reference.log")
    assert done.returncode == 0, done.stdout[-3000:]
    return final_checkpoint(run_dir(small_scene, out, "reference"))


def test_same_seed_and_data_give_the_same_model(reference, small_scene, tmp_path):
    """Bit for bit on the CPU at a given thread count (another thread count sums in another order:
    differences of float rounding, growing with training)."""
    done = finish(train_command(small_scene, tmp_path, "again"), tmp_path / "again.log")
    assert done.returncode == 0, done.stdout[-3000:]
    assert_same_model(reference, final_checkpoint(run_dir(small_scene, tmp_path, "again")))


def resume(scene: Path, out: Path, interrupted: Path) -> Path:
    done = finish(train_command(scene, out, "resumed", "--load-dir", str(interrupted / "nerfstudio_models")), out / "resumed.log")
    assert done.returncode == 0, done.stdout[-3000:]
    return final_checkpoint(run_dir(scene, out, "resumed"))


@pytest.mark.parametrize("fault", ["SIGINT while training", "SIGINT while saving", "SIGKILL while training", "SIGKILL while saving"])
def test_interrupted_run_resumes_to_the_same_model(fault, reference, small_scene, tmp_path):
    """Ctrl-C finishes the step (and a save under way), saves and says how to resume; a kill loses
    the steps since the last complete checkpoint, never that checkpoint, even mid-save."""
    sig, moment = fault.split(" while ")
    run = run_dir(small_scene, tmp_path, "interrupted")
    first = run / "nerfstudio_models" / f"step-{SAVE_EVERY:09d}.ckpt"

    def half_written() -> bool:  # the next checkpoint is being written: more than 1 MiB staged
        return any(p.stat().st_size > 1 << 20 for p in run.glob(".step-*.tmp"))

    proc = start(train_command(small_scene, tmp_path, "interrupted"), tmp_path / "interrupted.log")
    wait_for(proc, lambda: first.exists() and (half_written() if moment == "saving" else not list(run.glob(".step-*.tmp"))))
    proc.send_signal(getattr(signal, sig))
    status = proc.wait(timeout=300)
    log = (tmp_path / "interrupted.log").read_text()
    saved = sorted((run / "nerfstudio_models").glob("step-*.ckpt"))
    if sig == "SIGINT":
        assert status == 130, log[-3000:]
        assert len(saved) == 1, saved
        step = int(saved[0].stem.split("-")[1])
        assert (2 * SAVE_EVERY if moment == "saving" else SAVE_EVERY) <= step < STEPS - 1
        assert squeezed(f"Interrupted after step {step};") in squeezed(log)
        assert squeezed("Resume with the same command plus: --load-dir") in squeezed(log), log[-2000:]
    else:
        assert status == -signal.SIGKILL
        assert saved == [first]
        assert bool(list(run.glob(".step-*.tmp"))) == (moment == "saving")  # what the kill cut short
    assert parameters(saved[-1])  # complete: loads with torch's safe loader
    # nerfstudio's own loaders (ns-viewer, ns-render, ns-eval) pick the newest file in nerfstudio_models
    from nerfstudio.utils.eval_utils import eval_setup

    _, _, checkpoint, _ = eval_setup(run / "config.yml", test_mode="inference")
    assert checkpoint == saved[-1]
    resumed = resume(small_scene, tmp_path, run)
    if moment == "saving" and sig == "SIGKILL":
        assert squeezed("left by an interrupted save") in squeezed((tmp_path / "resumed.log").read_text())
    assert not list(run.glob(".step-*.tmp"))
    assert_same_model(reference, resumed)


def test_ctrl_c_during_target_extraction_keeps_the_frames_extracted(small_scene, test_clip, tmp_path):
    cache = tmp_path / "cache"

    def command(name: str) -> list:
        return [
            str(BIN / "ns-train"), "divff",
            "--data", str(small_scene),
            "--machine.device-type", "cpu",
            "--max-num-iterations", "1",
            "--vis", "tensorboard",
            "--output-dir", str(tmp_path),
            "--timestamp", name,
            "--pipeline.datamanager.language.clip.model-name", "DivffTiny-CLIP",
            "--pipeline.datamanager.language.clip.pretrained", str(test_clip),
            "--pipeline.datamanager.language.cache-dir", str(cache),
        ]  # fmt: skip

    proc = start(command("interrupted"), tmp_path / "interrupted.log")
    wait_for(proc, lambda: any(cache.glob("clip-*/*.npy")))
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=300) == 130
    assert squeezed("Interrupted while setting up") in squeezed((tmp_path / "interrupted.log").read_text())
    frames = len(json.loads((small_scene / "meta.json").read_text())["ids_train"])
    kept = len(list(cache.glob("clip-*/*.npy")))
    assert 0 < kept < frames
    again = finish(command("again"), tmp_path / "again.log")
    assert again.returncode == 0, again.stdout[-3000:]
    assert squeezed(f"CLIP targets: {kept} frames cached, extracting {frames - kept}") in squeezed(again.stdout)


@contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of `size` mounted at path (root only): a real full disk, ENOSPC from the kernel."""
    path.mkdir(parents=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_disk_full_during_a_checkpoint_save_keeps_the_previous_checkpoint(reference, small_scene, tmp_path):
    ckpt_mb = reference.stat().st_size / 2**20
    # room for one checkpoint and the logs but not for a second beside it
    with small_disk(tmp_path / "disk", f"{int(ckpt_mb * 1.5)}m") as disk:
        done = finish(train_command(small_scene, disk, "full"), tmp_path / "full.log")
        assert done.returncode == 1, done.stdout[-3000:]
        first = f"step-{SAVE_EVERY:09d}.ckpt"
        expected = f"step-{2 * SAVE_EVERY:09d}.ckpt: checkpoint not saved (No space left on device); the previous checkpoint {first} is intact"
        assert squeezed(expected) in squeezed(done.stdout), done.stdout[-3000:]
        assert "Traceback" not in done.stdout
        run = run_dir(small_scene, disk, "full")
        assert [p.name for p in (run / "nerfstudio_models").iterdir()] == [first]
        assert not list(run.glob(".step-*.tmp"))  # nothing half-written left to fill the disk
        assert parameters(run / "nerfstudio_models" / first)


def test_disk_full_while_caching_targets_keeps_the_frames_cached(tmp_path):
    grid = (64, 64, 2)  # 16 KiB per frame in fp16
    keys = [f"frame_{i}" for i in range(8)]
    calls = []

    def extract(i: int) -> torch.Tensor:
        calls.append(i)
        return torch.full(grid, float(i))

    with small_disk(tmp_path / "disk", "64k") as disk:
        cache = FeatureCache(disk, "clip", {"setting": 1})
        with pytest.raises(CacheWriteError, match=r"frame_\d\.npy: could not store test targets \(No space left on device\)\. The \d frames cached so far are kept"):
            cached_grids(cache, keys, grid, extract, "test targets")
        stored = sorted(p.stem for p in cache.folder.glob("*.npy"))
        assert 0 < len(stored) < len(keys) and not list(cache.folder.glob(".*"))
        subprocess.run(["mount", "-o", "remount,size=1m", str(disk)], check=True)  # space freed
        calls.clear()
        out = cached_grids(cache, keys, grid, extract, "test targets")
        assert calls == [i for i, k in enumerate(keys) if k not in stored]  # resumed, nothing redone
        assert torch.equal(out[:, 0, 0, 0], torch.arange(8, dtype=torch.float16))


def test_caches_of_other_settings_or_scenes_are_reported_and_never_used(tmp_path, capsys):
    keys, shape = ["a", "b"], (2, 3, 4)

    def extract(i: int) -> torch.Tensor:
        return torch.full(shape, float(i))

    cached_grids(FeatureCache(tmp_path, "clip", {"encoder": "x", "pyramid": [0.1]}), keys, shape, extract, "CLIP targets")
    capsys.readouterr()
    # a changed setting: the old cache is named with what differs, and not read
    cached_grids(FeatureCache(tmp_path, "clip", {"encoder": "x", "pyramid": [0.2]}), keys, shape, lambda i: extract(i) + 5, "CLIP targets")
    assert squeezed("(differs in pyramid)") in squeezed(capsys.readouterr().out)
    # a cache folder copied in from elsewhere under this fingerprint's name: its manifest tells
    ours = FeatureCache(tmp_path, "video", {"scene": "P01_01"})
    foreign = FeatureCache(tmp_path, "video", {"scene": "P02_03"})
    cached_grids(foreign, keys, shape, lambda i: extract(i) + 9, "video targets")
    foreign.folder.rename(ours.folder)
    capsys.readouterr()
    out = cached_grids(ours, keys, shape, extract, "video targets")
    assert squeezed("written for other settings or another scene") in squeezed(capsys.readouterr().out)
    assert torch.equal(out[:, 0, 0, 0], torch.tensor([0.0, 1.0], dtype=torch.float16))


def test_resume_skips_a_truncated_checkpoint_and_names_an_unusable_folder(reference, tmp_path, capsys):
    folder = tmp_path / "nerfstudio_models"
    folder.mkdir()
    good = folder / "step-000000010.ckpt"
    good.write_bytes(reference.read_bytes())
    data = reference.read_bytes()
    (folder / "step-000000020.ckpt").write_bytes(data[: len(data) // 3])  # e.g. copied off a full disk
    assert newest_complete_checkpoint(folder)["step"] == STEPS - 1  # the good file's content
    assert squeezed("step-000000020.ckpt: not a complete checkpoint") in squeezed(capsys.readouterr().out)
    good.write_bytes(b"")
    with pytest.raises(CheckpointError, match="none of the 2 checkpoints loads"):
        newest_complete_checkpoint(folder)
    with pytest.raises(CheckpointError, match="no step-\\*.ckpt checkpoint"):
        newest_complete_checkpoint(tmp_path)


def test_work_that_only_a_cold_cache_does_leaves_the_random_generators_alone():
    """Building the CLIP and extracting targets draw random numbers; fenced off, a cold and a warm
    cache give the same model for a seed (measured end to end: identical parameters)."""

    def seed_and_draw() -> tuple:
        return torch.rand(3), np.random.rand(3), random.random()

    def seed() -> None:
        torch.manual_seed(0)
        np.random.seed(0)
        random.seed(0)

    seed()
    expected = seed_and_draw()
    seed()
    with fenced_random_states():
        torch.nn.Linear(64, 64)  # a model built with random weights
        np.random.rand(10), random.random()
    got = seed_and_draw()
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]
