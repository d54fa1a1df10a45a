"""The image-language encoder loads open_clip checkpoints through the path real weights use, and
says how to fix it when weights cannot be had."""


import pytest
import torch

from divff_nerfstudio.language.clip_encoder import (
    ClipEncoder,
    ClipEncoderConfig,
    ClipWeightsUnavailable,
    register_project_models,
)
from divff_nerfstudio.language.test_clip import MODEL_NAME


def test_local_checkpoint_loads_through_open_clip(tmp_path):
    import open_clip

    register_project_models()
    torch.manual_seed(0)
    model = open_clip.create_model(MODEL_NAME)
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    encoder = ClipEncoder(ClipEncoderConfig(model_name=MODEL_NAME, pretrained=str(path)))
    assert encoder.embed_dim == 64
    # the loaded weights are the saved ones, not a fresh initialisation
    assert torch.equal(encoder.model.visual.conv1.weight, model.visual.conv1.weight)
    images = torch.rand(3, 3, 50, 70)  # any size: resized to the model's input
    emb = encoder.encode_images(images)
    assert emb.shape == (3, 64) and torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    text = encoder.encode_text(["a red cube", "a hand"])
    assert text.shape == (2, 64)
    # the fingerprint identity follows the file content
    first = ClipEncoderConfig(model_name=MODEL_NAME, pretrained=str(path)).identity()
    torch.save({k: v + 1 for k, v in model.state_dict().items()}, path)
    assert ClipEncoderConfig(model_name=MODEL_NAME, pretrained=str(path)).identity() != first


def test_missing_checkpoint_names_the_file(tmp_path):
    missing = tmp_path / "nowhere" / "clip.pt"
    with pytest.raises(ClipWeightsUnavailable, match="nowhere/clip.pt: CLIP checkpoint not found"):
        ClipEncoder(ClipEncoderConfig(model_name=MODEL_NAME, pretrained=str(missing)))


def test_unknown_tag_and_architecture_are_explained():
    with pytest.raises(ClipWeightsUnavailable, match="neither a file nor a pretrained tag"):
        ClipEncoder(ClipEncoderConfig(model_name="ViT-B-16", pretrained="no_such_tag"))
    with pytest.raises(ClipWeightsUnavailable, match="no architecture"):
        ClipEncoder(ClipEncoderConfig(model_name="ViT-Nope", pretrained="x.pt"))


def test_unreachable_download_says_how_to_fix_it(tmp_path, monkeypatch):
    """No internet (or no hub): the error names the weights and both remedies."""
    import open_clip.factory

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", offline)
    with pytest.raises(ClipWeightsUnavailable) as err:
        ClipEncoder(ClipEncoderConfig(model_name="ViT-B-16", pretrained="laion2b_s34b_b88k", cache_dir=tmp_path))
    message = str(err.value)
    assert "laion2b_s34b_b88k" in message and str(tmp_path) in message and "--pipeline.datamanager.language.clip.pretrained" in message
