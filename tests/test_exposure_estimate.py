"""The exposure read off the frames: close to the gains the generator applied, none on a clean clip,
and where a run from scratch starts its per-image exposure."""

import copy
from dataclasses import replace

import numpy as np
import torch
from nerfstudio.data.datasets.base_dataset import InputDataset

from dataparsers.epic_diff import EpicDiffDataParserConfig
from divff_nerfstudio.data.exposure_estimate import ExposureEstimateConfig, estimate_log_gains
from divff_nerfstudio.synthetic import SceneConfig, write_scene
from divff_nerfstudio.synthetic.camera_effects import CameraEffects, CameraResponse

DRIFT = CameraEffects(exposure_drift=0.3, white_balance_drift=0.05, noise=0.01)
SCENE = SceneConfig(seed=11, frames=30, width=96, height=64, objects=3, texture_detail=0.3, camera=DRIFT)


def frames_and_truth(scene, camera: CameraEffects):
    outputs = EpicDiffDataParserConfig(data=scene).setup().get_dataparser_outputs("train")
    dataset = InputDataset(outputs)
    images = [dataset.get_image_float32(i)[..., :3] for i in range(len(dataset))]
    frame_index = [int(f) for f in outputs.metadata["frame_index"]]
    response = CameraResponse(camera, SCENE.frames, SCENE.seed)
    truth = (np.log(response.exposure)[:, None] + np.log(response.white_balance))[frame_index]
    return images, frame_index, truth - truth.mean(axis=0)


def test_estimated_gains_follow_the_drift_the_generator_applied(tmp_path):
    images, frame_index, truth = frames_and_truth(write_scene(tmp_path / "drift", SCENE), DRIFT)
    shuffled = np.random.default_rng(0).permutation(len(images))  # neighbours come from frame_index, not list order
    estimate = estimate_log_gains([images[i] for i in shuffled], [frame_index[i] for i in shuffled], ExposureEstimateConfig())
    estimate = estimate.numpy()[np.argsort(shuffled)]
    assert estimate.shape == truth.shape and np.allclose(estimate.mean(axis=0), 0, atol=1e-6)
    assert truth.std() > 0.1, "the clip should drift"
    error = np.sqrt(((estimate - truth) ** 2).mean())
    assert error < 0.03, f"rms error of the log gains {error:.3f} (the drift's spread {truth.std():.3f})"


def test_a_clip_without_drift_gets_no_gain(tmp_path):
    clean = write_scene(tmp_path / "clean", replace(SCENE, camera=CameraEffects()))
    images, frame_index, _ = frames_and_truth(clean, CameraEffects())
    estimate = estimate_log_gains(images, frame_index, ExposureEstimateConfig())
    assert float(estimate.abs().max()) < 0.03


def test_a_run_from_scratch_starts_its_exposure_from_the_estimate(small_scene, tmp_path):
    from divff_nerfstudio.divff_config import divff_geometry_method

    def first_step(enabled: bool) -> torch.Tensor:
        config = copy.deepcopy(divff_geometry_method.config)
        config.machine.device_type = "cpu"
        config.data = config.pipeline.datamanager.data = small_scene
        config.pipeline.datamanager.dataparser = EpicDiffDataParserConfig(data=small_scene)
        config.pipeline.datamanager.train_num_rays_per_batch = 256
        config.pipeline.datamanager.exposure_estimate = ExposureEstimateConfig(enabled=enabled)
        config.output_dir = tmp_path / str(enabled)
        config.vis = "tensorboard"
        config.set_timestamp()
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup(test_mode="test")
        trainer.pipeline.get_train_loss_dict(0)
        return trainer.pipeline.model.exposure.correction.weight.detach()[:, :3].clone(), trainer

    started, trainer = first_step(True)
    expected = trainer.pipeline.datamanager.exposure_log_gains()
    assert torch.allclose(started, expected) and float(expected.abs().max()) > 0
    trainer.pipeline.get_train_loss_dict(1)  # later steps (and resumed runs, which start later) leave it to training
    assert torch.equal(trainer.pipeline.model.exposure.correction.weight.detach()[:, :3], started)
    untouched, _ = first_step(False)
    assert float(untouched.abs().max()) == 0.0
