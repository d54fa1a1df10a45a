#!/usr/bin/env python
"""Benchmark: divff quality over wall-clock training time on the CPU, its speed next to nerfacto,
and how long one frame takes to render.

On generated 120-frame 228x128 scenes, a clean one and a hard one (held objects, hands passing in
front, printed objects, exposure/white-balance drift, blur, noise, JPEG; seeds no test or default was
tuned on), with a fixed number of CPU threads: trains `ns-train divff-geometry`'s configuration
in-process and evaluates it on the test frames (mAP of the dynamic mask, PSNR, object/actor-stream
AP) whenever the training time passes a mark (evaluation time is not counted). Then times one
full-frame render with every output, and plain nerfacto's training steps on the same scene and
batch size, and prints the throughputs and their ratio, all measured in this one run.

On a GPU (--device cuda) the same, with the model's CUDA preset (tiny-cuda-nn where it imports,
GPU-sized grids and samples; model/device_preset.py) and the GPU synchronised before each time is read.

Example: python scripts/bench_train.py --minutes 2 5 10 15
         python scripts/bench_train.py --scenes hard --motion-prior     # the motion prior's gain
         python scripts/bench_train.py --device cuda --minutes 1 2
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Dict, List, Literal, Tuple

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

SCENES: Dict[str, SceneConfig] = {"clean": SceneConfig(seed=21), "hard": SceneConfig.hard(seed=22)}
"""Benchmark scenes, generated under --data-dir when missing."""


def scene_config(
    config: TrainerConfig, scene: Path, rays: int, out: Path, max_steps: int, seed: int = 42, device: Literal["cpu", "cuda"] = "cpu"
) -> TrainerConfig:
    """A copy of a method's config set to train on `scene` on `device`, logging to tensorboard under `out`."""
    config = copy.deepcopy(config)
    config.machine.device_type = device
    config.machine.seed = seed
    config.data = scene
    config.pipeline.datamanager.data = scene
    config.pipeline.datamanager.dataparser = EpicDiffDataParserConfig(data=scene)
    config.pipeline.datamanager.train_num_rays_per_batch = rays
    config.pipeline.datamanager.eval_num_rays_per_batch = rays
    config.max_num_iterations = max_steps
    config.vis = "tensorboard"
    config.output_dir = out
    config.set_timestamp()
    return config


def build_trainer(config: TrainerConfig, scene: Path, rays: int, out: Path, max_steps: int, seed: int = 42, device: Literal["cpu", "cuda"] = "cpu") -> Trainer:
    trainer = scene_config(config, scene, rays, out, max_steps, seed, device).setup(local_rank=0, world_size=1)
    trainer.setup(test_mode="test")  # evaluation on the test split (training runs the same either way)
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
    _synchronise()
    return time.perf_counter() - start


def _synchronise() -> None:
    """Wait for queued GPU work, so a time read next includes it (nothing to wait for on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def render_seconds(trainer: Trainer, repeats: int = 3) -> float:
    """Median time of one full test frame with every output (as evaluation and ns-render ask)."""
    model = trainer.pipeline.model
    model.eval()
    camera = trainer.pipeline.datamanager.eval_dataset.cameras[0:1].to(model.device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.get_outputs_for_camera(camera)
        _synchronise()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bench_scene(
    name: str, scene: Path, minutes: Tuple[float, ...], rays: int, out: Path, motion_prior: bool, image_exposure: bool, seed: int, device: Literal["cpu", "cuda"]
) -> Dict:
    config = copy.deepcopy(divff_geometry_method.config)
    config.pipeline.datamanager.motion_prior.enabled = motion_prior
    config.pipeline.model.image_exposure = image_exposure
    trainer = build_trainer(config, scene, rays, out / name, max_steps=10**6, seed=seed, device=device)
    rows: List[dict] = []
    trained, step, chunk = 0.0, 0, 20
    for mark in minutes:
        while trained < mark * 60:
            trained += train_steps(trainer, step, chunk)
            step += chunk
        images = out / name / "evaluation" if mark == minutes[-1] else None  # images of the last mark
        result = evaluate_pipeline(trainer.pipeline, images).summary()
        rows.append({"minutes": trained / 60, "steps": step, "rays_per_s": step * rays / trained, **result})
        CONSOLE.print(f"{name}: after {trained / 60:.1f} min ({step} steps): {result}")
    return {"scene": str(scene), "curve": rows, "trainer": trainer, "steps": step}


def main(
    scenes: Tuple[Literal["clean", "hard"], ...] = ("clean", "hard"),
    minutes: Tuple[float, ...] = (2.0, 5.0, 10.0, 15.0),
    threads: int = 2,
    rays: int = 1024,
    nerfacto_steps: int = 20,
    motion_prior: bool = False,
    image_exposure: bool = True,
    seed: int = 42,
    data_dir: Path = Path("data/EPIC-Diff"),
    output_dir: Path = Path("outputs/bench"),
    device: Literal["cpu", "cuda"] = "cpu",
) -> None:
    """Train divff for the given wall-clock minutes on each scene, evaluating at each mark; then
    time a render and nerfacto.

    Args:
        scenes: Which benchmark scenes (clean: seed 21; hard: SceneConfig.hard(seed=22)).
        minutes: Training-time marks at which to evaluate.
        threads: CPU threads for torch.
        rays: Rays per training batch (both methods).
        nerfacto_steps: Timed nerfacto steps (after 3 warm-up steps).
        motion_prior: Train with the optical-flow motion prior.
        image_exposure: Learn a colour gain and offset per training image (--pipeline.model.image-exposure,
            on by default as in divff; --no-image-exposure to compare).
        seed: Training seed (--machine.seed): run twice with others to see the spread.
        data_dir: Where the benchmark scenes are (generated when missing).
        output_dir: Where runs and bench_train.json go.
        device: Where to train: cpu, or cuda (the model's GPU preset).
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False)")
    torch.set_num_threads(threads)
    if device == "cpu":
        cpu_kernel()  # build (or load) the hash-grid kernel now, so its compile time is not training time
    results = {}
    for name in scenes:
        scene = data_dir / f"BENCH_{name.upper()}_{SCENES[name].seed:02d}"
        if not (scene / "meta.json").is_file():
            write_scene(scene, SCENES[name])
        results[name] = bench_scene(name, scene, minutes, rays, output_dir, motion_prior, image_exposure, seed, device)
    last = results[scenes[-1]]
    trainer = last.pop("trainer")
    render_s = render_seconds(trainer)
    nerfacto = build_trainer(method_configs["nerfacto"], Path(last["scene"]), rays, output_dir, max_steps=nerfacto_steps + 3, device=device)
    train_steps(nerfacto, 0, 3)
    nerfacto_rays = nerfacto_steps * rays / train_steps(nerfacto, 3, nerfacto_steps)
    # divff's speed measured the same way, right after, on the same machine state
    divff_rays = nerfacto_steps * rays / train_steps(trainer, last["steps"], nerfacto_steps)

    for name, result in results.items():
        result.pop("trainer", None)
        where = f"{threads} threads" if device == "cpu" else torch.cuda.get_device_name()
        table = Table(title=f"divff on {Path(result['scene']).name} ({name}), {where}, {rays} rays/batch"
                      + (", motion prior" if motion_prior else "") + ("" if image_exposure else ", no image exposure"))  # fmt: skip
        for col in ("minutes", "steps", "rays/s", "mAP", "PSNR", "mAP objects", "mAP actor"):
            table.add_column(col)
        for r in result["curve"]:
            table.add_row(
                f"{r['minutes']:.1f}", str(r["steps"]), f"{r['rays_per_s']:.0f}",
                *[f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("mAP", "PSNR", "mAP_objects", "mAP_actor")],
            )  # fmt: skip
        CONSOLE.print(table)
    CONSOLE.print(f"training throughput: divff {divff_rays:.0f} rays/s, nerfacto {nerfacto_rays:.0f} rays/s, ratio {divff_rays / nerfacto_rays:.2f}")
    CONSOLE.print(f"render: one {int(trainer.pipeline.datamanager.eval_dataset.cameras.width[0])}x"
                  f"{int(trainer.pipeline.datamanager.eval_dataset.cameras.height[0])} frame with every output in {render_s:.2f} s")  # fmt: skip
    output_dir.mkdir(parents=True, exist_ok=True)
    report = {"device": device, "threads": threads, "rays": rays, "seed": seed, "motion_prior": motion_prior, "image_exposure": image_exposure, "scenes": results,
              "divff_rays_per_s": divff_rays, "nerfacto_rays_per_s": nerfacto_rays, "render_s": render_s}  # fmt: skip
    path = output_dir / "bench_train.json"
    path.write_text(json.dumps(report, indent=2))
    CONSOLE.print(f"wrote {path} and the last mark's evaluation images under {output_dir}/<scene>/evaluation")


if __name__ == "__main__":
    tyro.cli(main)
