#!/usr/bin/env python
"""Benchmark: divff quality over wall-clock training time on the CPU, and its speed next to nerfacto.

On a generated 120-frame 228x128 scene with a fixed number of CPU threads, trains `ns-train divff`'s
configuration in-process and evaluates it on the test frames (mAP of the dynamic mask, PSNR,
object/actor-stream AP) whenever the training time passes a checkpoint (evaluation time is not
counted). Then times plain nerfacto's training steps on the same scene and batch size, and prints
both throughputs and their ratio, all measured in this one run.

Example: python scripts/bench_train.py --minutes 2 5 10 15
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import List, Tuple

import torch
import tyro
from nerfstudio.configs.method_configs import method_configs
from nerfstudio.engine.callbacks import TrainingCallbackLocation
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.rich_utils import CONSOLE
from rich.table import Table

from dataparsers.epic_diff import EpicDiffDataParserConfig
from divff_nerfstudio.divff_config import divff_geometry_method
from divff_nerfstudio.eval.evaluation import evaluate_pipeline
from divff_nerfstudio.model.hash_encoding import cpu_kernel
from divff_nerfstudio.synthetic import SceneConfig, write_scene


def build_trainer(config: TrainerConfig, scene: Path, rays: int, out: Path, max_steps: int) -> Trainer:
    config = copy.deepcopy(config)
    config.machine.device_type = "cpu"
    config.data = scene
    config.pipeline.datamanager.data = scene
    config.pipeline.datamanager.dataparser = EpicDiffDataParserConfig(data=scene)
    config.pipeline.datamanager.train_num_rays_per_batch = rays
    config.pipeline.datamanager.eval_num_rays_per_batch = rays
    config.max_num_iterations = max_steps
    config.vis = "tensorboard"
    config.output_dir = out
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup(test_mode="test")
    return trainer


def train_steps(trainer: Trainer, first: int, count: int) -> float:
    """Run training iterations as ns-train does (with callbacks); seconds spent."""
    start = time.perf_counter()
    trainer.pipeline.train()
    for step in range(first, first + count):
        for cb in trainer.callbacks:
            cb.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        trainer.train_iteration(step)
        for cb in trainer.callbacks:
            cb.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
    return time.perf_counter() - start


def main(
    scene: Path = Path("data/EPIC-Diff/SYN_00"),
    minutes: Tuple[float, ...] = (2.0, 5.0, 10.0, 15.0),
    threads: int = 2,
    rays: int = 1024,
    nerfacto_steps: int = 20,
    output_dir: Path = Path("outputs/bench"),
) -> None:
    """Train divff for the given wall-clock minutes, evaluating at each; then time nerfacto.

    Args:
        scene: EPIC-Diff scene; generated (seed 0, 120 frames, 228x128) if missing.
        minutes: Training-time checkpoints at which to evaluate.
        threads: CPU threads for torch.
        rays: Rays per training batch (both methods).
        nerfacto_steps: Timed nerfacto steps (after 3 warm-up steps).
        output_dir: Where runs and bench_train.json go.
    """
    torch.set_num_threads(threads)
    cpu_kernel()  # build (or load) the hash-grid kernel now, so its compile time is not training time
    if not (scene / "meta.json").is_file():
        write_scene(scene, SceneConfig(seed=0, frames=120))
    trainer = build_trainer(divff_geometry_method.config, scene, rays, output_dir, max_steps=10**6)
    rows: List[dict] = []
    trained, step, chunk = 0.0, 0, 20
    for mark in minutes:
        while trained < mark * 60:
            trained += train_steps(trainer, step, chunk)
            step += chunk
        images = output_dir / "evaluation" if mark == minutes[-1] else None  # images of the last checkpoint
        result = evaluate_pipeline(trainer.pipeline, images).summary()
        rows.append({"minutes": trained / 60, "steps": step, "rays_per_s": step * rays / trained, **result})
        CONSOLE.print(f"after {trained / 60:.1f} min ({step} steps): {result}")

    nerfacto = build_trainer(method_configs["nerfacto"], scene, rays, output_dir, max_steps=nerfacto_steps + 3)
    train_steps(nerfacto, 0, 3)
    nerfacto_rays = nerfacto_steps * rays / train_steps(nerfacto, 3, nerfacto_steps)
    # divff's speed measured the same way, right after, on the same machine state
    divff_rays = nerfacto_steps * rays / train_steps(trainer, step, nerfacto_steps)

    table = Table(title=f"divff on {scene.name}, {threads} threads, {rays} rays/batch")
    for col in ("minutes", "steps", "rays/s", "mAP", "PSNR", "mAP objects", "mAP actor"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            f"{r['minutes']:.1f}", str(r["steps"]), f"{r['rays_per_s']:.0f}",
            *[f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("mAP", "PSNR", "mAP_objects", "mAP_actor")],
        )  # fmt: skip
    CONSOLE.print(table)
    CONSOLE.print(f"training throughput: divff {divff_rays:.0f} rays/s, nerfacto {nerfacto_rays:.0f} rays/s, ratio {divff_rays / nerfacto_rays:.2f}")
    output_dir.mkdir(parents=True, exist_ok=True)
    report = {"scene": str(scene), "threads": threads, "rays": rays, "curve": rows, "divff_rays_per_s": divff_rays, "nerfacto_rays_per_s": nerfacto_rays}
    (output_dir / "bench_train.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    tyro.cli(main)
