#!/usr/bin/env python
"""Benchmark: what a video's length costs. For generated 228x128 scenes of each frame count: peak
memory (RSS) and wall time of extracting the language targets, of training `divff` with language on
and of `divff-evaluate`, the disk the target caches take, and training time per 1,000 steps.

Each phase runs in its own process (its peak RSS is the kernel's for that process alone) with a
fixed number of CPU threads; the test CLIP given with --clip is the image-language model. Scenes
are generated under --data-dir when missing (seed 40 + frame count mod 1000, clean preset).

Example: python scripts/bench_length.py --clip outputs/test_clip/divff_tiny_clip.pt --frames 120 1000
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.table import Table

from divff_nerfstudio.language.test_clip import MODEL_NAME


def _measured(cmd: List[str]) -> Tuple[float, float, str]:
    """Run `cmd`; its wall seconds, its own peak RSS in MB and its output (raises when it fails)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024, out


def _train_child(scene: Path, clip: Path, out: Path, steps: int, threads: int) -> None:
    """In the child: ns-train divff's configuration, set up (targets from the cache), `steps` steps
    timed apart from the set-up, then a saved run that divff-evaluate can load."""
    import torch
    from bench_train import scene_config, train_steps

    from divff_nerfstudio.divff_config import divff_method

    torch.set_num_threads(threads)
    rays = divff_method.config.pipeline.datamanager.train_num_rays_per_batch
    config = scene_config(divff_method.config, scene, rays, out, steps)
    config.pipeline.datamanager.language.clip.model_name = MODEL_NAME
    config.pipeline.datamanager.language.clip.pretrained = str(clip)
    config.pipeline.model.geometry_steps = steps // 2  # half the steps with language on
    config.pipeline.model.feature_steps = steps // 4
    start = time.perf_counter()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    setup = time.perf_counter() - start
    config.save_config()
    seconds = train_steps(trainer, 0, steps)
    trainer.save_checkpoint(steps - 1)
    print(json.dumps({"setup_s": setup, "steps_s": seconds, "config": str(config.get_base_dir() / "config.yml")}))


def bench_length(frames: int, clip: Path, data_dir: Path, out: Path, steps: int, threads: int) -> Dict[str, float]:
    from divff_nerfstudio.synthetic import SceneConfig, write_scene

    scene = data_dir / f"LENGTH_{frames}"
    row: Dict[str, float] = {"frames": frames}
    if not (scene / "meta.json").exists():
        start = time.perf_counter()
        write_scene(scene, SceneConfig(seed=40 + frames % 1000, frames=frames))
        row["generate_s"] = time.perf_counter() - start
    py = sys.executable
    language = ["--language.clip.model-name", MODEL_NAME, "--language.clip.pretrained", str(clip)]
    row["extract_s"], row["extract_rss_mb"], _ = _measured([py, "-m", "divff_nerfstudio.commands.extract_targets", "--data", str(scene), *language, "--threads", str(threads)])
    cache = scene / "divff_cache"
    row["cache_mb"] = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20
    _, row["train_rss_mb"], log = _measured([py, __file__, "--child-train", str(scene), str(clip), str(out / scene.name), str(steps), str(threads)])
    trained = json.loads(log.strip().splitlines()[-1])
    row["setup_s"], row["s_per_1000_steps"] = trained["setup_s"], trained["steps_s"] * 1000 / steps
    os.environ["OMP_NUM_THREADS"] = str(threads)
    row["evaluate_s"], row["evaluate_rss_mb"], _ = _measured(
        [py, "-m", "divff_nerfstudio.commands.evaluate", "--load-config", trained["config"], "--no-teacher"]
    )
    return row


def main(
    clip: Path,
    frames: Tuple[int, ...] = (120, 1000),
    steps: int = 300,
    threads: int = 2,
    data_dir: Path = Path("data/EPIC-Diff"),
    out: Path = Path("outputs/bench_length"),
) -> None:
    """Measure every frame count in --frames and print one table; rows are also written to <out>/length.json.

    Args:
        clip: Test CLIP checkpoint (divff-train-test-clip).
        frames: Frame counts of the generated scenes.
        steps: Training steps per scene (the time per 1,000 steps is scaled from them).
        threads: CPU threads of every phase.
        data_dir: Where scenes are generated (and found when they exist).
        out: Where the runs and the results go.
    """
    rows = []
    for n in frames:
        CONSOLE.print(f"[bold]{n} frames")
        rows.append(bench_length(n, clip, data_dir, out, steps, threads))
        CONSOLE.print(rows[-1])
    table = Table(title=f"video length: {steps} training steps, {threads} threads")
    keys = sorted({k for r in rows for k in r}, key=lambda k: list(rows[-1]).index(k) if k in rows[-1] else 99)
    for key in keys:
        table.add_column(key)
    for r in rows:
        table.add_row(*[f"{r[k]:.1f}" if k in r else "-" for k in keys])
    CONSOLE.print(table)
    if len(rows) > 1:
        base = rows[0]["s_per_1000_steps"]
        CONSOLE.print(", ".join(f"{r['frames']} frames: {r['s_per_1000_steps'] / base:.2f}x the time per step of {rows[0]['frames']}" for r in rows[1:]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "length.json").write_text(json.dumps(rows, indent=1))
    CONSOLE.print(f"results: {out / 'length.json'}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-train":
        scene, clip, out, steps, threads = sys.argv[2:7]
        _train_child(Path(scene), Path(clip), Path(out), int(steps), int(threads))
    else:
        tyro.cli(main)
