"""The X-CLIP video backend with a tiny random model of its architecture (no download): loaded as
real weights are, its targets extracted from the clip's pixels and cached, text encoded by its own
text tower, through ns-train and divff-evaluate's affordance scores, and a clear message when the
weights cannot be had."""

import json

import pytest
import torch
from test_divff_end_to_end import BIN, ns_train, run

from dataparsers.epic_diff import EpicDiffDataParserConfig
from divff_nerfstudio.data.divff_datamanager import DivffDataManagerConfig
from divff_nerfstudio.language.spec import LanguageTargetsConfig
from divff_nerfstudio.language.video_targets import VideoExtractorConfig
from divff_nerfstudio.model.queries import QueryEncoder, TextQuery


def manager(scene, language):
    config = DivffDataManagerConfig(data=scene, dataparser=EpicDiffDataParserConfig(data=scene), language=language)
    return config.setup(device="cpu", test_mode="val")


def test_xclip_targets_are_extracted_from_pixels_and_cached(small_scene, tiny_xclip, tmp_path):
    # oracle image targets: no CLIP weights needed beside the video model
    video = VideoExtractorConfig(backend="xclip", model=str(tiny_xclip))
    language = LanguageTargetsConfig(oracle=True, oracle_grid_stride=8, cache_dir=tmp_path, video=video)
    first = manager(small_scene, language)
    spec = first.train_dataset.metadata["language"]
    assert spec.video_dim == 32 and spec.video.window == 4, "the model's own embedding size and frame count"
    grids = first.targets.grids["video"]
    assert grids.shape == (16, 8, 12, 32) and torch.isfinite(grids).all()
    torch.testing.assert_close(grids.float().norm(dim=-1), torch.ones(16, 8, 12), atol=2e-3, rtol=0)
    assert (grids[0].float() - grids[8].float()).abs().max() > 1e-3, "frames of other clips get other targets"
    assert len(list(first.targets.folders["video"].glob("*.npy"))) == 16

    again = manager(small_scene, language)
    assert torch.equal(again.targets.grids["video"], grids)
    assert again.train_dataset.metadata["language"].video._model is None, "all cached: the model is never loaded"

    encoder = QueryEncoder(spec.clip, spec.video, spec.clip_dim)
    positive, negatives = encoder.encode(TextQuery.parse("carrying", kind="video"))
    assert positive.shape == (32,) and negatives.shape == (4, 32)
    assert not torch.allclose(positive, negatives[0])


def test_missing_xclip_weights_name_the_model(tmp_path):
    from divff_nerfstudio.language.xclip_video import VideoWeightsUnavailable

    with pytest.raises(VideoWeightsUnavailable, match="nowhere: could not load the X-CLIP config"):
        VideoExtractorConfig(backend="xclip", model=str(tmp_path / "nowhere")).setup()


def test_xclip_runs_through_training_and_affordance_evaluation(small_scene, tiny_xclip, tmp_path):
    """The plumbing only: a random model's figures mean nothing."""
    config = ns_train(
        "divff", small_scene, tmp_path, 200,
        "--pipeline.datamanager.language.oracle", "True",
        "--pipeline.datamanager.language.oracle-grid-stride", "8",
        "--pipeline.datamanager.language.cache-dir", str(tmp_path / "cache"),
        "--pipeline.datamanager.language.video.backend", "xclip",
        "--pipeline.datamanager.language.video.model", str(tiny_xclip),
        "--pipeline.model.geometry-steps", "80",
        "--pipeline.model.feature-steps", "60",
    )  # fmt: skip
    out = tmp_path / "evaluation"
    run(str(BIN / "divff-evaluate"), "--load-config", str(config), "--output-dir", str(out), cwd=tmp_path)
    affordances = json.loads((out / "results.json").read_text())["affordance_segmentation"]
    assert affordances["embedding"] == "video" and set(affordances["IoU"]) == set(affordances["teacher_IoU"]) == {"carrying"}
    assert 0 <= affordances["mIoU"] <= 100 and 0 <= affordances["teacher_mIoU"] <= 100
