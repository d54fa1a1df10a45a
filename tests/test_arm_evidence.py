"""The arm prior: dynamic blobs at the bottom edge of a frame are evidence for the actor stream."""

import torch

from divff_nerfstudio.data.arm_evidence import ArmPriorConfig, arm_evidence


def test_blobs_at_the_bottom_edge_are_arms_an_object_apart_and_a_thin_bridge_are_not():
    share = torch.zeros(40, 60)
    share[15:40, 5:15] = 0.9  # an arm, entering from the bottom
    share[10:18, 30:38] = 0.8  # an object on the counter
    share[16, 15:30] = 0.9  # a one-pixel faint layer joining them
    share[30:40, 45:55] = 0.3  # a faint layer at the bottom edge: under the threshold
    evidence = arm_evidence(share, ArmPriorConfig())
    assert bool(evidence[20:40, 6:14].all())
    assert not bool(evidence[10:18, 30:38].any())
    assert not bool(evidence[:, 45:55].any())
    # without the opening the bridge joins the object to the arm
    assert bool(arm_evidence(share, ArmPriorConfig(opening=1))[10:18, 30:38].all())


def test_an_arm_too_faint_to_pass_is_found_through_the_change_evidence():
    share = torch.zeros(40, 60)
    share[15:40, 5:15] = 0.3  # a fast arm, not drawn solidly yet
    changed = torch.zeros(40, 60, dtype=torch.bool)
    changed[15:40, 5:15] = True
    changed[10:18, 30:38] = True  # an object on the counter: apart from the edge
    assert not bool(arm_evidence(share, ArmPriorConfig(with_change=False), changed).any())
    evidence = arm_evidence(share, ArmPriorConfig(), changed)
    assert bool(evidence[20:40, 6:14].all()) and not bool(evidence[10:18, 30:38].any())


def test_an_arm_the_static_stream_does_not_reproduce_is_found_when_asked():
    share = torch.zeros(40, 60)
    share[15:40, 5:15] = 0.3  # an arm resting a while: drawn faintly by every stream
    residual = torch.full((40, 60), 0.05)  # the static stream reproduces the rest of the frame
    residual[15:40, 5:15] = 0.4
    residual[10:18, 30:38] = 0.4  # an object it does not draw, apart from the edge
    assert not bool(arm_evidence(share, ArmPriorConfig(), residual=residual).any())
    evidence = arm_evidence(share, ArmPriorConfig(unexplained=0.15), residual=residual)
    assert bool(evidence[20:40, 6:14].all()) and not bool(evidence[10:18, 30:38].any())
