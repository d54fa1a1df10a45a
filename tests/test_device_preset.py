"""The device preset (model/device_preset.py): divff built with tiny-cuda-nn or torch and with CPU- or
GPU-sized grids and samples by where it runs, what a user sets kept, and a run's config.yml naming
what it was built with, so it loads the same anywhere. The CUDA run skips without a GPU."""

from dataclasses import fields

import pytest
import torch
import yaml
from test_divff_end_to_end import ns_train

from divff_nerfstudio.model import device_preset
from divff_nerfstudio.model.device_preset import CPU_SIZES, GPU_SIZES, DevicePresetError, Sizes, resolve
from divff_nerfstudio.model.divff_model import DivffModelConfig


def sizes_of(config: DivffModelConfig) -> Sizes:
    return Sizes(**{f.name: getattr(config, f.name) for f in fields(Sizes)})


def test_the_cpu_gets_the_cpu_sizes_and_torch():
    config = DivffModelConfig()
    said = resolve(config, "cpu")
    assert config.implementation == "torch" and sizes_of(config) == CPU_SIZES
    assert said.startswith("divff on cpu: torch grids and MLPs") and "static_levels 12" in said


@pytest.mark.parametrize("importable, expected", [(True, "tcnn"), (False, "torch")])
def test_cuda_gets_the_gpu_sizes_and_tiny_cuda_nn_where_it_imports(monkeypatch, importable, expected):
    monkeypatch.setattr(device_preset, "tcnn_importable", lambda: importable)
    config = DivffModelConfig()
    said = resolve(config, torch.device("cuda"))
    assert config.implementation == expected and sizes_of(config) == GPU_SIZES
    assert ("tiny-cuda-nn" in said) == importable


def test_what_the_user_sets_stays_and_tcnn_where_it_cannot_run_is_an_error(monkeypatch):
    config = DivffModelConfig(static_levels=14, num_nerf_samples=32, implementation="torch")
    monkeypatch.setattr(device_preset, "tcnn_importable", lambda: True)
    resolve(config, "cuda")
    assert (config.static_levels, config.num_nerf_samples, config.implementation) == (14, 32, "torch")
    assert config.transient_levels == GPU_SIZES.transient_levels
    monkeypatch.setattr(device_preset, "tcnn_importable", lambda: False)
    with pytest.raises(DevicePresetError, match="needs CUDA and tiny-cuda-nn"):
        resolve(DivffModelConfig(implementation="tcnn"), "cuda")
    with pytest.raises(DevicePresetError, match="device cpu"):
        resolve(DivffModelConfig(implementation="tcnn"), "cpu")


def saved_model_config(config_yml) -> DivffModelConfig:
    return yaml.load(config_yml.read_text(), Loader=yaml.Loader).pipeline.model


def test_a_run_saves_what_its_model_was_built_with(language_run):
    """nerfstudio writes config.yml before the model exists; the trainer writes it again."""
    model = saved_model_config(language_run)
    assert model.implementation == "torch" and sizes_of(model) == CPU_SIZES


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_divff_trains_on_cuda_with_the_gpu_preset(small_scene, tmp_path):
    config = ns_train("divff-geometry", small_scene, tmp_path, 30, "--machine.device-type", "cuda")
    model = saved_model_config(config)
    assert sizes_of(model) == GPU_SIZES
    assert model.implementation == ("tcnn" if device_preset.tcnn_importable() else "torch")
    assert (config.parent / "nerfstudio_models" / "step-000000029.ckpt").is_file()


def test_the_torch_path_builds_nerfstudios_own_modules():
    """Same classes, defaults (a ReLU between layers) and parameter names as nerfstudio's: runs and
    checkpoints from before the preset existed are unchanged."""
    from nerfstudio.field_components.mlp import MLP
    from torch import nn

    made, reference = device_preset.mlp(8, 2, 16, out_dim=4), MLP(8, 2, 16, out_dim=4)
    assert type(made) is MLP and isinstance(made.activation, nn.ReLU) and made.out_activation is None
    assert made.state_dict().keys() == reference.state_dict().keys()
    grid = device_preset.hash_grid(4, 10, 64)
    assert type(grid).__name__ == "FastHashEncoding" and grid.get_out_dim() == 8
