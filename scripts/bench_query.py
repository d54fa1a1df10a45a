#!/usr/bin/env python
"""Benchmark: how fast a new text query re-renders a view, and whether memory stays flat.

Loads a trained divff run, renders one test view (the full render a new camera costs), then asks
new text queries for the same view: each is encoded and its relevancy maps (composite and every
stream) computed from the view's stored language features, no retraining or re-extraction.
Reports seconds per query and the process's resident memory before and after many queries.

Example: python scripts/bench_query.py --load-config outputs/SYN_00/divff/<run>/config.yml --queries 1000
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Tuple

import numpy as np
import torch
import tyro
from nerfstudio.utils.eval_utils import eval_setup
from nerfstudio.utils.rich_utils import CONSOLE


def rss_mb() -> float:
    """Current resident set size (MB), from /proc (ru_maxrss would only give the peak)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def main(
    load_config: Path,
    words: Tuple[str, ...] = ("red cube", "hand", "counter", "blue ball", "floor", "green cone"),
    queries: int = 200,
    threads: int = 2,
    output: Path | None = None,
) -> None:
    """Time new queries on one view.

    Args:
        load_config: config.yml of a divff run with language heads.
        words: Query texts, cycled; each use gets a different suffix so no query repeats.
        queries: Number of queries (1000 checks that memory stays flat).
        threads: CPU threads for torch.
        output: JSON file for the figures (default: beside the config).
    """
    torch.set_num_threads(threads)
    _, pipeline, _, _ = eval_setup(load_config, test_mode="test")
    model = pipeline.model
    camera = pipeline.datamanager.eval_dataset.cameras[0:1].to(model.device)
    start = time.perf_counter()
    model.get_outputs_for_camera(camera)
    render_s = time.perf_counter() - start
    times, memory = [], [rss_mb()]
    for i in range(queries):
        start = time.perf_counter()
        model.queries.set(f"{words[i % len(words)]} {i // len(words)}" if i >= len(words) else words[i])
        outputs = model.get_outputs_for_camera(camera)
        assert outputs["relevancy"].shape[:2] == (int(camera.height), int(camera.width))
        times.append(time.perf_counter() - start)
        if (i + 1) % max(queries // 10, 1) == 0:
            memory.append(rss_mb())
    report = {
        "view": f"{int(camera.width)}x{int(camera.height)}",
        "full_render_s": render_s,
        "query_s_median": float(np.median(times)),
        "query_s_max": float(np.max(times)),
        "queries": queries,
        "rss_mb": memory,
    }
    CONSOLE.print(
        f"view {report['view']}: full render {render_s:.2f} s; new query: median {report['query_s_median']:.3f} s, "
        f"max {report['query_s_max']:.3f} s over {queries} queries (render/query ratio {render_s / report['query_s_median']:.1f}); "
        f"RSS {memory[0]:.0f} MB -> {memory[-1]:.0f} MB"
    )
    out = output or load_config.parent / "bench_query.json"
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    tyro.cli(main)
