"""Scores of recovered camera poses (COLMAP via ns-process-data or divff-colmap-import) against a
generated scene's ground truth, after a similarity alignment (rotation, translation, scale): SfM
fixes a scene only up to one.

Two alignments are reported. Umeyama (1991) on the camera centres alone is the textbook one, but a
head-mounted camera mostly turns and moves little, along a nearly flat path, so the rotation about
that path is barely determined by centres (the score then measures the alignment, not the poses).
The primary alignment takes the rotation from the cameras' orientations (orthogonal Procrustes on
all rotations, well determined whenever the view direction varies), then scale and translation
from the centres by least squares.

Frames are matched by position in the video: the k-th frame of the recovered folder's video
(images/ or frames/, posed or not) is the k-th frame of the generated scene.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from dataparsers.epic_diff_scene import EpicDiffScene, load_scene
from dataparsers.own_video import frame_ids, frames_on_disk, load_transforms_scene


def umeyama(src: np.ndarray, dst: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]:
    """Scale s, rotation R, translation t minimising sum ||s R src_i + t - dst_i||^2 ((N, 3) arrays)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(xd.T @ xs / len(src))
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U) * np.linalg.det(Vt))
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / xs.var(0).sum())
    return s, R, mu_d - s * R @ mu_s


def orientation_alignment(rot_src: np.ndarray, src: np.ndarray, rot_dst: np.ndarray, dst: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]:
    """Similarity with R from the (N, 3, 3) camera rotations (R rot_src_i ~ rot_dst_i), then s and t
    from the (N, 3) centres with R fixed."""
    U, _, Vt = np.linalg.svd(np.einsum("nij,nkj->ik", rot_dst, rot_src))
    R = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    xs, xd = (src - src.mean(0)) @ R.T, dst - dst.mean(0)
    s = float((xs * xd).sum() / (xs * xs).sum())
    return s, R, dst.mean(0) - s * R @ src.mean(0)


def _errors(s: float, R: np.ndarray, t: np.ndarray, pairs) -> Tuple[np.ndarray, np.ndarray]:
    """Per frame: rotation error (deg) and centre error (truth units) under the alignment."""
    centre = np.array([np.linalg.norm(s * R @ r[:, 3] + t - g[:, 3]) for r, g in pairs])
    cos = np.array([(np.trace((R @ r[:, :3]).T @ g[:, :3]) - 1) / 2 for r, g in pairs])
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), centre


def _recovered_scene(folder: Path) -> Tuple[EpicDiffScene, Dict[int, int]]:
    """The recovered scene and, per posed frame id, its position in the whole video."""
    if (folder / "meta.json").is_file():
        scene = load_scene(folder, check_frames=False)
        video = frames_on_disk(folder / "frames") + list(json.loads((folder / "meta.json").read_text()).get("unregistered", []))
    else:
        scene = load_transforms_scene(folder, check_frames=False)
        video = frames_on_disk(scene.image_paths[scene.ids_all[0]].parent)
    position = {frame_id: k for k, frame_id in enumerate(sorted(frame_ids(video, folder).values()))}
    return scene, position


def score(truth: Path, recovered: Path) -> Dict[str, float]:
    """Poses recovered / total and the aligned rotation and centre errors."""
    gt = load_scene(truth, check_frames=False)
    rec, position = _recovered_scene(Path(recovered))
    if len(position) != len(gt.ids_all):
        raise ValueError(f"{recovered} has {len(position)} video frames but {truth} has {len(gt.ids_all)}: cannot match them")
    pairs = [(rec.poses[i], gt.poses[gt.ids_all[position[i]]]) for i in rec.ids_all]
    src, dst = np.stack([r[:, 3] for r, _ in pairs]), np.stack([g[:, 3] for _, g in pairs])
    extent = float(np.linalg.norm(dst.max(0) - dst.min(0)))
    far = float(np.median([gt.fars[i] for i in gt.ids_all]))
    scores: Dict[str, float] = {"posed": len(rec.ids_all), "total": len(gt.ids_all), "camera_path_extent": extent, "median_far": far}
    alignments = {
        "": orientation_alignment(np.stack([r[:, :3] for r, _ in pairs]), src, np.stack([g[:, :3] for _, g in pairs]), dst),
        "umeyama_": umeyama(src, dst),
    }
    for prefix, (s, R, t) in alignments.items():
        rot_err, centre_err = _errors(s, R, t, pairs)
        rms = float(np.sqrt(np.mean(centre_err**2)))
        scores.update(
            {
                f"{prefix}rotation_error_deg_median": float(np.median(rot_err)),
                f"{prefix}rotation_error_deg_max": float(rot_err.max()),
                f"{prefix}centre_error_rms": rms,
                f"{prefix}centre_error_rms_over_path": rms / extent,
                f"{prefix}centre_error_rms_over_far": rms / far,
            }
        )
    return scores
