"""Unit tests of the triple-stream pieces: compositing, camera-frame coordinates, temporal code."""

import math

import pytest
import torch

from divff_nerfstudio.model.compositing import composite_weights, render_stream
from divff_nerfstudio.model.divff_field import TemporalCode, camera_frame_positions


def plain_volume_rendering(density: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Textbook weights, written independently: w_i = (1 - exp(-s_i d_i)) * prod_{j<i} exp(-s_j d_j)."""
    weights = torch.zeros_like(density)
    for r in range(density.shape[0]):
        transmittance = 1.0
        for i in range(density.shape[1]):
            alpha = 1 - math.exp(-float(density[r, i, 0] * deltas[r, i, 0]))
            weights[r, i, 0] = alpha * transmittance
            transmittance *= 1 - alpha
    return weights


@pytest.fixture
def samples():
    torch.manual_seed(0)
    shape = (5, 12, 1)
    return {k: torch.rand(shape) * 4 for k in ("static", "objects", "actor")}, torch.rand(shape) * 0.2


def test_one_stream_is_plain_volume_rendering(samples):
    densities, deltas = samples
    weights, streams = composite_weights({"static": densities["static"]}, deltas)
    expected = plain_volume_rendering(densities["static"], deltas)
    torch.testing.assert_close(weights, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(streams["static"], expected, atol=1e-6, rtol=1e-5)


def test_stream_weights_sum_to_total_of_summed_density(samples):
    densities, deltas = samples
    weights, streams = composite_weights(densities, deltas)
    torch.testing.assert_close(sum(streams.values()), weights, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights, plain_volume_rendering(sum(densities.values()), deltas), atol=1e-6, rtol=1e-5)


def test_shares_follow_density_ratio(samples):
    densities, deltas = samples
    equal = {"a": densities["static"], "b": densities["static"].clone()}
    _, streams = composite_weights(equal, deltas)
    torch.testing.assert_close(streams["a"], streams["b"])
    empty = {"a": densities["static"], "b": torch.zeros_like(densities["static"])}
    _, streams = composite_weights(empty, deltas)
    assert streams["b"].abs().max() == 0


def test_render_stream_weights_colours():
    weights = torch.tensor([[[0.25], [0.5], [0.0]]])
    colours = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]])
    torch.testing.assert_close(render_stream(weights, colours), torch.tensor([[0.25, 0.5, 0.0]]))


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


def test_point_fixed_in_camera_frame_has_same_actor_coordinate_in_every_frame():
    g = torch.Generator().manual_seed(1)
    in_camera = torch.tensor([0.1, -0.15, -0.35])
    frames = 30
    rotations = torch.stack([random_rotation(g) for _ in range(frames)])
    origins = torch.randn(frames, 3, generator=g)
    world = (rotations @ in_camera) + origins  # the hand moves with the head
    recovered = camera_frame_positions(world, origins, rotations.reshape(frames, 9))
    torch.testing.assert_close(recovered, in_camera.expand(frames, 3), atol=1e-5, rtol=1e-5)
    static_world = world[0].expand(frames, 3)  # a point fixed in the room does move in the camera frame
    assert camera_frame_positions(static_world, origins, rotations.reshape(frames, 9)).std(0).max() > 0.1


def test_temporal_code_is_smooth_and_below_nyquist():
    torch.manual_seed(0)
    frames = 120
    code = TemporalCode(frames, out_dim=17, num_frequencies=8, frames_per_period=6.0)
    cycles_per_frame = code.frequencies.max().item() / (2 * math.pi) / (frames - 1)
    assert cycles_per_frame <= 1 / 6 * 1.01
    t = torch.linspace(0, 1, 2001)[:, None]
    z = code(t)
    step = (z[1:] - z[:-1]).norm(dim=-1)
    assert step.max() < 0.05 * (z.max(0).values - z.min(0).values).norm()
    # a held-out frame halfway between two training frames gets a code between theirs
    a, b = torch.tensor([[40 / 119]]), torch.tensor([[41 / 119]])
    mid = code((a + b) / 2)
    assert (mid - (code(a) + code(b)) / 2).norm() < 0.2 * (code(a) - code(b)).norm() + 1e-6


def test_fast_hash_encoding_matches_nerfstudio_values_and_gradients():
    from nerfstudio.field_components.encodings import HashEncoding

    from divff_nerfstudio.model.hash_encoding import FastHashEncoding

    torch.manual_seed(0)
    reference = HashEncoding(6, 16, 128, 12, 2, implementation="torch")
    x = torch.rand(500, 3) * 1.2 - 0.1  # a few points outside the unit cube too
    target = torch.randn(500, 12)
    out_ref = reference(x)
    (out_ref * target).sum().backward()
    for use_kernel in (True, False):  # the C++ CPU kernel and the vectorised torch version
        fast = FastHashEncoding(6, 16, 128, 12, 2)
        fast.use_kernel = use_kernel
        fast.hash_table.data.copy_(reference.hash_table.data)
        inside = ((x >= 0) & (x <= 1)).all(-1)
        out_fast = fast(x)
        torch.testing.assert_close(out_fast[inside], out_ref[inside])
        (out_fast * target * inside[:, None]).sum().backward()
        reference.zero_grad()
        (reference(x) * target * inside[:, None]).sum().backward()
        torch.testing.assert_close(fast.hash_table.grad, reference.hash_table.grad)


def test_cpu_hash_kernel_builds_here():
    from divff_nerfstudio.model.hash_encoding import cpu_kernel

    assert cpu_kernel() is not None, "the C++ hash grid kernel should compile on this machine"


def test_near_far_are_z_depths_so_off_axis_rays_reach_further():
    from nerfstudio.cameras.rays import RayBundle

    from divff_nerfstudio.model.divff_model import ZDepthCollider

    bundle = RayBundle(
        origins=torch.zeros(2, 3),
        directions=torch.tensor([[0.0, 0.0, -1.0], [0.6, 0.0, -0.8]]),
        pixel_area=torch.ones(2, 1),
        metadata={"directions_norm": torch.tensor([[1.0], [1.25]])},
    )
    collider = ZDepthCollider(near_plane=0.1, far_plane=2.0)
    collider.train()
    out = collider(bundle)
    torch.testing.assert_close(out.fars, torch.tensor([[2.0], [2.5]]))  # both end on the plane z = -2
    torch.testing.assert_close(out.nears, torch.tensor([[0.1], [0.125]]))


def test_image_exposure_starts_as_identity_and_corrects_per_image():
    from divff_nerfstudio.model.exposure import ImageExposure

    exposure = ImageExposure(4)
    rgb = torch.rand(6, 3)
    cams = torch.tensor([[0], [1], [2], [3], [0], [1]])
    assert torch.equal(exposure(rgb, cams), rgb), "no correction until learned"
    with torch.no_grad():
        exposure.correction.weight[1, :3] = math.log(2.0)
    out = exposure(rgb, cams)
    assert torch.allclose(out[[1, 5]], 2 * rgb[[1, 5]]) and torch.equal(out[[0, 2, 3, 4]], rgb[[0, 2, 3, 4]])


def test_image_exposure_learns_at_its_own_rate():
    """The per-image corrections are their own parameter group, with a tenth of the grids' rate in
    every divff method (at the grids' rate, renders at the average exposure lost colour)."""
    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.engine.optimizers import Optimizers

    from divff_nerfstudio.divff_config import divff_geometry_method, divff_method
    from divff_nerfstudio.model.divff_model import DivffModelConfig
    from divff_nerfstudio.utils import compat

    compat.install()
    box = SceneBox(torch.tensor([[-1.0] * 3, [1.0] * 3]))
    small = dict(static_log2_hashmap_size=12, transient_log2_hashmap_size=12)
    groups = DivffModelConfig(image_exposure=True, **small).setup(scene_box=box, num_train_data=3, metadata={}).get_param_groups()
    assert [p.shape for p in groups["exposure"]] == [(3, 6)]
    assert not any(p is q for p in groups["exposure"] for q in groups["fields"])
    assert "exposure" not in DivffModelConfig(image_exposure=False, **small).setup(scene_box=box, num_train_data=3, metadata={}).get_param_groups()
    for method in (divff_method, divff_geometry_method):
        optimizers = Optimizers(method.config.optimizers, groups)
        lrs = {name: opt.param_groups[0]["lr"] for name, opt in optimizers.optimizers.items()}
        assert lrs["exposure"] == pytest.approx(lrs["fields"] / 10)


def test_runs_saved_before_image_exposure_keep_it_off():
    """config.yml of a run older than the field has no image_exposure: it trained without."""
    import yaml

    from divff_nerfstudio.model.divff_model import DivffModelConfig

    text = yaml.dump(DivffModelConfig())
    assert yaml.load(text, Loader=yaml.Loader).image_exposure is True
    old = text.replace("image_exposure: true\n", "")
    assert "image_exposure" not in old and yaml.load(old, Loader=yaml.Loader).image_exposure is False


def test_a_render_beyond_a_clipped_channel_costs_nothing():
    """Where the camera clipped a channel, a brighter (or, at 0, darker) render matches it; a render
    short of the clipped value, and every unclipped channel, keep their error and gradient."""
    from divff_nerfstudio.model.exposure import clip_as_observed

    image = torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.5, 0.0]])
    rgb = torch.tensor([[1.3, 0.7, -0.2], [0.8, 0.3, 0.1]], requires_grad=True)
    seen = clip_as_observed(rgb, image, 0.98)
    assert torch.equal(seen.detach(), torch.tensor([[1.0, 0.7, 0.0], [0.8, 0.3, 0.1]]))
    ((seen - image) ** 2).sum().backward()
    assert torch.equal(rgb.grad == 0, torch.tensor([[True, False, True], [False, False, False]]))


def test_runs_saved_before_clipped_level_or_the_change_and_arm_priors_load_as_they_trained():
    import yaml

    from divff_nerfstudio.model.divff_model import DivffModelConfig

    text = yaml.dump(DivffModelConfig())
    loaded = yaml.load(text, Loader=yaml.Loader)
    changed = {"clipped_level": 0.98, "change_loss_weight": 10.0, "arm_loss_weight": 10.0, "ghost_loss_weight": 10.0}
    assert all(getattr(loaded, name) == value for name, value in changed.items())
    old = text
    for name, value in changed.items():
        old = old.replace(f"{name}: {value}\n", "")
        assert name not in old
    loaded = yaml.load(old, Loader=yaml.Loader)
    assert loaded.clipped_level is None and loaded.change_loss_weight == loaded.arm_loss_weight == loaded.ghost_loss_weight == 0.0


def test_static_levels_fade_in_coarse_to_fine():
    """With 2.5 of 6 levels active the static stream reads levels 0-1 fully, level 2 at half weight
    and nothing finer (so no gradient reaches the fine tables); all levels restore the plain field;
    the object and actor grids fade the same way when asked."""
    from divff_nerfstudio.model.divff_field import DivffField

    torch.manual_seed(0)
    field = DivffField(torch.tensor([[-1.0] * 3, [1.0] * 3]), 0.5, num_images=2, num_frames=2, static_levels=6, static_log2_size=10)
    points = torch.rand(64, 3) * 2 - 1
    full, _ = field.static_density(points)
    field.set_levels(2.5 / 6)
    encoding = field.static_grid((points + 1) / 2)  # the box is [-1, 1]^3
    levels = encoding.unflatten(-1, (6, -1))
    expected_input = torch.cat([levels[:, :2], 0.5 * levels[:, 2:3], torch.zeros_like(levels[:, 3:])], dim=1).flatten(1)
    coarse, _ = field.static_density(points)
    torch.testing.assert_close(coarse, torch.exp(field.static_mlp(expected_input)[..., :1] - 1.0))
    coarse.sum().backward()
    table = field.static_grid.hash_table.grad.view(6, -1, 2)
    assert table[:3].abs().sum() > 0 and table[3:].abs().sum() == 0
    assert not field.objects.fade.fading and not field.actor.fade.fading, "transient grids fade only when asked"
    field.set_levels(1.0)
    torch.testing.assert_close(field.static_density(points)[0], full)
    field.set_levels(0.5, transient=True)
    for stream in (field.objects, field.actor):
        levels = stream.fade.weights.shape[0]
        assert stream.fade.fading and stream.fade.weights[: levels // 2].all() and not stream.fade.weights[levels // 2 :].any()


def small_model_and_rays(**config):
    """A divff model with small hash tables in training mode, and 64 rays of a 16x16 camera."""
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.data.scene_box import SceneBox

    from divff_nerfstudio.model.divff_model import DivffModelConfig
    from divff_nerfstudio.utils import compat

    compat.install()  # LPIPS without its download, as the plugin runs it offline
    torch.manual_seed(0)
    box = SceneBox(torch.tensor([[-1.0] * 3, [1.0] * 3]))
    model = DivffModelConfig(static_log2_hashmap_size=12, transient_log2_hashmap_size=12, **config).setup(
        scene_box=box, num_train_data=2, metadata={}
    )
    model.train()
    camera = Cameras(camera_to_worlds=torch.eye(4)[:3][None], fx=20.0, fy=20.0, cx=8.0, cy=8.0, width=16, height=16, times=torch.zeros(1, 1))
    return model, camera.generate_rays(camera_indices=0).flatten()[:64]


def test_overlap_loss_makes_the_objects_stream_give_way():
    """The overlap loss is the objects stream's rendering weight where the static stream holds
    density; a step along its gradient on the objects stream alone lowers it."""
    model, rays = small_model_and_rays(overlap_loss_weight=0.3)

    def overlap() -> torch.Tensor:
        torch.manual_seed(1)  # the same samples along the rays each time
        return model.get_loss_dict(model(rays), {"image": torch.rand(64, 3)})["overlap_loss"]

    before = overlap()
    assert before > 0
    before.backward()
    table = model.field.objects.grid.hash_table
    assert table.grad.abs().sum() > 0
    with torch.no_grad():
        table -= table.grad / table.grad.norm()
    assert overlap() < before


def test_beta_max_limits_the_colour_uncertainty_for_its_steps():
    """With beta_max the rendered uncertainty stops at it, however large the streams' own; after
    beta_max_steps of training it is free again."""
    model, rays = small_model_and_rays(beta_max=0.1, beta_max_steps=5)
    for stream in (model.field.objects, model.field.actor):

        def uncertain(*args, forward=stream.forward, **kwargs):
            out = forward(*args, **kwargs)
            return {**out, "beta": out["beta"] * 1e4}

        stream.forward = uncertain
    model.set_step(4)
    capped = model(rays)["beta"]
    assert 0.099 < capped.max() <= 0.1 + 1e-6
    model.set_step(5)
    assert model(rays)["beta"].max() > 1.0


def test_opacity_entropy_charges_faint_dynamic_layers_only():
    """The entropy term is zero for rays whose object and actor opacity is 0 or 1 and largest for
    half-opaque ones."""
    from divff_nerfstudio.model.divff_model import DivffModel

    def entropy(objects: float, actor: float) -> float:
        outputs = {"accumulation_objects": torch.full((4, 1), objects), "accumulation_actor": torch.full((4, 1), actor)}
        return float(DivffModel.opacity_entropy(outputs))

    assert entropy(0.0, 1.0) < 2e-3 and entropy(1.0, 0.0) < 2e-3
    assert entropy(0.5, 0.0) > entropy(0.1, 0.0) > entropy(0.0, 0.0)


def test_a_time_grid_reads_the_first_two_coordinates_and_time():
    """A stream's time grid sees (x, y, t): two times at one point differ in its part of the
    features only, and moving along the third coordinate changes only the position grid's part."""
    from divff_nerfstudio.model.divff_field import TransientStream

    torch.manual_seed(0)
    stream = TransientStream(levels=4, log2_size=10, max_res=64, code_dim=3, hidden=16, time_grid=True, time_scale=0.5)
    x = torch.rand(8, 5, 3) * 0.8 + 0.1
    code = torch.zeros(8, 1, 3)
    width = stream.grid.get_out_dim()

    def features(points: torch.Tensor, t: float) -> torch.Tensor:
        return stream(points, code, times=torch.full((8, 1, 1), t))["features"][..., : 2 * width]

    early, late = features(x, 0.2), features(x, 0.8)
    assert torch.equal(early[..., :width], late[..., :width]) and not torch.allclose(early[..., width:], late[..., width:])
    deeper = features(x + torch.tensor([0.0, 0.0, 0.05]), 0.2)
    assert torch.equal(deeper[..., width:], early[..., width:]) and not torch.allclose(deeper[..., :width], early[..., :width])
    plain = TransientStream(levels=4, log2_size=10, max_res=64, code_dim=3, hidden=16)
    assert plain.time_grid is None and plain.get_out_dim() == stream.get_out_dim() - width
