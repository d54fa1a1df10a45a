"""Language end to end: the test CLIP generalises to held-out combinations; ns-train divff with it
extracts and caches targets, learns per-stream features, and a text query for an object's label
lights that object up; evaluate.py scores object segmentation; divff-render renders relevancy."""

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from test_divff_end_to_end import BIN, REPO, run


def test_test_clip_generalises_to_held_out_combinations(test_clip):
    report = json.loads(test_clip.with_name(test_clip.name + ".json").read_text())
    assert report["held_out"]["crops"] > 50
    assert report["seen"]["label"] > 0.4 and report["seen"]["shape"] > 0.4, report["seen"]
    # colour and shape words transfer to combinations never seen, and so does the full label, well
    # above chance (colour 1/10, shape 1/8, label 1/80)
    assert report["held_out"]["colour"] > 0.8, report["held_out"]
    assert report["held_out"]["shape"] > 0.3, report["held_out"]
    assert report["held_out"]["label"] > 0.25, report["held_out"]


@pytest.fixture(scope="module")
def trained(language_run) -> Path:
    return language_run


def test_targets_are_cached_per_kind(trained):
    cache = trained.parents[3] / "cache"
    assert (next(cache.glob("dino-*")) / "pca.npz").is_file()
    for kind in ("clip", "video", "dino"):
        (folder,) = cache.glob(f"{kind}-*")
        assert len(list(folder.glob("*.npy"))) == 16, "one grid per training frame"
        assert json.loads((folder / "manifest.json").read_text())


def test_feature_loss_falls_after_geometry_stage(trained):
    from test_divff_end_to_end import scalars

    clip = scalars(trained.parent, "Train Loss Dict/clip_loss")
    assert len(clip) >= 5, "language losses are logged once the feature stage starts"
    assert np.mean(clip[-3:]) < np.mean(clip[:3]), clip
    dino = scalars(trained.parent, "Train Loss Dict/dino_loss")
    assert len(dino) == len(clip) and np.isfinite(dino).all()


def test_query_lights_up_the_object(trained, small_scene):
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(trained, test_mode="test")
    model = pipeline.model
    dataset = pipeline.datamanager.eval_dataset
    truth = json.loads((small_scene / "gt" / "scene.json").read_text())
    contrasts, overlaid = [], 0
    for i in range(len(dataset)):
        labels = np.load(small_scene / "gt" / f"{Path(dataset.image_filenames[i]).stem}.npz")["labels"]
        for obj in truth["objects"]:
            inside = labels == obj["id"]
            if inside.sum() < 15:
                continue
            # LERF's negatives: after 200 steps on 64x96 frames the field's features are not yet apart
            # enough for DIV-FF's "hands" (the default): every object stays under 0.15 against it
            model.queries.set(obj["label"], ("object", "things", "stuff", "texture"))
            outputs = model.get_outputs_for_camera(dataset.cameras[i : i + 1])
            rel = outputs["relevancy"][..., 0].numpy()
            contrasts.append(rel[inside].mean() - rel[~inside].mean())
            # the relevancy colour map over the composite, where it passes the object threshold only
            over, rgb = outputs["relevancy_over_rgb"].numpy(), outputs["rgb"].numpy()
            assert np.array_equal(over[rel <= 0.7], rgb[rel <= 0.7])
            coloured = np.abs(over - rgb).max(axis=-1) > 1e-3
            assert coloured[rel > 0.7].all()
            overlaid += int(coloured.sum())
            for stream in ("composite", "static", "objects", "actor"):
                assert outputs[f"relevancy_{stream}"].shape == (64, 96, 1)
    assert contrasts, "some object is visible in the test frames"
    assert overlaid > 0, "some pixel passes the threshold and is coloured"
    assert np.mean(contrasts) > 0.05, contrasts


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory) -> Path:
    """divff-evaluate's output folder for the trained run (run once for the tests that read it)."""
    out = tmp_path_factory.mktemp("evaluation")
    run(str(BIN / "divff-evaluate"), "--load-config", str(trained), "--output-dir", str(out), cwd=out)
    return out


def test_evaluate_scores_object_and_affordance_segmentation(trained, evaluated):
    results = json.loads((evaluated / "results.json").read_text())
    seg = results["object_segmentation"]
    assert seg["IoU"] and 0 <= seg["mIoU"] <= 100 and seg["embedding"] == "clip"
    assert set(seg["teacher_IoU"]) == set(seg["IoU"]) and 0 <= seg["teacher_mIoU"] <= 100, "the teacher scored on the same labels"
    cache = trained.parents[3] / "cache" / "test_frames"
    assert len(list(next(cache.glob("clip-*")).glob("*.npy"))) == 2, "the test frames' targets cached apart from training's"
    assert sorted((evaluated / "language").glob("*.png"))
    # the generated scene's affordance masks ("carrying": the object a hand holds) are asked of
    # the video embedding at DIV-FF's threshold; frames where nothing is carried are not scored
    affordances = results["affordance_segmentation"]
    assert set(affordances["IoU"]) == {"carrying"} == set(affordances["teacher_IoU"]) and affordances["embedding"] == "video"
    assert affordances["threshold"] == 0.54 and 0 <= affordances["mIoU"] <= 100
    assert len(list((evaluated / "affordances").glob("*_carrying.png"))) == 1, "one of the two test frames shows a carried object"


def test_bench_teacher_scores_the_targets_as_evaluate_does(evaluated, small_scene, test_clip, tmp_path):
    """scripts/bench_teacher.py, with the run's target settings and no field, gives the teacher
    figures divff-evaluate gives, and writes its panels."""
    results = json.loads((evaluated / "results.json").read_text())
    run(
        str(BIN / "python"), str(REPO / "scripts" / "bench_teacher.py"), str(small_scene),
        "--language.clip.model-name", "DivffTiny-CLIP", "--language.clip.pretrained", str(test_clip),
        "--language.cache-dir", str(tmp_path / "cache"),
        "--language.pyramid.patch-fractions", "0.15", "0.3", "0.6", "--language.pyramid.overlap", "0.5",
        "--output-dir", str(tmp_path / "bench"), "--threads", "1",
        cwd=tmp_path,
    )  # fmt: skip
    benched = json.loads((tmp_path / "bench" / small_scene.name / "teacher.json").read_text())
    for name in ("object_segmentation", "affordance_segmentation"):
        assert benched[name]["teacher_IoU"] == pytest.approx(results[name]["teacher_IoU"]), name
        pixels = benched[name]["pixels"]
        assert pixels["hit"] + pixels["missed"] > 0, "annotated pixels were scored"
    assert sorted((tmp_path / "bench" / small_scene.name / "language").glob("*.png"))


def test_divff_render_renders_relevancy_of_a_command_line_query(trained, tmp_path):
    run(
        str(BIN / "divff-render"), "dataset",
        "--load-config", str(trained),
        "--split", "test",
        "--query", "hand",
        "--rendered-output-names", "relevancy", "relevancy_actor",
        "--output-path", str(tmp_path),
        cwd=trained.parents[3],
    )  # fmt: skip
    rendered = sorted(p for p in tmp_path.rglob("*") if p.suffix in (".png", ".jpg"))
    assert len(rendered) == 2 * 2, rendered


def test_hostile_queries_get_a_message_not_a_crash(trained):
    from nerfstudio.utils.eval_utils import eval_setup

    from divff_nerfstudio.model.queries import QueryError

    _, pipeline, _, _ = eval_setup(trained, test_mode="test")
    model = pipeline.model
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    for bad in ("", "   "):
        with pytest.raises(QueryError):
            model.queries.set(bad)
    for odd in ("x" * 10_000, "couteau à pain 🔪", "刀"):
        model.queries.set(odd)
        rel = model.get_outputs_for_camera(camera)["relevancy"]
        assert torch.isfinite(rel).all()
    model.queries.apply_text("", "object", "clip", "composite")  # the viewer's blank box clears
    assert model.queries.query is None
    model.queries.apply_text("   ", "", "video", "objects")
    assert model.queries.query is None


def resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_many_queries_in_a_row_from_the_viewer_keep_memory_flat(trained):
    """Distinct texts typed one after another into the viewer's box, each rendered: every one
    answered, and the process does not grow with them (scripts/bench_query.py measures 1,000)."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(trained, test_mode="test")
    model = pipeline.model
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    words = ["red", "green", "cube", "cone", "hand", "knife", "cutting", "à", "刀", "🔪"]

    def ask(i: int) -> None:
        text = f"{words[i % 10]} {words[(i // 10) % 10]} {i}"
        model.queries.apply_text(text, "object, things", ("clip", "video")[i % 2], ("composite", "objects")[i % 2])
        assert model.queries.query is not None and model.queries.query.positive == text
        assert torch.isfinite(model.get_outputs_for_camera(camera)["relevancy"]).all()

    for i in range(20):  # warm-up: allocator pools, the rendered view's feature cache
        ask(i)
    before = resident_mb()
    for i in range(20, 320):
        ask(i)
    assert resident_mb() - before < 64, f"{before:.0f} -> {resident_mb():.0f} MB over 300 queries"


def test_viewer_finds_the_query_panel_and_applies_it(trained, monkeypatch):
    """The viewer hands every ViewerControl on the pipeline itself (the browser test drives the real
    one): apply edits as its text boxes and dropdowns do, without a browser."""
    from nerfstudio.models.base_model import Model
    from nerfstudio.utils.eval_utils import eval_setup
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerControl

    from divff_nerfstudio.model.queries import DEFAULT_NEGATIVES

    _, pipeline, _, _ = eval_setup(trained, test_mode="test")
    (panel,) = [c for _, c in parse_object(pipeline, ViewerControl, "Custom Elements")]
    assert pipeline.datamanager.includes_time, "the viewer shows its time slider for time-aware data"
    model = pipeline.model
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    panel.edit(text="hand", stream="actor")
    assert model.queries.query is not None and model.queries.query.positive == "hand" and model.queries.stream == "actor"
    outputs = model.get_outputs_for_camera(camera)
    assert torch.equal(outputs["relevancy"], outputs["relevancy_actor"])
    # the viewer renders a small preview and then the full size: a new query answers both unrendered
    preview = copy.deepcopy(camera)
    preview.rescale_output_resolution(0.5)
    small = model.get_outputs_for_camera(preview)
    renders = []
    monkeypatch.setattr(Model, "get_outputs_for_camera", lambda *a, **k: renders.append(1))
    panel.edit(text="red")
    assert model.get_outputs_for_camera(preview)["relevancy"].shape == small["relevancy"].shape
    assert model.get_outputs_for_camera(camera)["relevancy"].shape == outputs["relevancy"].shape
    assert renders == []
    monkeypatch.undo()
    # switching the embedding to video swaps untouched negatives for the video ones; edited ones stay
    panel.edit(kind="video")
    assert panel.negatives == ", ".join(DEFAULT_NEGATIVES["video"])
    assert model.queries.query.negatives == tuple(DEFAULT_NEGATIVES["video"])
    panel.edit(negatives="floor")
    panel.edit(kind="clip")
    assert panel.negatives == "floor"
    # an emptied box leaves blank maps, so the viewer keeps showing the relevancy output
    panel.edit(text="  ")
    blank = model.get_outputs_for_camera(camera)
    assert model.queries.query is None and not blank["relevancy"].any()
    assert torch.equal(blank["relevancy_over_rgb"], blank["rgb"])
    model.queries.clear()  # as ns-render without a query
    assert "relevancy" not in model.get_outputs_for_camera(camera)


def test_typing_applies_the_query_once_it_pauses():
    import time

    from divff_nerfstudio.model.viewer_query import TYPING_PAUSE_S, QueryPanel

    applied = []
    panel = QueryPanel(lambda *values: applied.append(values))
    for text in ("h", "ha", "han", "hand"):
        panel.type(text=text)
        time.sleep(TYPING_PAUSE_S / 10)
    time.sleep(TYPING_PAUSE_S * 2)
    assert [values[0] for values in applied] == ["hand"]
    panel.type(text="knife")
    panel.edit(stream="actor")  # a dropdown applies at once, with what was typed so far
    time.sleep(TYPING_PAUSE_S * 2)
    assert applied[1:] == [("knife", panel.negatives, "clip", "actor")]


def test_a_dropped_rerender_request_is_sent_again():
    """nerfstudio's render thread can drop a rerender request (viewer_query's docstring): the panel
    sends it again until the model reports a render, and stops there."""
    import time
    from types import SimpleNamespace

    from divff_nerfstudio.model.viewer_query import RERENDER_WAIT_S, QueryPanel

    panel, requests = QueryPanel(lambda *values: None), []

    def trigger() -> None:  # the first request is dropped, the second starts a render
        requests.append(time.time())
        if len(requests) == 2:
            panel.rendered()

    panel._viewer = SimpleNamespace(train_lock=None, _trigger_rerender=trigger)
    panel.edit(text="hand")
    time.sleep(RERENDER_WAIT_S * 4)
    assert len(requests) == 2


def test_region_targets_have_their_own_cache(small_scene, test_clip, tmp_path):
    """Regions on: the CLIP targets are extracted again into a folder whose manifest records the
    region settings; the pyramid-only cache keeps its fingerprint (turning regions off reuses it)."""
    from dataparsers.epic_diff import EpicDiffDataParserConfig
    from divff_nerfstudio.data.divff_datamanager import DivffDataManagerConfig
    from divff_nerfstudio.language.clip_encoder import ClipEncoderConfig
    from divff_nerfstudio.language.region_targets import RegionTargetsConfig
    from divff_nerfstudio.language.spec import LanguageTargetsConfig

    def targets(regions: RegionTargetsConfig):
        clip = ClipEncoderConfig(model_name="DivffTiny-CLIP", pretrained=str(test_clip))
        language = LanguageTargetsConfig(clip=clip, regions=regions, cache_dir=tmp_path)
        config = DivffDataManagerConfig(data=small_scene, dataparser=EpicDiffDataParserConfig(data=small_scene), language=language)
        return config.setup(device="cpu", test_mode="val").targets

    plain = targets(RegionTargetsConfig(method="none"))
    regional = targets(RegionTargetsConfig(method="slic"))
    assert plain.folders["clip"] != regional.folders["clip"]
    assert json.loads((regional.folders["clip"] / "manifest.json").read_text())["regions"]["method"] == "slic"
    assert "regions" not in json.loads((plain.folders["clip"] / "manifest.json").read_text())
    assert regional.grids["clip"].shape == plain.grids["clip"].shape and not torch.equal(regional.grids["clip"], plain.grids["clip"])
    assert targets(RegionTargetsConfig(method="none")).folders["clip"] == plain.folders["clip"]


def test_a_long_video_holds_a_subset_of_frames_and_their_targets(small_scene, test_clip, tmp_path):
    """Past long_video.min_frames, rays come from a subset of frames drawn again every few steps,
    and the targets stay in the cache: each batch gets the same targets as from held grids."""
    from dataparsers.epic_diff import EpicDiffDataParserConfig
    from divff_nerfstudio.data.divff_datamanager import DivffDataManagerConfig, LongVideoConfig
    from divff_nerfstudio.language.clip_encoder import ClipEncoderConfig
    from divff_nerfstudio.language.feature_cache import CachedFrames
    from divff_nerfstudio.language.spec import LanguageTargetsConfig
    from divff_nerfstudio.language.target_grids import lookup_targets

    def manager(long_video: LongVideoConfig):
        clip = ClipEncoderConfig(model_name="DivffTiny-CLIP", pretrained=str(test_clip))
        language = LanguageTargetsConfig(clip=clip, cache_dir=tmp_path)
        config = DivffDataManagerConfig(
            data=small_scene, dataparser=EpicDiffDataParserConfig(data=small_scene), language=language, long_video=long_video
        )
        return config.setup(device="cpu", test_mode="val")

    held = manager(LongVideoConfig(min_frames=0)).targets.grids
    assert all(torch.is_tensor(g) for g in held.values())
    long = manager(LongVideoConfig(min_frames=10, frames=4, steps=3))  # 16 training frames
    assert all(isinstance(g, CachedFrames) for g in long.targets.grids.values())
    subsets = []
    for step in range(8):
        _, batch = long.next_train(step)
        subsets.append(frozenset(batch["indices"][:, 0].tolist()))
        for kind in ("clip", "video"):
            torch.testing.assert_close(batch[kind], lookup_targets(held[kind], batch["indices"], (64, 96)))
    assert all(len(s) <= 4 for s in subsets)
    assert len(frozenset().union(*subsets)) > 4  # another subset was drawn
