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
