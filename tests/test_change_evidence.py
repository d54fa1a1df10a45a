"""The change prior: evidence where a static surface was gone for a while or something stood in
front of it, and its place in a run
(with the arm prior, read off the same renders)."""

import copy
import io
from typing import List, Optional

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras

from dataparsers.epic_diff import EpicDiffDataParserConfig
from divff_nerfstudio.data.change_evidence import CHANGED, GHOST, ChangePriorConfig, FrameRender, change_evidence

H, W = 24, 32
GREY, ORANGE, SKIN = torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.9, 0.45, 0.05]), torch.tensor([0.8, 0.6, 0.5])
OBJECT = (slice(6, 14), slice(4, 12))  # rows, columns
HAND = (slice(6, 14), slice(18, 26))


def a_frame(observed: torch.Tensor, static_rgb: torch.Tensor, in_front: Optional[torch.Tensor] = None) -> FrameRender:
    """One camera looking down -z at a wall at z = -1 (every frame from the same place, so a point
    lands on its own pixel in every frame)."""
    camera = Cameras(camera_to_worlds=torch.eye(4)[:3][None], fx=20.0, fy=20.0, cx=W / 2, cy=H / 2, width=W, height=H)
    rays = camera.generate_rays(camera_indices=0, keep_shape=True)
    distance = 1.0 / rays.directions[..., 2].abs()
    return FrameRender(
        observed=observed,
        static_rgb=static_rgb,
        static_depth=distance,
        dynamic_in_front=torch.zeros(H, W, dtype=torch.bool) if in_front is None else in_front,
        camera=camera,
        dynamic_share=torch.zeros(H, W),
    )


def frames_of_an_object_that_leaves(standing_out: bool = False, hand_over_wall: bool = False, hand_where_it_was: bool = False) -> List[FrameRender]:
    """20 frames: an object rests for 14 and is gone for the last 6; the static stream draws it (the
    cheap answer), flush with the wall or standing out in front of it (static depth 10 % nearer).
    Optionally a hand covers a patch of wall in frames 5-7, or stands where the object was in frame
    17 (the dynamic streams hold that one)."""
    static = GREY.expand(H, W, 3).clone()
    static[OBJECT] = ORANGE
    frames = []
    for t in range(20):
        seen = GREY.expand(H, W, 3).clone()
        if t < 14:
            seen[OBJECT] = ORANGE
        if hand_over_wall and 5 <= t < 8:
            seen[HAND] = SKIN
        frame = a_frame(seen, static)
        if standing_out:
            frame.static_depth[OBJECT] *= 0.9
        if hand_where_it_was and t == 17:
            frame.observed[OBJECT] = SKIN
            frame.dynamic_share[OBJECT] = 0.9
        frames.append(frame)
    return frames


def test_a_surface_gone_for_a_while_is_evidence_its_absence_is_not():
    """An object rests for 14 frames and is gone for the last 6; the static stream draws it (the
    cheap answer). A hand covers a patch of wall for 3 frames. The resting object gets evidence in
    the frames where the static stream draws it as seen, the hand (in front of a wall the static
    stream draws right) where it is; the wall where the object was missing gets none."""
    frames = frames_of_an_object_that_leaves(hand_over_wall=True)
    evidence = change_evidence(frames, list(range(20)), ChangePriorConfig(min_run=5))
    assert bool(evidence[0][OBJECT].all()) and bool(evidence[13][OBJECT].all())
    assert not bool(evidence[16][OBJECT].any())  # gone: the static stream is wrong there, not evidence
    assert bool(evidence[6][HAND].all())
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[OBJECT] = False
    outside[HAND] = False
    assert not any(bool(e[outside].any()) for e in evidence)  # the wall
    # a run shorter than min_run is not enough for the object (and its absence, no longer known as
    # such, then counts as something in front of it); the hand is still in front of the wall
    shorter = change_evidence(frames, list(range(20)), ChangePriorConfig(min_run=7))
    assert not any(bool(shorter[t][OBJECT].any()) for t in range(14)) and bool(shorter[6][HAND].all())
    # only the first evidence: the hand goes
    first_only = change_evidence(frames, list(range(20)), ChangePriorConfig(min_run=5, min_agreeing=0))
    assert not any(bool(e[HAND].any()) for e in first_only) and bool(first_only[0][OBJECT].all())




def test_where_a_surface_seen_gone_is_absent_the_static_stream_draws_a_ghost():
    """With ghosts asked for: in the 6 frames after the object left, the static stream still draws
    it over the wall the frames show; those pixels are GHOST, the frames where it rests stay
    CHANGED, and where the hand stands it is not a ghost."""
    frames = frames_of_an_object_that_leaves(standing_out=True, hand_where_it_was=True)
    evidence = change_evidence(frames, list(range(20)), ChangePriorConfig(min_run=5), ghosts=True)
    assert all(bool((evidence[t][OBJECT] == CHANGED).all()) for t in range(14))
    assert all(bool((evidence[t][OBJECT] == GHOST).all()) for t in (14, 15, 16, 18, 19))
    assert not bool((evidence[17] == GHOST).any())
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[OBJECT] = False
    assert not any(bool(e[outside].any()) for e in evidence)
    # without ghosts asked for, the same values as before GHOST existed
    plain = change_evidence(frames, list(range(20)), ChangePriorConfig(min_run=5))
    assert not any(bool((e == GHOST).any()) for e in plain)


def test_no_ghosts_where_the_gone_surface_is_flush_with_its_surroundings_or_absent_most_of_the_time():
    """A surface gone for a while that is flush with the wall around it is the wall itself, gone
    while an object neither stream drew stood on it: that object is no ghost. Nor is it where the
    surface is absent from most of the frames that see it (the static stream drew it before it
    learnt better)."""
    flush = frames_of_an_object_that_leaves(hand_where_it_was=True)
    assert not any(bool((e == GHOST).any()) for e in change_evidence(flush, list(range(20)), ChangePriorConfig(min_run=5), ghosts=True))
    mostly_absent = frames_of_an_object_that_leaves(standing_out=True, hand_where_it_was=True)
    for t in range(6, 14):
        mostly_absent[t].observed[OBJECT] = GREY
    evidence = change_evidence(mostly_absent, list(range(20)), ChangePriorConfig(min_run=5), ghosts=True)
    assert all(bool((evidence[t][OBJECT] == CHANGED).all()) for t in range(6))
    assert not any(bool((e == GHOST).any()) for e in evidence)


def test_an_object_resting_briefly_in_front_of_a_drawn_wall_is_evidence_an_unlearnt_surface_is_not():
    """The object rests for the first 6 frames of 20 and is gone after; the static stream draws the
    wall there (the cheap answer now), and a faint dynamic layer already pulls the depth in front
    of it where the object stands. A second patch is drawn wrong by the static stream in every frame
    (texture it has not learnt): it never agrees, so it is not evidence."""
    static = GREY.expand(H, W, 3).clone()
    static[HAND] = ORANGE  # wrong everywhere: the wall there is grey in every frame
    frames = []
    for t in range(20):
        seen = GREY.expand(H, W, 3).clone()
        in_front = torch.zeros(H, W, dtype=torch.bool)
        if t < 6:
            seen[OBJECT] = ORANGE
            in_front[OBJECT] = True
        frames.append(a_frame(seen, static, in_front))
    evidence = change_evidence(frames, list(range(20)), ChangePriorConfig(min_run=5))
    assert all(bool(evidence[t][OBJECT].all()) for t in range(6))
    assert not any(bool(evidence[t][OBJECT].any()) for t in range(6, 20))
    assert not any(bool(e[HAND].any()) for e in evidence)
    # the wall must be seen as drawn in min_agreeing frames (14 here)
    assert not any(bool(e.any()) for e in change_evidence(frames, list(range(20)), ChangePriorConfig(min_run=5, min_agreeing=15)))


@pytest.mark.parametrize("colours", [False, True], ids=["blobs", "blobs-and-colours"])
def test_a_run_computes_the_change_and_arm_evidence_once_and_keeps_them_in_its_checkpoints(small_scene, tmp_path, colours):
    """Both priors are read off the same renders, at the change prior's step (their weights are on
    by default), with or without the arms' colours; the arm prior's evidence is tested in
    test_arm_evidence.py."""
    from divff_nerfstudio.data.arm_evidence import ArmPriorConfig
    from divff_nerfstudio.divff_config import divff_geometry_method

    config = copy.deepcopy(divff_geometry_method.config)
    config.machine.device_type = "cpu"
    config.data = config.pipeline.datamanager.data = small_scene
    config.pipeline.datamanager.dataparser = EpicDiffDataParserConfig(data=small_scene)
    config.pipeline.datamanager.train_num_rays_per_batch = 256
    config.pipeline.datamanager.change_prior = ChangePriorConfig(at_step=2)
    config.pipeline.datamanager.arm_prior = ArmPriorConfig(colours=colours)
    config.output_dir = tmp_path
    config.vis = "tensorboard"
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup(test_mode="test")
    pipeline, model = trainer.pipeline, trainer.pipeline.model
    pipeline.get_train_loss_dict(1)
    assert model.change_evidence is None and model.arm_evidence is None
    _, loss, _ = pipeline.get_train_loss_dict(2)
    frames = len(pipeline.datamanager.train_dataset)
    for evidence in (model.change_evidence, model.arm_evidence):
        assert evidence is not None and evidence.shape == (frames, 32, 48)  # half of 96x64
    computed = model.change_evidence
    pipeline.get_train_loss_dict(3)
    assert model.change_evidence is computed  # once

    # every pixel: the losses ask for the dynamic streams, and for the actor
    model.change_evidence = torch.ones_like(computed)
    model.arm_evidence = torch.ones_like(computed, dtype=torch.bool)  # as checkpoints before NOT_OBJECTS hold it
    _, loss, _ = pipeline.get_train_loss_dict(4)
    assert float(loss["change_loss"].detach()) > 0 and float(loss["arm_loss"].detach()) > 0
    assert float(loss["ghost_loss"].detach()) == 0  # on by default; no pixel is a ghost
    # every pixel a ghost: the change loss asks nothing, the ghost loss asks the dynamic streams to go
    model.change_evidence = torch.full_like(computed, GHOST)
    _, loss, _ = pipeline.get_train_loss_dict(5)
    assert float(loss["change_loss"].detach()) == 0 and float(loss["ghost_loss"].detach()) > 0
    model.change_evidence = torch.ones_like(computed, dtype=torch.bool)  # as checkpoints before GHOST hold it

    buffer = io.BytesIO()
    torch.save(pipeline.state_dict(), buffer)
    buffer.seek(0)
    model.change_evidence = model.arm_evidence = None
    pipeline.load_state_dict(torch.load(buffer, weights_only=True))  # as a resumed run reads its checkpoint
    for evidence in (model.change_evidence, model.arm_evidence):
        assert evidence is not None and bool(evidence.all())
    # bool masks (checkpoints before GHOST and NOT_OBJECTS) read as CHANGED and ACTOR
    assert model.arm_evidence.dtype == torch.uint8 and model.change_evidence.dtype == torch.uint8
    assert bool((model.change_evidence == CHANGED).all())
    assert model.evidence_frame_size == (64, 96)
