"""Language pieces on hand-made inputs: relevancy math, query checks, per-stream compositing of
features, target lookup, the patch pyramid, region targets and the feature cache's fingerprint."""

import numpy as np
import pytest
import torch
from torch import nn

from divff_nerfstudio.data.divff_datamanager import lookup_targets
from divff_nerfstudio.language.feature_cache import CachedFrames, CacheReadError, FeatureCache, cached_grids
from divff_nerfstudio.language.pyramid_targets import PatchPyramidConfig, pyramid_targets
from divff_nerfstudio.model.compositing import STREAMS
from divff_nerfstudio.model.language_heads import LanguageHeads, feature_loss, relevancy
from divff_nerfstudio.model.queries import MAX_QUERY_CHARS, QueryError, TextQuery


def unit(*v: float) -> torch.Tensor:
    return nn.functional.normalize(torch.tensor(v, dtype=torch.float32), dim=-1)


def test_relevancy_matches_lerf_formula():
    f = torch.stack([unit(1, 0, 0), unit(0, 1, 0), unit(1, 1, 0)])
    q = unit(1, 0, 0)
    negs = torch.stack([unit(0, 1, 0), unit(0, 0, 1)])
    rel = relevancy(f, q, negs)[:, 0]
    for i in range(3):
        pairs = [torch.softmax(10 * torch.stack([f[i] @ q, f[i] @ n]), 0)[0] for n in negs]
        assert rel[i] == pytest.approx(float(min(pairs)), abs=1e-6)
    assert rel[0] > 0.99  # the query itself
    assert rel[1] < 0.01  # exactly a negative
    # equal similarity to query and closest negative: 0.5
    assert relevancy(unit(1, 1, 0)[None], q, negs[:1])[0, 0] == pytest.approx(0.5, abs=1e-6)


def test_query_parsing_refuses_empty_and_cuts_long_text():
    for bad in ("", "   ", "\n\t"):
        with pytest.raises(QueryError, match="empty"):
            TextQuery.parse(bad)
    with pytest.raises(QueryError, match="kind"):
        TextQuery.parse("knife", kind="audio")
    long = TextQuery.parse("knife " * 2000)
    assert len(long.positive) <= MAX_QUERY_CHARS
    assert TextQuery.parse("  couteau   à  pain ").positive == "couteau à pain"
    assert TextQuery.parse("mug").negatives == ("object", "things", "stuff", "hands")  # DIV-FF's
    assert TextQuery.parse("mug", ["  ", "hands"]).negatives == ("hands",)


def test_query_is_never_compared_with_a_negative_naming_it():
    """DIV-FF's "hands" keeps object queries off the hands; a query for hands drops it (else every
    hand would sit at relevancy 0.5), whatever the case, the plural or an article."""
    assert TextQuery.parse("hand").negatives == ("object", "things", "stuff")
    assert TextQuery.parse("The left Hands").negatives == ("object", "things", "stuff")
    assert TextQuery.parse("an object", ["things", "objects"]).negatives == ("things",)
    assert TextQuery.parse("a mug", ["a bowl"]).negatives == ("a bowl",)  # articles are not shared words
    assert TextQuery.parse("stuff", ["stuff"]).negatives == ("stuff",)  # never none left


def test_per_stream_features_composite_like_colour():
    torch.manual_seed(0)
    dims = {"static": 5, "objects": 6, "actor": 7}
    heads = LanguageHeads(dims, {"clip": 4}, hidden_dim=8)
    features = {k: torch.randn(3, 10, d) for k, d in dims.items()}
    weights = {k: torch.rand(3, 10, 1) / 30 for k in STREAMS}
    hidden = heads(features, weights)
    emb = heads.embed(hidden, "clip")
    proj = heads.projections["clip"]
    # projecting the composited hidden feature == compositing projected samples (linear, bias-free)
    for k in STREAMS:
        per_sample = proj(heads.trunks[k](features[k]))
        assert torch.allclose(emb[k], nn.functional.normalize((weights[k] * per_sample).sum(-2), dim=-1), atol=1e-5)
    total = sum(proj(hidden[k]) for k in STREAMS)
    assert torch.allclose(emb["composite"], nn.functional.normalize(total, dim=-1), atol=1e-6)
    # a stream with zero weight contributes nothing to the composite
    silent = {**weights, "actor": torch.zeros(3, 10, 1)}
    emb2 = heads.embed(heads(features, silent), "clip")
    two = proj(heads(features, silent)["static"]) + proj(heads(features, silent)["objects"])
    assert torch.allclose(emb2["composite"], nn.functional.normalize(two, dim=-1), atol=1e-6)


def test_feature_loss_ignores_rays_without_target():
    pred = nn.functional.normalize(torch.randn(4, 8), dim=-1)
    target = pred.clone()
    target[2:] = 0.0  # no target
    assert float(feature_loss(pred, target)) == pytest.approx(0.0, abs=1e-7)
    target[0] = -pred[0]
    assert float(feature_loss(pred, target)) > 0
    assert float(feature_loss(pred, torch.zeros_like(pred))) == 0.0


def test_target_lookup_is_bilinear_between_cell_centres():
    grids = torch.zeros(2, 2, 2, 1, dtype=torch.float16)
    grids[1, :, 1] = 1.0  # right column of image 1
    image_size = (4, 4)  # cells of 2x2 pixels, centres at pixel 1.0 and 3.0 (pixel centres at +0.5)
    idx = torch.tensor([[1, 0, 0], [1, 0, 3], [1, 2, 1], [1, 2, 2], [0, 3, 3]])
    out = lookup_targets(grids, idx, image_size)[:, 0]
    assert out.tolist() == pytest.approx([0.0, 1.0, 0.25, 0.75, 0.0])


def _mean_colour_encoder(crops: torch.Tensor) -> torch.Tensor:
    """A stand-in image encoder: the crop's mean colour."""
    return nn.functional.normalize(crops.mean(dim=(2, 3)), dim=-1)


def test_patch_pyramid_grid_follows_image_content():
    image = torch.zeros(3, 64, 96)
    image[0, :, :48] = 1.0  # red left half
    image[2, :, 48:] = 1.0  # blue right half
    config = PatchPyramidConfig(patch_fractions=(0.2, 0.4), grid_stride=8)
    grid = pyramid_targets(image, _mean_colour_encoder, config)
    assert grid.shape == (8, 12, 3)
    assert torch.allclose(grid.norm(dim=-1), torch.ones(8, 12), atol=1e-5)
    assert grid[4, 0, 0] > 0.95 and grid[4, -1, 2] > 0.95  # far left red, far right blue
    assert grid[4, 5, 0] > grid[4, 6, 0]  # red fades towards the border


def test_feature_cache_reextracts_only_when_the_fingerprint_changes(tmp_path):
    calls = []

    def extract(i: int) -> torch.Tensor:
        calls.append(i)
        return torch.full((2, 3, 4), float(i))

    keys = ["a", "b", "c"]
    first = cached_grids(FeatureCache(tmp_path, "clip", {"setting": 1}), keys, (2, 3, 4), extract, "test")
    assert calls == [0, 1, 2]
    again = cached_grids(FeatureCache(tmp_path, "clip", {"setting": 1}), keys, (2, 3, 4), extract, "test")
    assert calls == [0, 1, 2]  # same fingerprint: nothing extracted
    assert torch.equal(first, again) and again.dtype == torch.float16
    cached_grids(FeatureCache(tmp_path, "clip", {"setting": 2}), keys, (2, 3, 4), extract, "test")
    assert calls == [0, 1, 2, 0, 1, 2]  # changed setting: everything again
    # a truncated file and a zero-byte file are detected and extracted again, never loaded
    cache = FeatureCache(tmp_path, "clip", {"setting": 1})
    data = cache.path("b").read_bytes()
    cache.path("b").write_bytes(data[: len(data) // 2])
    cache.path("c").write_bytes(b"")
    calls.clear()
    out = cached_grids(cache, keys, (2, 3, 4), extract, "test")
    assert calls == [1, 2]
    assert torch.equal(out, first)
    # a file of another shape (written by another setting under this name) is not loaded either
    np.save(cache.path("a"), np.zeros((5,), dtype=np.float16))
    calls.clear()
    cached_grids(cache, keys, (2, 3, 4), extract, "test")
    assert calls == [0]


def test_cached_frames_read_only_what_a_batch_needs_and_give_the_held_targets(tmp_path):
    keys = [f"frame{i}" for i in range(6)]
    shape = (3, 4, 5)
    held = cached_grids(FeatureCache(tmp_path, "clip", {}), keys, shape, lambda i: torch.randn(shape), "test")
    lazy = cached_grids(FeatureCache(tmp_path, "clip", {}), keys, shape, lambda i: pytest.fail("cached"), "test", keep=2)
    assert isinstance(lazy, CachedFrames) and lazy.shape == held.shape
    gen = torch.Generator().manual_seed(0)
    indices = torch.stack([torch.tensor([4, 1, 4, 1]), torch.randint(0, 30, (4,), generator=gen), torch.randint(0, 40, (4,), generator=gen)], -1)
    torch.testing.assert_close(lookup_targets(lazy, indices, (30, 40)), lookup_targets(held, indices, (30, 40)))
    assert list(lazy._kept) == [1, 4]  # the batch's two frames (read in order), nothing else
    lazy[[0]]
    assert list(lazy._kept) == [4, 0]  # the least recently used went
    # a grid that goes bad after the check is reported by file, not read as a target
    lazy.cache.path("frame5").write_bytes(b"")
    with pytest.raises(CacheReadError, match="frame5"):
        lazy[[5]]


@pytest.fixture(scope="module")
def tiny_dino_checkpoint(tmp_path_factory):
    """A randomly initialised small timm ViT saved as a local checkpoint (no DINO weights here)."""
    import timm

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("dino") / "vit_tiny.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict(), path)
    return path


def test_dino_targets_share_one_stored_basis(tiny_dino_checkpoint, tmp_path):
    from divff_nerfstudio.language.dino_targets import DinoExtractor, DinoTargetsConfig, DinoWeightsUnavailable

    config = DinoTargetsConfig(enabled=True, model_name="vit_tiny_patch16_224", checkpoint=tiny_dino_checkpoint, pca_dim=8)
    frames = [torch.rand(3, 64, 96) for _ in range(3)]
    first = DinoExtractor(config)
    first.load_or_fit_basis(tmp_path, frames)
    assert (tmp_path / "pca.npz").is_file()
    grid = first.extract(frames[0], (8, 12))
    assert grid.shape == (8, 12, 8) and torch.isfinite(grid).all()
    # a second extractor reads the stored basis (not refitted on other frames): same targets
    second = DinoExtractor(config)
    second.load_or_fit_basis(tmp_path, [torch.rand(3, 64, 96)])
    assert torch.allclose(second.extract(frames[0], (8, 12)), grid, atol=1e-5)
    with pytest.raises(DinoWeightsUnavailable, match="nowhere.pth: DINO checkpoint not found"):
        DinoExtractor(DinoTargetsConfig(enabled=True, checkpoint=tmp_path / "nowhere.pth"))


def test_query_segmentation_scores_labels_present_in_the_frame():
    """DIV-FF's metric on hand-made embeddings: the left half of the frame is a knife; 'spoon' has
    an empty mask in this frame and is not scored; affordances ask the video embedding; the
    teacher's targets are scored with the same query and mask."""
    from divff_nerfstudio.eval.language_evaluation import QuerySegmentationScore

    asked = []

    class Encoder:
        def encode(self, query):
            asked.append((query.positive, query.kind))
            return (unit(1, 0, 0) if query.positive == "knife" else unit(0, 0, 1)), unit(0, 1, 0)[None]

    class Heads:
        def embed(self, hidden, kind):
            return {"composite": hidden["static"], **hidden}

    emb = torch.zeros(4, 6, 3)
    emb[:, :3] = unit(1, 0, 0)
    emb[:, 3:] = unit(0, 1, 0)
    outputs = {f"language_{k}": emb for k in STREAMS} | {f"accumulation_{k}": torch.ones(4, 6, 1) for k in STREAMS}
    knife = np.zeros((4, 6), bool)
    knife[:, :3] = True
    knife[0, 3] = True  # one annotated pixel the query misses
    score = QuerySegmentationScore(Encoder(), Heads(), threshold=0.54, kind="video")
    panels = score.add_frame(outputs, {"knife": knife, "spoon": np.zeros((4, 6), bool)}, np.zeros((4, 6, 3)))
    assert [label for label, _ in panels] == ["knife"] and panels[0][1].shape == (4, 12, 3)
    assert asked == [("knife", "video")]
    summary = score.summary()
    assert summary["IoU"] == {"knife": pytest.approx(12 / 13)} and summary["mIoU"] == pytest.approx(100 * 12 / 13)
    assert summary["embedding"] == "video" and summary["threshold"] == 0.54
    assert "teacher_mIoU" not in summary, "no teacher figures without the frame's targets"

    # the teacher's targets say "knife" everywhere: scored on the same mask, below the field's row
    score = QuerySegmentationScore(Encoder(), Heads(), threshold=0.54, kind="video")
    teacher = unit(1, 0, 0).expand(4, 6, 3)
    panels = score.add_frame(outputs, {"knife": knife}, np.zeros((4, 6, 3)), teacher)
    assert panels[0][1].shape == (8, 12, 3)
    summary = score.summary()
    assert summary["teacher_IoU"] == {"knife": pytest.approx(13 / 24)} and summary["IoU"] == {"knife": pytest.approx(12 / 13)}


def test_region_targets_are_sharp_at_region_boundaries():
    """Where the patch pyramid fades across a colour edge, region targets give every cell on one
    side its region's embedding: a cell one cell away from the edge (the edge's blurred pixels form
    strips of their own) equals the ones far from it, while the pyramid's does not."""
    from divff_nerfstudio.language.region_targets import RegionTargetsConfig, region_targets

    image = torch.zeros(3, 64, 96)
    image[0, :, :48] = 1.0
    image[2, :, 48:] = 1.0
    grid = region_targets(image, _mean_colour_encoder, RegionTargetsConfig(method="felzenszwalb"), (8, 12))
    assert grid.shape == (8, 12, 3)
    torch.testing.assert_close(grid[4, 4], grid[4, 0])
    torch.testing.assert_close(grid[4, 7], grid[4, -1])
    assert grid[4, 4].argmax() == 0 and grid[4, 7].argmax() == 2  # red left, blue right
    pyramid = pyramid_targets(image, _mean_colour_encoder, PatchPyramidConfig(patch_fractions=(0.2, 0.4), grid_stride=8))
    assert (pyramid[4, 4] - pyramid[4, 0]).abs().max() > 0.05


def test_pooled_region_targets_keep_the_pyramid_content_inside_the_region_edges():
    """Pooling the pyramid over regions (no CLIP calls of its own): a small square whose pyramid
    embedding bleeds into its surroundings gets one embedding inside and none of it outside, and
    a cell far from the square keeps the background's."""
    from divff_nerfstudio.language.region_targets import RegionTargetsConfig, pooled_targets

    image = torch.zeros(3, 64, 96)
    image[2] = 1.0
    image[:, 24:40, 40:56] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]  # a red square on blue
    config = PatchPyramidConfig(patch_fractions=(0.4,), grid_stride=4)
    pyramid = pyramid_targets(image, _mean_colour_encoder, config)
    labels = RegionTargetsConfig(method="felzenszwalb").propose(image)
    pooled = pooled_targets(pyramid, labels)
    assert pooled.shape == pyramid.shape == (16, 24, 3)
    torch.testing.assert_close(pooled_targets(pyramid, labels, channels=2), pooled)  # in blocks of channels: the same
    # the cells two above the square (the edge's blurred pixels form strips of their own)
    assert pyramid[4, 8:16, 0].max() > 0.1, "red bleeds into the pyramid there"
    torch.testing.assert_close(pooled[4, 8:16], pooled[0, 0].expand(8, 3), msg="the blue region shares one embedding")
    torch.testing.assert_close(pooled[7, 11], pooled[8, 12])  # inside the square: one embedding
    assert pooled[7, 11, 0] > pooled[4, 11, 0] + 0.2 and pooled[0, 0].argmax() == 2


def test_runs_saved_before_region_pooling_load_with_the_targets_they_trained_on():
    """Region targets are on by default and pool the pyramid; a config.yml saved before `regions`
    existed trained on the pyramid alone, one saved before `embed` existed on region crops."""
    import yaml

    from divff_nerfstudio.language.region_targets import RegionTargetsConfig
    from divff_nerfstudio.language.spec import LanguageTargetsConfig

    assert (LanguageTargetsConfig().regions.method, LanguageTargetsConfig().regions.embed) == ("felzenszwalb", "pool")
    before_regions = LanguageTargetsConfig.__new__(LanguageTargetsConfig)
    before_regions.__setstate__({k: v for k, v in LanguageTargetsConfig().__dict__.items() if k != "regions"})
    assert before_regions.regions.method == "none"
    text = yaml.dump(RegionTargetsConfig(method="slic")).replace("embed: pool\n", "")
    assert "embed" not in text and yaml.load(text, Loader=yaml.Loader).embed == "crops"


@pytest.mark.parametrize("method", ["felzenszwalb", "slic"])
def test_region_proposals_follow_object_boundaries(small_scene, method):
    """On the generated test frames, the regions lying mostly inside an object (or the actor)
    cover it: IoU with its ground-truth mask for every one of at least 15 pixels."""
    from PIL import Image

    from divff_nerfstudio.language.region_targets import RegionTargetsConfig

    for stem in ("IMG_0000000116", "IMG_0000000156"):
        image = torch.from_numpy(np.asarray(Image.open(small_scene / "frames" / f"{stem}.bmp"), dtype=np.float32) / 255)
        regions = RegionTargetsConfig(method=method).propose(image.permute(2, 0, 1))
        labels = np.load(small_scene / "gt" / f"{stem}.npz")["labels"]
        for label in np.unique(labels[labels > 0]):
            truth = labels == label
            if truth.sum() < 15:
                continue
            inside = [r for r in np.unique(regions[truth]) if truth[regions == r].mean() > 0.5]
            cover = np.isin(regions, inside)
            iou = (cover & truth).sum() / (cover | truth).sum()
            assert iou > (0.8 if method == "felzenszwalb" else 0.5), (stem, int(label), iou)


def test_relevancy_over_rgb_colours_only_what_passes_the_threshold():
    from divff_nerfstudio.model.queries import relevancy_over_rgb

    rgb = torch.full((4, 5, 3), 0.5)
    rel = torch.linspace(0, 1, 20).reshape(4, 5, 1)
    over = relevancy_over_rgb(rgb, rel, 0.7)
    passing = rel[..., 0] > 0.7
    assert passing.any() and (~passing).any()
    assert torch.equal(over[~passing], rgb[~passing])
    assert ((over - rgb).abs().amax(dim=-1)[passing] > 1e-3).all()
