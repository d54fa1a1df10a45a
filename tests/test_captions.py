"""The test CLIP's training crops: windows like the teacher's patch pyramid, captioned by what fills them."""

import numpy as np


def test_windows_are_captioned_by_the_object_or_hand_that_fills_them():
    from divff_nerfstudio.synthetic.captions import WINDOW_MIN_SHARE, frame_crops
    from divff_nerfstudio.synthetic.epic_writer import SceneConfig
    from divff_nerfstudio.synthetic.scene import KitchenClip

    clip = KitchenClip(3, num_frames=40, num_objects=8)
    crops = list(frame_crops(clip, 5, SceneConfig().intrinsics(), np.random.default_rng(0), per_thing=0, windows=200))
    objects = [c for c in crops if c.mask is not None]
    assert objects and len(crops) < 200, "some windows show an object, and windows of bare background are dropped"
    for crop in objects:  # the mask is resampled to the crop size, so its share is near, not exactly, the window's
        assert crop.mask.mean() > WINDOW_MIN_SHARE - 0.1, crop.label
        assert {crop.label, "object"} <= crop.attributes
    assert all(c.label == "hand" for c in crops if c.mask is None)


def test_hard_clips_are_recorded_as_the_hard_preset_and_leave_the_clean_ones_as_they_were():
    """hard_share turns some clips into the hard preset's (noise, JPEG, printed objects): none of
    their crops is a clean render; the clips it leaves clean are unchanged, crop for crop."""
    from divff_nerfstudio.synthetic.captions import generate_crops

    seeds = range(6)
    clean = {(c.label, c.image.tobytes()) for c in generate_crops(seeds, 1)}
    hard = generate_crops(seeds, 1, hard_share=1.0)
    mixed = generate_crops(seeds, 1, hard_share=0.5)
    assert hard and not any((c.label, c.image.tobytes()) in clean for c in hard)
    kept = [c for c in mixed if (c.label, c.image.tobytes()) in clean]
    assert 0 < len(kept) < len(mixed), "some clips stay clean, crop for crop, and some do not"
