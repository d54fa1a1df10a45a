"""The arm prior: dynamic blobs at the bottom edge of a frame are evidence for the actor stream."""

import torch
from test_change_evidence import GREY, HAND, OBJECT, ORANGE, SKIN, H, W, a_frame

from divff_nerfstudio.data.arm_evidence import (
    ACTOR,
    NOT_OBJECTS,
    ArmPriorConfig,
    arm_colour_odds,
    arm_evidence,
    arm_loss,
    dynamic_pixels,
    unexplained_pixels,
)
from divff_nerfstudio.data.change_evidence import ChangePriorConfig


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


def test_the_arms_colours_keep_a_held_object_out_of_the_evidence_and_add_a_reach_apart_from_the_edge():
    """Four frames: a skin-coloured arm from the bottom edge holds a blue object at its top, another
    blue object stands apart; in the first frame a shaded forearm reaches across, apart from the edge."""
    skin, blue = torch.tensor([0.87, 0.64, 0.52]), torch.tensor([0.1, 0.2, 0.9])
    frames = []
    for i in range(4):
        rgb, share = torch.full((40, 60, 3), 0.5), torch.zeros(40, 60)
        share[15:40, 10:17] = 0.9
        rgb[15:40, 10:17] = skin
        rgb[15:20, 10:17] = blue
        share[5:10, 40:46] = 0.9
        rgb[5:10, 40:46] = blue
        if i == 0:
            share[5:10, 25:32] = 0.9
            rgb[5:10, 25:32] = 0.8 * skin
        frames.append((rgb, share))
    config = ArmPriorConfig(colours=True)
    odds = arm_colour_odds([rgb for rgb, _ in frames], [dynamic_pixels(share, config) for _, share in frames], config)
    plain, gated = arm_evidence(frames[0][1], config), arm_evidence(frames[0][1], config, colour_odds=odds[0])
    assert bool((plain[15:40, 10:17] == ACTOR).all()) and not bool(plain[5:10, 25:32].any())
    assert bool((gated[20:40, 10:17] == ACTOR).all()) and not bool(gated[15:20, 10:17].any())  # the held object left out
    assert bool((gated[5:10, 25:32] == ACTOR).all()) and not bool(gated[5:10, 40:46].any())  # the reach added, not the object
    assert not bool(gated[:5].any())
    # asked for stronger odds, the reach (its colour 3.5 times likelier on the arms here) stays out
    strict = ArmPriorConfig(colours=True, join_margin=8.0)
    assert not bool(arm_evidence(frames[0][1], strict, colour_odds=odds[0])[5:10, 25:32].any())
    # no blob at the bottom edge anywhere: nothing to learn the arm's colours from, nothing gated
    apart = [torch.zeros(40, 60, dtype=torch.bool)]
    apart[0][5:10, 40:46] = True
    assert not bool(arm_colour_odds([frames[1][0]], apart, config)[0].any())


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
    unexplained = torch.zeros(40, 60, dtype=torch.bool)  # the static stream reproduces the rest of the frame
    unexplained[15:40, 5:15] = True
    unexplained[10:18, 30:38] = True  # an object it does not draw, apart from the edge
    unlearnt = torch.zeros(40, 60, dtype=torch.bool)
    assert not bool(arm_evidence(share, ArmPriorConfig()).any())
    evidence = arm_evidence(share, ArmPriorConfig(unexplained=0.15), unexplained=(unexplained, unlearnt))
    assert bool((evidence[20:40, 6:14] == ACTOR).all()) and not bool(evidence[10:18, 30:38].any())
    # on a surface the static stream has not learnt, the arm only keeps the objects stream away
    unlearnt[15:30, 5:15] = True
    evidence = arm_evidence(share, ArmPriorConfig(unexplained=0.15), unexplained=(unexplained, unlearnt))
    assert bool((evidence[31:40, 6:14] == ACTOR).all()) and bool((evidence[16:30, 6:14] == NOT_OBJECTS).all())


def test_a_surface_no_frame_reproduces_is_unlearnt_one_an_arm_covers_for_a_while_is_not():
    """20 frames of one wall: the static stream draws a patch wrong (orange) in every frame, and a
    hand rests over another patch for frames 4-9, with the wall behind it drawn right."""
    static = GREY.expand(H, W, 3).clone()
    static[OBJECT] = ORANGE  # the wall there is grey in every frame
    frames = []
    for t in range(20):
        seen = GREY.expand(H, W, 3).clone()
        if 4 <= t < 10:
            seen[HAND] = SKIN
        frames.append(a_frame(seen, static))
    found = unexplained_pixels(frames, list(range(20)), ArmPriorConfig(unexplained=0.15), ChangePriorConfig())
    for t in (0, 6):
        unexplained, unlearnt = found[t]
        assert bool(unexplained[OBJECT].all()) and bool(unlearnt[OBJECT].all())
    unexplained, unlearnt = found[6]
    assert bool(unexplained[HAND].all()) and not bool(unlearnt[HAND].any())
    assert not bool(found[0][0][HAND].any())
    # seen by fewer frames than unlearnt_seen: nothing counts as unlearnt
    few = unexplained_pixels(frames, list(range(4)), ArmPriorConfig(unexplained=0.15), ChangePriorConfig())
    assert not any(bool(u.any()) for _, u in few)


def test_the_arm_loss_asks_for_the_actor_on_arms_and_only_against_the_objects_where_unexplained():
    """A NOT_OBJECTS pixel may be a surface the static stream has not learnt yet: the loss must not
    ask any dynamic stream to draw it, only the objects stream to give it up."""
    evidence = torch.tensor([[ACTOR], [NOT_OBJECTS], [0]], dtype=torch.float32)
    drawn_by_nobody = arm_loss(evidence[1:2], torch.zeros(1, 1), torch.zeros(1, 1))
    assert float(drawn_by_nobody) == 0.0
    assert float(arm_loss(evidence[1:2], torch.zeros(1, 1), torch.full((1, 1), 0.5))) == 0.25
    assert float(arm_loss(evidence[:1], torch.zeros(1, 1), torch.zeros(1, 1))) == 1.0
    assert float(arm_loss(evidence[:1], torch.ones(1, 1), torch.zeros(1, 1))) == 0.0
    assert float(arm_loss(evidence[2:], torch.zeros(1, 1), torch.ones(1, 1))) == 0.0
