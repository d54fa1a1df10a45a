#!/usr/bin/env python
"""Benchmark: what a connected browser costs training. `ns-train` runs four times on one scene for
the same steps, in one run of this script: with `--vis tensorboard`; with the live viewer
(`--vis viewer+tensorboard`) and no page; with a page of it open in headless Chromium (at the camera
the viewer opens at), the browser as it comes (here it draws WebGL in software, SwiftShader, on the
same cores, and raises its GPU process' priority); and the same with every browser thread at the
lowest priority, so it draws with idle CPU only: the viewer's own cost (renders, encoding,
websocket), as with a browser on another machine or drawing on a GPU.

Prints each run's training rays/s past the warm-up steps: by the wall clock (steps done over the
time they took, whatever else the process did meanwhile) and nerfstudio's own "Train Rays / Sec"
(the median of its per-step figure, timed inside the step only), and their ratios to tensorboard
alone. Same threads for all: whatever torch picks on this machine.

Example: python scripts/bench_viewer.py --scene data/EPIC-Diff/BENCH_CLEAN_21 \
  --clip outputs/test_clip/divff_tiny_clip.pt --steps 300
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import tyro
import yaml
from nerfstudio.utils.rich_utils import CONSOLE
from rich.table import Table

from divff_nerfstudio.language.test_clip import MODEL_NAME
from divff_nerfstudio.utils.headless_browser import free_port, listening, missing_browser, open_page

BIN = Path(sys.executable).parent
RUNS = {
    "--vis tensorboard": ("tensorboard", None),
    "viewer, no page": ("viewer+tensorboard", None),
    "viewer, page open": ("viewer+tensorboard", False),
    "viewer, page open, browser niced": ("viewer+tensorboard", True),
}
"""name: (--vis, None for no page or whether the browser is niced)."""


@dataclass
class BenchViewer:
    scene: Path
    """A scene folder (EPIC-Diff format)."""
    clip: Optional[Path] = None
    """The test CLIP checkpoint (divff-train-test-clip) for `divff`; not needed for divff-geometry."""
    method: str = "divff"
    steps: int = 300
    warmup: int = 50
    """Steps left out of the median: the first renders and the JIT warm-up."""
    out: Path = Path("outputs/bench_viewer")

    def main(self) -> None:
        if missing_browser():
            raise SystemExit(f"error: {missing_browser()}")
        rates = {name: self._rays_per_second(vis, niced) for name, (vis, niced) in RUNS.items()}
        table = Table(title=f"ns-train {self.method} on {self.scene.name}, steps {self.warmup}-{self.steps}")
        table.add_column("--vis")
        table.add_column("rays/s, wall clock", justify="right")
        table.add_column("rays/s in the step (median)", justify="right")
        table.add_column("ratio to tensorboard (wall, step)", justify="right")
        base = rates["--vis tensorboard"]
        for name, (wall, step) in rates.items():
            table.add_row(name, f"{wall:,.0f}", f"{step:,.0f}", f"{wall / base[0]:.2f}, {step / base[1]:.2f}")
        CONSOLE.print(table)
        CONSOLE.print(f"runs and logs: {self.out}")

    def _command(self, vis: str, port: int, name: str) -> List[str]:
        cmd = [
            str(BIN / "ns-train"), self.method, "--data", str(self.scene), "--machine.device-type", "cpu",
            "--max-num-iterations", str(self.steps), "--steps-per-save", str(self.steps), "--logging.steps-per-log", "10",
            "--vis", vis, "--output-dir", str(self.out), "--timestamp", name,
            "--viewer.websocket-host", "127.0.0.1", "--viewer.websocket-port", str(port),
        ]  # fmt: skip
        if self.clip is not None:
            cmd += ["--pipeline.datamanager.language.clip.model-name", MODEL_NAME, "--pipeline.datamanager.language.clip.pretrained", str(self.clip)]
        return cmd

    def _rays_per_second(self, vis: str, niced: Optional[bool]) -> Tuple[float, float]:
        port = free_port()
        name = vis.replace("+", "_") + {None: "", False: "_page", True: "_page_niced"}[niced] if "viewer" in vis else vis
        run = self.out / self.scene.name / self.method / name
        log = self.out / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        CONSOLE.print(f"ns-train {self.method} --vis {vis}: {self.steps} steps (log: {log})")
        with open(log, "w") as out:
            # SIGINT at its default: a shell's background job (nohup ... &) would pass it on ignored
            process = subprocess.Popen(self._command(vis, port, name), stdout=out, stderr=subprocess.STDOUT, preexec_fn=_default_sigint)
        page = None
        last = run / "nerfstudio_models" / f"step-{self.steps - 1:09d}.ckpt"
        try:
            with CONSOLE.status(f"training with --vis {vis}"):
                while not last.exists():
                    if process.poll() is not None:
                        if process.returncode != 0:
                            raise SystemExit(f"error: ns-train failed; see {log}")
                        break
                    if niced is not None and page is None and listening(port):
                        page = open_page(f"http://127.0.0.1:{port}")
                    if page is not None and niced:
                        _lowest_priority(page.service.process.pid)  # again: it starts processes as it goes
                    time.sleep(1)
        finally:
            if page is not None:
                page.quit()
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # the viewer keeps serving after the last step
                process.wait(timeout=60)
        events = [e for e in _scalars(run, "Train Rays / Sec") if e.step >= self.warmup]
        config = yaml.load((run / "config.yml").read_text(), Loader=yaml.Loader)
        rays = config.pipeline.datamanager.train_num_rays_per_batch
        wall = rays * (events[-1].step - events[0].step) / (events[-1].wall_time - events[0].wall_time)
        return wall, statistics.median(e.value for e in events)


def _lowest_priority(pid: int) -> None:
    """Every thread of every process under `pid` at nice 19 (Linux sets priorities per thread: the
    drawing threads of Chromium's GPU process would keep theirs)."""
    import psutil

    for child in psutil.Process(pid).children(recursive=True):
        try:
            for thread in child.threads():
                if os.getpriority(os.PRIO_PROCESS, thread.id) != 19:
                    os.setpriority(os.PRIO_PROCESS, thread.id, 19)
        except (psutil.Error, OSError):  # gone meanwhile
            pass


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _scalars(run: Path, tag: str) -> list:
    """The scalar events of `tag` (step, wall_time, value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    return list(events.Scalars(tag))


def entrypoint() -> None:
    tyro.cli(BenchViewer).main()


if __name__ == "__main__":
    entrypoint()
