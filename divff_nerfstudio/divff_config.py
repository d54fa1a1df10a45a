"""`ns-train divff` and `ns-train divff-geometry`: the method specifications registered with nerfstudio.

`divff` learns geometry and language (CLIP ViT-B-16 targets by default: needs the weights once,
see language/clip_encoder.py); `divff-geometry` is NeuralDiff's decomposition alone: no targets to extract,
no weights, every step a geometry step.
"""

from __future__ import annotations

import copy

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.plugins.types import MethodSpecification

from dataparsers.epic_diff import EpicDiffDataParserConfig
from divff_nerfstudio.data.divff_datamanager import DivffDataManagerConfig
from divff_nerfstudio.engine.optimizers import FusedAdamOptimizerConfig
from divff_nerfstudio.engine.pipeline import DivffPipelineConfig
from divff_nerfstudio.engine.trainer import DivffTrainerConfig
from divff_nerfstudio.model.divff_model import DivffModelConfig
from divff_nerfstudio.utils import compat

compat.install()

divff_method = MethodSpecification(
    config=DivffTrainerConfig(
        method_name="divff",
        steps_per_eval_batch=200,
        steps_per_eval_image=1000,
        steps_per_eval_all_images=100000,
        steps_per_save=1000,
        max_num_iterations=3000,
        mixed_precision=False,
        pipeline=DivffPipelineConfig(
            datamanager=DivffDataManagerConfig(
                dataparser=EpicDiffDataParserConfig(),
                train_num_rays_per_batch=1024,
                eval_num_rays_per_batch=1024,
            ),
            # 2048 rays x 16 render samples x 64 hidden floats = 8 MB per activation: glibc serves that
            # from its heap; at 4x that (above its largest mmap threshold) every activation of every
            # chunk was fresh memory to fault in (measured, 228x128 frame, 16 samples: 0.81 s at 2048
            # rays, 0.89 s at 4096, 0.90 s at 1024)
            model=DivffModelConfig(eval_num_rays_per_chunk=2048),
        ),
        optimizers={
            "proposal_networks": {
                "optimizer": FusedAdamOptimizerConfig(lr=1e-2, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-3, max_steps=3000),
            },
            "fields": {
                "optimizer": FusedAdamOptimizerConfig(lr=1e-2, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-3, max_steps=3000),
            },
            "language": {"optimizer": FusedAdamOptimizerConfig(lr=5e-3, eps=1e-15), "scheduler": None},
            # the per-image colour corrections (--pipeline.model.image-exposure): at the grids' 1e-2 the
            # average-exposure renders lost colour (clean seed-21 scene, 3500 steps, seeds 42 / 7: PSNR
            # 26.2 / 27.9 against 28.4 / 28.0 here; mAP 90.2 / 84.5 against 87.5 / 86.5)
            "exposure": {
                "optimizer": FusedAdamOptimizerConfig(lr=1e-3, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=3000),
            },
        },
        viewer=ViewerConfig(num_rays_per_chunk=2048, websocket_host="127.0.0.1"),
        vis="viewer",
    ),
    description="DIV-FF: static background, moving objects and actor, each with CLIP and video-language features",
)


def _geometry_only():
    config = copy.deepcopy(divff_method.config)
    config.method_name = "divff-geometry"
    config.pipeline.datamanager.language.enabled = False
    return config


divff_geometry_method = MethodSpecification(
    config=_geometry_only(),
    description="NeuralDiff triple-stream field: static background, moving objects and actor (no language)",
)
