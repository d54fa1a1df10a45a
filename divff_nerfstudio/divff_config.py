"""`ns-train divff`: the method specification registered with nerfstudio (and nothing else)."""

from __future__ import annotations

from dataparsers.epic_diff import EpicDiffDataParserConfig
from divff_nerfstudio import compat
from divff_nerfstudio.divff_model import DivffModelConfig
from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

compat.install()

divff_method = MethodSpecification(
    config=TrainerConfig(
        method_name="divff",
        steps_per_eval_batch=200,
        steps_per_eval_image=1000,
        steps_per_eval_all_images=100000,
        steps_per_save=1000,
        max_num_iterations=3000,
        mixed_precision=False,
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=EpicDiffDataParserConfig(),
                train_num_rays_per_batch=1024,
                eval_num_rays_per_batch=1024,
                camera_optimizer=CameraOptimizerConfig(mode="off"),
            ),
            model=DivffModelConfig(eval_num_rays_per_chunk=4096),
        ),
        optimizers={
            "proposal_networks": {
                "optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-3, max_steps=3000),
            },
            "fields": {
                "optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-3, max_steps=3000),
            },
        },
        viewer=ViewerConfig(num_rays_per_chunk=4096, websocket_host="127.0.0.1"),
        vis="viewer",
    ),
    description="NeuralDiff/DIV-FF triple-stream field: static background, moving objects and actor",
)
