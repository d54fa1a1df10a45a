"""The package as users meet it: runs trained before the subpackages still load, every command
reports a user error as one line, and ruff passes.

tests/fixtures/old_layout_run holds a tiny divff run (language on, 30 steps, optimizer state
stripped) trained with the flat layout of commit 85eda75, whose config.yml names the old module
paths (divff_nerfstudio.trainer, .divff_datamanager, .divff_model, .clip_encoder, ...), and the
generated scene it was trained on.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from test_divff_end_to_end import BIN, REPO, run

from divff_nerfstudio.utils.headless_browser import free_port

FIXTURE = REPO / "tests" / "fixtures" / "old_layout_run"
OLD_CONFIG = Path("outputs/OLD_RUN/divff/old_layout/config.yml")


@pytest.fixture
def old_run(tmp_path, monkeypatch) -> Path:
    """The old run laid out as ns-train left it (paths in its config.yml are relative to here)."""
    shutil.copytree(FIXTURE / "scene", tmp_path / "data" / "OLD_RUN")
    shutil.copytree(FIXTURE / "run", tmp_path / OLD_CONFIG.parent)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_old_config_names_the_old_modules():
    text = (FIXTURE / "run" / "config.yml").read_text()
    for old in ("divff_nerfstudio.trainer.", "divff_nerfstudio.divff_datamanager.", "divff_nerfstudio.divff_model.",
                "divff_nerfstudio.clip_encoder.", "divff_nerfstudio.feature_targets.", "divff_nerfstudio.video_targets."):  # fmt: skip
        assert old in text, f"the fixture should be a config of the old layout ({old})"


def test_old_run_loads_with_every_checkpoint_key(old_run):
    """nerfstudio falls back to a non-strict load on a key mismatch: check the keys ourselves."""
    from nerfstudio.utils.eval_utils import eval_setup

    from divff_nerfstudio.engine.checkpoints import read_checkpoint
    from divff_nerfstudio.model.divff_model import DivffModel

    _, pipeline, checkpoint, step = eval_setup(OLD_CONFIG, test_mode="test")
    assert isinstance(pipeline.model, DivffModel) and step == 29
    saved = read_checkpoint(Path(checkpoint))["pipeline"]
    ours = pipeline.state_dict()
    assert set(ours) == {k.replace("module.", "", 1) for k in saved}
    for key, value in saved.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(ours[key], value), key
    outputs = pipeline.model.get_outputs_for_camera(pipeline.datamanager.eval_dataset.cameras[0:1])
    assert {"rgb", "rgb_objects", "language_features"} <= set(outputs)
    assert torch.isfinite(outputs["rgb"]).all()


def test_old_run_renders_with_ns_render(old_run):
    run(str(BIN / "ns-render"), "dataset", "--load-config", str(OLD_CONFIG), "--split", "test",
        "--rendered-output-names", "rgb", "rgb_actor", "--output-path", "renders", cwd=old_run)  # fmt: skip
    assert sorted(p.name for p in (old_run / "renders" / "test").rglob("*.jpg")), "ns-render wrote no image"


def test_old_run_opens_in_ns_viewer(old_run):
    port = free_port()
    log = old_run / "viewer.log"
    cmd = [str(BIN / "ns-viewer"), "--load-config", str(OLD_CONFIG), "--viewer.websocket-host", "127.0.0.1",
           "--viewer.websocket-port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=old_run, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"ns-viewer exited: {log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                    if page.status == 200 and "Done loading checkpoint" in log.read_text():
                        break
            except OSError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"ns-viewer did not serve the old run within 180 s: {log.read_text()[-3000:]}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


BAD_INPUT = {
    "divff-colmap-import": lambda d: ["--images", str(d), "--model", str(d), "--out", str(d / "out")],
    "divff-evaluate": lambda d: ["--load-config", str(d / "missing" / "config.yml")],
    "divff-summary": lambda d: ["--load-config", str(d / "missing" / "config.yml")],
    "divff-score-export": lambda d: ["--scene", str(d), "--point-cloud", str(d / "points.ply")],
    "divff-score-poses": lambda d: ["--truth", str(d), "--recovered", str(d)],
    "divff-extract-targets": lambda d: ["--data", str(d)],
}


@pytest.mark.parametrize("command", sorted(BAD_INPUT))
def test_a_user_error_is_one_line_naming_the_file(command, tmp_path):
    proc = subprocess.run([str(BIN / command), *BAD_INPUT[command](tmp_path)], capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(tmp_path) in errors[0], proc.stdout[-3000:]


def test_every_user_command_is_installed():
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {f"divff-{name}" for name in ("render", "export", "evaluate", "make-scene", "summary", "extract-targets",
            "colmap-import", "train-test-clip", "score-poses", "score-export")} <= set(scripts)  # fmt: skip
    for name in scripts:
        assert (BIN / name).exists(), f"{name} is not installed: pip install -e ."


def test_ruff_passes():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", str(REPO)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-5000:]
