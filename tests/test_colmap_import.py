"""Own video: COLMAP models -> EPIC-Diff (divff-colmap-import) and ns-process-data folders
read by the epic-diff dataparser.

Unit tests build small COLMAP models in Python (pycolmap) whose poses, points and images are known
exactly; the end-to-end test runs Debian's colmap through ns-process-data on a generated scene and
compares the recovered poses with the generator's."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pycolmap
import pytest
import torch
from PIL import Image

from dataparsers.colmap_model import ColmapImportError
from dataparsers.colmap_to_epic_diff import ColmapConversion, convert
from dataparsers.epic_diff import EpicDiffDataParserConfig
from dataparsers.epic_diff_scene import EpicDiffFormatError, load_scene

W, H = 64, 48
CAMERAS = {
    "PINHOLE": [60.0, 66.0, 31.0, 25.0],
    "SIMPLE_PINHOLE": [60.0, 32.0, 24.0],
    "SIMPLE_RADIAL": [60.0, 32.0, 24.0, -0.15],
    "RADIAL": [60.0, 32.0, 24.0, -0.12, 0.03],
    "OPENCV": [60.0, 64.0, 31.0, 25.0, -0.1, 0.02, 0.004, -0.003],
}


def pattern(rays: np.ndarray) -> np.ndarray:
    """A smooth colour image as a function of the ray (x/z, y/z): what any pinhole of the camera sees."""
    x, y = rays[:, 0], rays[:, 1]
    return np.stack([128 + 90 * np.sin(7 * x + 1) * np.cos(9 * y), 128 + 90 * np.cos(5 * x - 2 * y), 128 + 60 * np.sin(11 * y)], 1)


def render(camera: pycolmap.Camera) -> np.ndarray:
    """(H, W, 3) uint8 image of `pattern` through the camera, distortion included."""
    u, v = np.meshgrid(np.arange(camera.width) + 0.5, np.arange(camera.height) + 0.5)
    rays = camera.cam_from_img(np.stack([u.ravel(), v.ravel()], 1))
    return np.clip(pattern(rays), 0, 255).reshape(camera.height, camera.width, 3).astype(np.uint8)


def rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def make_model(root: Path, model: str = "PINHOLE", frames: int = 20, fmt: str = "bin", unposed=(), cameras: int = 1) -> Path:
    """root/images (frame_00001.png ...) and root/sparse/0: cameras on a line, turning a little, that
    see random points 2-6 units ahead. `unposed` positions get an image file but no registration."""
    rng = np.random.default_rng(0)
    rec = pycolmap.Reconstruction()
    cams = [pycolmap.Camera(model=model, width=W, height=H, params=CAMERAS[model], camera_id=k + 1) for k in range(cameras)]
    for cam in cams:
        rec.add_camera_with_trivial_rig(cam)
    points = np.stack([rng.uniform(-2, 3, 300), rng.uniform(-1.5, 1.5, 300), rng.uniform(2, 6, 300)], 1)
    (root / "images").mkdir(parents=True)
    tracks = {j: pycolmap.Track() for j in range(len(points))}
    for k in range(frames):
        name = f"frame_{k + 1:05d}.png"
        cam = cams[k % cameras]
        Image.fromarray(render(cam)).save(root / "images" / name)
        if k in unposed:
            continue
        R_cw, centre = rot_y(3.0 * k), np.array([0.1 * k, 0.02 * k, 0.0])
        t_cw = -R_cw @ centre
        in_cam = points @ R_cw.T + t_cw
        pix = cam.img_from_cam(in_cam, check_cheirality=False)
        seen = np.flatnonzero((in_cam[:, 2] > 0) & (pix[:, 0] > 0) & (pix[:, 0] < W) & (pix[:, 1] > 0) & (pix[:, 1] < H))
        image = pycolmap.Image(name=name, keypoints=pix[seen], camera_id=cam.camera_id, image_id=k + 1)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(pycolmap.Rotation3d(R_cw), t_cw))
        for idx, j in enumerate(seen):
            tracks[j].add_element(k + 1, idx)
    for j, track in tracks.items():
        if track.length() > 0:
            rec.add_point3D(points[j], track)
    out = root / "sparse" / "0"
    out.mkdir(parents=True)
    (rec.write_binary if fmt == "bin" else rec.write_text)(str(out))
    return out


def to_epic(root: Path, **kwargs) -> dict:
    return convert(ColmapConversion(images=root / "images", model=root / "sparse" / "0", out=root / "scene", **kwargs))


def expected_c2w(k: int) -> np.ndarray:
    """OpenGL camera-to-world of frame k of make_model."""
    c2w = np.concatenate([rot_y(3.0 * k).T, np.array([[0.1 * k], [0.02 * k], [0.0]])], 1)
    c2w[:, 1:3] *= -1
    return c2w


# ------------------------------------------------------------------------------- the converter
@pytest.mark.parametrize("fmt", ["bin", "txt"])
def test_pinhole_model_converts_with_opengl_poses_separate_focals_and_splits(tmp_path, fmt):
    make_model(tmp_path, "PINHOLE", fmt=fmt)
    meta = to_epic(tmp_path)
    scene = load_scene(tmp_path / "scene")
    assert scene.ids_all == list(range(1, 21))
    assert meta["ids_test"] == [5, 15] and meta["ids_val"] == [10, 20], "positions 4, 14 test and 9, 19 val"
    assert len(meta["ids_train"]) == 16
    fx, fy, cx, cy = CAMERAS["PINHOLE"]
    assert np.allclose(scene.K, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]), "fx and fy kept apart"
    for k in range(20):
        assert np.allclose(scene.poses[k + 1], expected_c2w(k), atol=1e-6)
    src = (tmp_path / "images" / "frame_00003.png").read_bytes()
    assert (tmp_path / "scene" / "frames" / "frame_00003.png").read_bytes() == src, "a pinhole frame is copied untouched"
    assert meta["camera"]["model"] == "PINHOLE" and meta["unregistered"] == []


def test_opengl_pose_looks_at_what_the_camera_sees(tmp_path):
    """A point COLMAP sees in front of frame 7 lies down -z of the converted pose."""
    model = make_model(tmp_path)
    to_epic(tmp_path)
    rec = pycolmap.Reconstruction(model)
    image = rec.images[8]
    point = rec.points3D[next(p.point3D_id for p in image.points2D if p.has_point3D())].xyz
    c2w = load_scene(tmp_path / "scene").poses[8]
    in_cam = c2w[:, :3].T @ (point - c2w[:, 3])
    assert in_cam[2] < 0


def depth_quantiles(model: Path, name: str):
    """0.1 / 99.9 % quantiles of the z-depths of the points image `name` observes."""
    rec = pycolmap.Reconstruction(model)
    image = rec.find_image_with_name(name)
    xyz = np.stack([rec.points3D[p.point3D_id].xyz for p in image.points2D if p.has_point3D()])
    depth = (xyz @ image.cam_from_world().matrix()[:, :3].T + image.cam_from_world().translation)[:, 2]
    return np.quantile(depth, [0.001, 0.999])


def test_near_far_are_depth_quantiles_of_the_points_each_frame_sees(tmp_path):
    model = make_model(tmp_path)
    meta = to_epic(tmp_path)
    for image in pycolmap.Reconstruction(model).images.values():
        near, far = depth_quantiles(model, image.name)
        assert meta["nears"][str(image.image_id)] == pytest.approx(near)
        assert meta["fars"][str(image.image_id)] == pytest.approx(far)
    assert len(set(meta["nears"].values())) > 1, "per frame, not one value for the scene"


def test_simple_pinhole_has_equal_focals(tmp_path):
    make_model(tmp_path, "SIMPLE_PINHOLE")
    meta = to_epic(tmp_path)
    assert np.allclose(meta["intrinsics"], [[60, 0, 32], [0, 60, 24], [0, 0, 1]])


@pytest.mark.parametrize("model", ["SIMPLE_RADIAL", "RADIAL", "OPENCV"])
def test_distorted_cameras_are_undistorted_to_a_pinhole(tmp_path, model):
    make_model(tmp_path, model, frames=10)
    meta = to_epic(tmp_path)
    K = np.array(meta["intrinsics"])
    pinhole = pycolmap.Camera(model="PINHOLE", width=meta["image_w"], height=meta["image_h"], params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
    frame = np.asarray(Image.open(tmp_path / "scene" / "frames" / "frame_00002.png")).astype(float)
    expected = render(pinhole).astype(float)
    inner = (slice(2, -2), slice(2, -2))
    assert np.abs(frame[inner] - expected[inner]).mean() < 2.0, "the frame is what the pinhole K sees"
    # the reference bug: the distorted frame taken for a pinhole with the camera's own f and c
    params = CAMERAS[model]
    naive_params = params[:4] if model == "OPENCV" else [params[0], params[0], params[1], params[2]]
    naive = render(pycolmap.Camera(model="PINHOLE", width=W, height=H, params=naive_params)).astype(float)
    distorted = np.asarray(Image.open(tmp_path / "images" / "frame_00002.png")).astype(float)
    assert np.abs(distorted[inner] - naive[inner]).mean() > 4 * np.abs(frame[inner] - expected[inner]).mean()
    assert meta["camera"]["model"] == model and np.allclose(meta["camera"]["params"], CAMERAS[model])
    assert np.allclose(load_scene(tmp_path / "scene").poses[3], expected_c2w(2), atol=1e-6), "poses do not change"


def test_downscale_scales_frames_and_intrinsics(tmp_path):
    make_model(tmp_path, "PINHOLE", frames=10)
    meta = to_epic(tmp_path, downscale=2)
    assert Image.open(tmp_path / "scene" / "frames" / "frame_00001.png").size == (W // 2, H // 2)
    fx, fy, cx, cy = CAMERAS["PINHOLE"]
    assert np.allclose(meta["intrinsics"], [[fx / 2, 0, cx / 2], [0, fy / 2, cy / 2], [0, 0, 1]])
    assert load_scene(tmp_path / "scene").image_size == (W // 2, H // 2)


def test_unregistered_frames_are_reported_and_keep_the_split_positions(tmp_path, capsys):
    make_model(tmp_path, frames=20, unposed=(0, 4, 7))
    meta = to_epic(tmp_path)
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "3 frame(s) have no pose" in out and "frame_00005.png" in out
    assert meta["unregistered"] == ["frame_00001.png", "frame_00005.png", "frame_00008.png"]
    assert meta["ids_test"] == [15] and meta["ids_val"] == [10, 20], "frame 5 (position 4) was not posed"
    assert 5 not in meta["ids_all"] and len(meta["ids_all"]) == 17


# ------------------------------------------------------------------------------------ bad input
def test_missing_model_folder(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(ColmapImportError, match=r"sparse/0: COLMAP model folder not found"):
        to_epic(tmp_path)


def test_folder_without_model_files(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "sparse" / "0").mkdir(parents=True)
    (tmp_path / "sparse" / "0" / "cameras.bin").write_bytes(b"")
    with pytest.raises(ColmapImportError, match=r"sparse/0: no COLMAP model here.*found \['cameras.bin'\]"):
        to_epic(tmp_path)


def one_camera_model(root: Path, camera: pycolmap.Camera, posed_image: bool, fmt: str) -> None:
    """root/images (empty) and root/sparse/0 holding only the camera and maybe one posed image."""
    model = root / "sparse" / "0"
    model.mkdir(parents=True)
    (root / "images").mkdir()
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(camera)
    if posed_image:
        rec.add_image_with_trivial_frame(pycolmap.Image(name="a.png", camera_id=camera.camera_id, image_id=1), pycolmap.Rigid3d())
    (rec.write_binary if fmt == "bin" else rec.write_text)(str(model))


def test_no_registered_images(tmp_path):
    camera = pycolmap.Camera(model="PINHOLE", width=W, height=H, params=CAMERAS["PINHOLE"], camera_id=1)
    one_camera_model(tmp_path, camera, posed_image=False, fmt="bin")
    with pytest.raises(ColmapImportError, match=r"images.bin: no registered images"):
        to_epic(tmp_path)


def test_several_cameras(tmp_path):
    make_model(tmp_path, frames=10, cameras=2)
    with pytest.raises(ColmapImportError, match=r"cameras.bin: registered images use 2 cameras"):
        to_epic(tmp_path)


def test_registered_image_whose_file_is_missing(tmp_path):
    make_model(tmp_path, frames=10)
    (tmp_path / "images" / "frame_00004.png").unlink()
    with pytest.raises(ColmapImportError, match=r"images/frame_00004.png: image is registered in the COLMAP model .* file is missing"):
        to_epic(tmp_path)


def test_unsupported_camera_model(tmp_path):
    camera = pycolmap.Camera(model="OPENCV_FISHEYE", width=W, height=H, params=[60, 60, 32, 24, 0, 0, 0, 0], camera_id=1)
    one_camera_model(tmp_path, camera, posed_image=True, fmt="txt")
    with pytest.raises(ColmapImportError, match=r"cameras.txt: camera model OPENCV_FISHEYE is not supported"):
        to_epic(tmp_path)


def test_command_runs(tmp_path):
    make_model(tmp_path, frames=10)
    cmd = [str(Path(sys.executable).parent / "divff-colmap-import"), "--images", str(tmp_path / "images")]
    cmd += ["--model", str(tmp_path / "sparse" / "0"), "--out", str(tmp_path / "scene")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_scene(tmp_path / "scene").ids_all == list(range(1, 11))


# -------------------------------------------------------- ns-process-data folders (transforms.json)
def processed_folder(root: Path, model: str = "OPENCV", other_model_frames: int = 0, use: int = 0, **kwargs) -> Path:
    """What ns-process-data leaves: images/, colmap/sparse/<k> and transforms.json written by
    nerfstudio's own colmap_to_json from model `use`. With `other_model_frames`, COLMAP also made a
    second model (sparse/1) of the first that many frames."""
    from nerfstudio.process_data.colmap_utils import colmap_to_json

    make_model(root / "src", model, **kwargs)
    shutil.move(root / "src" / "images", root / "images")
    models = root / "colmap" / "sparse"
    models.mkdir(parents=True)
    shutil.move(root / "src" / "sparse" / "0", models / "0")
    if other_model_frames:
        other = make_model(root / "other", model, frames=other_model_frames)
        rec = pycolmap.Reconstruction(other)
        rec.transform(pycolmap.Sim3d(2.0, pycolmap.Rotation3d(), np.zeros(3)))  # another model, another scale
        (models / "1").mkdir()
        rec.write_binary(str(models / "1"))
    colmap_to_json(models / str(use), root)
    return root


def test_transforms_json_is_read_in_video_order_with_splits_and_near_far(tmp_path, capsys):
    processed_folder(tmp_path, frames=20, unposed=(12,))
    parser = EpicDiffDataParserConfig(data=tmp_path).setup()
    train, test = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("test")
    assert "frame_00013.png" in capsys.readouterr().out, "the frame COLMAP did not pose is named"
    val = parser.get_dataparser_outputs("val")
    assert test.metadata["frame_ids"] == [5, 15] and val.metadata["frame_ids"] == [10, 20]
    assert 13 not in train.metadata["frame_ids"] and len(train.metadata["frame_ids"]) == 15
    assert train.metadata["num_frames"] == 19
    index = test.metadata["frame_index"].tolist()
    assert index == [4, 13], "dense index over the posed frames, in video order"
    assert torch.allclose(test.cameras.times[:, 0], torch.tensor(index) / 18.0)
    fx, fy = CAMERAS["OPENCV"][:2]
    assert float(test.cameras.fx[0]) == pytest.approx(fx) and float(test.cameras.fy[0]) == pytest.approx(fy)
    assert torch.allclose(test.cameras.distortion_params[0], torch.tensor([-0.1, 0.02, 0, 0, 0.004, -0.003]))
    # near/far: the depth quantiles of the points the frame sees, in nerfstudio's scaled units
    near, far = depth_quantiles(tmp_path / "colmap" / "sparse" / "0", "frame_00005.png")
    assert float(test.metadata["nears"][0]) == pytest.approx(near * test.dataparser_scale, rel=1e-5)
    assert float(test.metadata["fars"][0]) == pytest.approx(far * test.dataparser_scale, rel=1e-5)


def test_transforms_json_without_its_colmap_model(tmp_path):
    processed_folder(tmp_path, "PINHOLE", frames=10)
    shutil.rmtree(tmp_path / "colmap")
    with pytest.raises(EpicDiffFormatError, match=r"colmap/sparse: no COLMAP model folder"):
        EpicDiffDataParserConfig(data=tmp_path).setup().get_dataparser_outputs("train")
    with pytest.raises(EpicDiffFormatError, match=r"colmap/sparse/0: COLMAP model folder not found"):
        EpicDiffDataParserConfig(data=tmp_path, colmap_model=Path("colmap/sparse/0")).setup().get_dataparser_outputs("train")


def test_transforms_json_finds_its_model_and_points_to_a_larger_one(tmp_path, capsys):
    """COLMAP split the video: the model transforms.json came from is found (sparse/1 here), and
    when ns-process-data took the smaller model, the larger one is named with the command to use it."""
    processed_folder(tmp_path / "a", "PINHOLE", frames=10, other_model_frames=4, use=0)
    (tmp_path / "a" / "colmap" / "sparse" / "0").rename(tmp_path / "a" / "colmap" / "sparse" / "2")
    assert EpicDiffDataParserConfig(data=tmp_path / "a").setup().get_dataparser_outputs("train").metadata["num_frames"] == 10
    processed_folder(tmp_path / "b", "PINHOLE", frames=10, other_model_frames=4, use=1)
    capsys.readouterr()
    train = EpicDiffDataParserConfig(data=tmp_path / "b").setup().get_dataparser_outputs("train")
    assert train.metadata["frame_ids"] == [1, 2, 3, 4]
    near, _ = depth_quantiles(tmp_path / "b" / "colmap" / "sparse" / "1", "frame_00001.png")
    assert float(train.metadata["nears"][0]) == pytest.approx(near * train.dataparser_scale, rel=1e-5), "sparse/1's scale, not sparse/0's"
    out = " ".join(capsys.readouterr().out.split())
    assert "sparse/0 poses 10 frames but transforms.json has 4" in out
    assert "--skip-colmap --colmap-model-path colmap/sparse/0" in out


def test_transforms_json_with_several_cameras(tmp_path):
    processed_folder(tmp_path, "PINHOLE", frames=10)
    path = tmp_path / "transforms.json"
    meta = json.loads(path.read_text())
    meta["frames"][3]["fl_x"] = 50.0
    path.write_text(json.dumps(meta))
    with pytest.raises(EpicDiffFormatError, match=r"transforms.json: frames carry their own intrinsics"):
        EpicDiffDataParserConfig(data=tmp_path).setup().get_dataparser_outputs("train")


# ------------------------------------------------------ end to end: Debian's colmap on a rendered scene
E2E_SCENE = dict(seed=0, frames=40, image_format="png", texture_detail=0.5)
"""228x128 like EPIC-Diff, with fine speckle on the static surfaces: without it SIFT finds too few
well-localised features on the generated textures and COLMAP poses 15 of 120 frames."""
E2E_TOLERANCE = {"rotation_error_deg_median": 5.0, "centre_error_rms_over_far": 0.08}
"""COLMAP's mapper varies from run to run, with a long tail. 26 runs of this test on the 2-core machine:
median rotation error 0.13 to 1.01 deg (4 runs above 0.6), centre error 0.002 to 0.020 of the median far
depth; one CI run gave 2.52 deg and 0.036. The limits keep about 2x over that run. What the rotation
limit is for: on a run that scored 0.18 deg, reading transforms.json with OpenCV's camera axes scores
24 deg and with its rotations transposed 17 deg."""


@pytest.fixture(scope="module")
def own_video(tmp_path_factory):
    """A generated scene, its frames as an mp4, and ns-process-data's folder for it."""
    from test_divff_end_to_end import BIN, run

    from divff_nerfstudio.synthetic import SceneConfig, write_scene

    for tool in ("colmap", "ffmpeg"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not on PATH: scripts/setup.sh installs Debian's colmap and ffmpeg")
    root = tmp_path_factory.mktemp("own_video")
    scene = write_scene(root / "SYN_own", SceneConfig(**E2E_SCENE))
    video = root / "clip.mp4"
    run("ffmpeg", "-loglevel", "error", "-framerate", "10", "-pattern_type", "glob", "-i", str(scene / "frames" / "*.png"),
        "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", str(video), cwd=root)  # fmt: skip
    processed = root / "processed"
    run(str(BIN / "ns-process-data"), "video", "--data", str(video), "--output-dir", str(processed),
        "--matching-method", "sequential", "--no-gpu", "--num-downscales", "0", cwd=root)  # fmt: skip
    return scene, processed


def test_colmap_poses_match_the_generator_after_similarity_alignment(own_video, tmp_path):
    from test_divff_end_to_end import BIN, run

    scene, processed = own_video
    scores_path = tmp_path / "scores.json"
    run(str(BIN / "divff-score-poses"), "--truth", str(scene), "--recovered", str(processed),
        "--output", str(scores_path), cwd=tmp_path)  # fmt: skip
    scores = json.loads(scores_path.read_text())
    print(json.dumps(scores))  # the measurement, for pytest -s
    assert scores["posed"] == scores["total"] == E2E_SCENE["frames"], scores
    for key, limit in E2E_TOLERANCE.items():
        assert scores[key] < limit, (key, scores)


def test_ns_train_divff_runs_on_the_processed_folder(own_video, test_clip, tmp_path):
    """`ns-train divff --data processed/` with no dataparser flag: epic-diff reads transforms.json
    (the test CLIP stands in for OpenCLIP's weights, as in the language tests)."""
    from test_divff_end_to_end import ns_train, scalars

    _, processed = own_video
    config = ns_train(
        "divff", processed, tmp_path, 30,
        "--pipeline.datamanager.language.clip.model-name", "DivffTiny-CLIP",
        "--pipeline.datamanager.language.clip.pretrained", str(test_clip),
    )  # fmt: skip
    losses = scalars(config.parent, "Train Loss")
    assert losses and np.isfinite(losses).all()
    assert list((config.parent / "nerfstudio_models").glob("step-*.ckpt"))
