"""The optical-flow motion prior: epipolar geometry from the poses, evidence that lands on what
moves, and the loss it adds to training."""

import numpy as np
import torch
from nerfstudio.data.datasets.base_dataset import InputDataset

from dataparsers.epic_diff import EpicDiffDataParserConfig
from divff_nerfstudio.data.motion_evidence import MotionPriorConfig, epipolar_residual, fundamental, motion_evidence
from divff_nerfstudio.synthetic import SceneConfig
from divff_nerfstudio.synthetic.raycast import render_frame
from divff_nerfstudio.synthetic.scene import KitchenClip


def test_static_points_have_no_epipolar_residual(small_scene):
    """A static plane seen by two training cameras: its flow lies on the epipolar lines at any
    depth; a flow pushed off them by d pixels has residual d."""
    cameras = EpicDiffDataParserConfig(data=small_scene).setup().get_dataparser_outputs("train").cameras
    h, w = int(cameras.height[0]), int(cameras.width[0])
    v, u = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    depth = 0.5 + (u / w)  # z-depth varying across the image
    fx, fy, cx, cy = (float(getattr(cameras, k)[0]) for k in ("fx", "fy", "cx", "cy"))
    c2w = cameras.camera_to_worlds.double().numpy()
    cam = np.stack([(u - cx) / fx * depth, -(v - cy) / fy * depth, -depth], -1)
    world = cam @ c2w[0, :, :3].T + c2w[0, :, 3]
    p = (world - c2w[3, :, 3]) @ c2w[3, :, :3]
    end = np.stack([fx * p[..., 0] / -p[..., 2] + cx, -fy * p[..., 1] / -p[..., 2] + cy], -1)
    flow = end - np.stack([u, v], -1)
    F = fundamental(cameras, 0, 3)
    assert np.abs(epipolar_residual(flow, F)).max() < 1e-6
    lines = np.stack([u, v, np.ones_like(u)], -1) @ F.T
    normal = lines[..., :2] / np.hypot(lines[..., 0], lines[..., 1])[..., None]
    assert np.allclose(epipolar_residual(flow + 2.0 * normal, F), 2.0, atol=1e-6)


def test_evidence_lands_on_what_moves(small_scene):
    outputs = EpicDiffDataParserConfig(data=small_scene).setup().get_dataparser_outputs("train")
    dataset = InputDataset(outputs)
    images = [dataset.get_image_float32(i)[..., :3] for i in range(len(dataset))]
    frame_index = [int(f) for f in outputs.metadata["frame_index"]]
    evidence = motion_evidence(images, outputs.cameras, frame_index, MotionPriorConfig(enabled=True))
    assert evidence.shape == (len(images), *images[0].shape[:2]) and 0 <= float(evidence.min()) <= float(evidence.max()) <= 1
    from conftest import SMALL

    clip = KitchenClip(SMALL.seed, SMALL.frames, SMALL.objects)
    intr = SceneConfig(width=SMALL.width, height=SMALL.height).intrinsics()
    on_dynamic = on_static = 0.0
    for k, index in enumerate(frame_index):
        labels = render_frame(clip, index, intr, 1, labels=True).labels
        e = evidence[k].float().numpy()
        on_dynamic += e[labels > 0].sum()
        on_static += e[labels == 0].sum()
    assert on_dynamic > on_static, f"most evidence should be on moving things ({on_dynamic:.1f} vs {on_static:.1f})"


def test_the_motion_loss_joins_training(small_scene, tmp_path):
    import copy

    from divff_nerfstudio.divff_config import divff_geometry_method

    config = copy.deepcopy(divff_geometry_method.config)
    config.machine.device_type = "cpu"
    config.data = small_scene
    config.pipeline.datamanager.data = small_scene
    config.pipeline.datamanager.dataparser = EpicDiffDataParserConfig(data=small_scene)
    config.pipeline.datamanager.train_num_rays_per_batch = 256
    config.pipeline.datamanager.motion_prior.enabled = True
    config.output_dir = tmp_path
    config.vis = "tensorboard"
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup(test_mode="test")
    _, loss_dict, _ = trainer.pipeline.get_train_loss_dict(0)
    assert "motion_loss" in loss_dict and torch.isfinite(loss_dict["motion_loss"])
    assert trainer.pipeline.datamanager.motion is not None
