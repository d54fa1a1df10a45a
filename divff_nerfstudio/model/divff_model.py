"""The divff model: NeuralDiff's static / objects / actor decomposition with a CPU-friendly backbone.

Outputs per ray: composite `rgb`, each stream alone (`rgb_static`, `rgb_objects`, `rgb_actor`,
rendered with its own transmittance, for viewing), each stream's share of the composite
(`accumulation_static/objects/actor`), `depth`, `beta` and `dynamic_mask` (objects + actor share:
NeuralDiff's foreground score); each stream alone also has `depth_<stream>` and `opacity_<stream>`
(what ns-export reads to export one stream). Loss: beta-weighted colour loss, log beta, density
sparsity of the dynamic streams, nerfstudio's interlevel (proposal) loss.

With language targets (DIV-FF), also unit CLIP and video embeddings per ray (`clip`, `video`) and
per stream (`clip_static`, ...), trained with a Huber loss on a schedule: geometry only, then the
language heads with geometry frozen (the geometry pass runs without gradients, which also makes
those steps cheap), then both. A text query set on `queries` (a QuerySession) adds relevancy maps to renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Literal, Optional, Tuple, Type

import numpy as np
import torch
from jaxtyping import Float, UInt8
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.model_components.losses import interlevel_loss
from nerfstudio.model_components.ray_samplers import ProposalNetworkSampler, UniformSampler
from nerfstudio.model_components.scene_colliders import NearFarCollider
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor
from torch.nn import Parameter
from torchmetrics.functional import structural_similarity_index_measure
from torchmetrics.image import PeakSignalNoiseRatio

from divff_nerfstudio.data.arm_evidence import arm_loss
from divff_nerfstudio.data.change_evidence import CHANGED, GHOST
from divff_nerfstudio.language.spec import LanguageSpec
from divff_nerfstudio.model import device_preset
from divff_nerfstudio.model.compositing import STREAMS, composite_weights, render_stream
from divff_nerfstudio.model.device_preset import Implementation
from divff_nerfstudio.model.divff_field import DivffField, stream_outputs
from divff_nerfstudio.model.exposure import ImageExposure, clip_as_observed
from divff_nerfstudio.model.language_heads import LanguageHeads, feature_loss
from divff_nerfstudio.model.proposal_field import WorldAndCameraProposal
from divff_nerfstudio.model.queries import QueryEncoder
from divff_nerfstudio.model.query_session import QuerySession, camera_key
from divff_nerfstudio.model.render_frame import RenderFrame


class ZDepthCollider(NearFarCollider):
    """Near/far planes given as z-depths (EPIC-Diff's convention), turned into distances along each
    ray: an off-axis ray reaches the far plane later than the optical axis does. With distances
    cut at the axis value, image corners lose the far wall and a stream fakes it nearer."""

    def set_nears_and_fars(self, ray_bundle: RayBundle) -> RayBundle:
        ray_bundle = super().set_nears_and_fars(ray_bundle)
        norm = ray_bundle.metadata.get("directions_norm") if ray_bundle.metadata else None
        if norm is not None:
            ray_bundle.nears = ray_bundle.nears * norm
            ray_bundle.fars = ray_bundle.fars * norm
        return ray_bundle


@dataclass
class DivffModelConfig(ModelConfig):
    """Triple-stream model; defaults are sized for training on a CPU."""

    _target: Type = field(default_factory=lambda: DivffModel)
    near_plane: Optional[float] = None
    """Near plane (z-depth); None: 0.9 x the smallest per-frame near of the dataset."""
    far_plane: Optional[float] = None
    """Far plane (z-depth); None: 1.05 x the largest per-frame far of the dataset."""
    actor_extent: Optional[float] = None
    """Half-size of the camera-frame box the actor lives in; None: 0.6 x the median far."""
    implementation: Implementation = "auto"
    """Hash grids and MLPs: "tcnn" (tiny-cuda-nn) or "torch"; auto: tcnn on CUDA where tinycudann
    imports, torch elsewhere (device_preset; the choice is logged and saved in config.yml)."""
    num_proposal_samples: Optional[int] = None
    """Samples per ray of the proposal network. This and the other sizes left None come from the
    device's preset (device_preset.CPU_SIZES: 48; GPU_SIZES: 96); set one to override it."""
    num_nerf_samples: Optional[int] = None
    """Samples per ray of the three streams (CPU 24, GPU 48). Fewer, better placed samples pay on the CPU (generated
    seed-11 scene, divff-geometry, 8 minutes on 2 threads: 24/48 samples took 3860 steps to mAP
    85.4, PSNR 25.6; 32/64 took 3420 steps to mAP 85.5, PSNR 24.8)."""
    eval_num_proposal_samples: int = 32
    eval_num_nerf_samples: int = 16
    """Samples per ray when rendering (evaluation, ns-render, the viewer): inference has no backward
    pass to amortise, and the proposal already puts the samples where density is (at 16, 0.02 % of
    samples had an optical depth under 1e-3: no empty space left to skip). Generated clean seed-21
    scene, 2500 steps: 48/24 samples gave mAP 89.9, PSNR 27.3, a 228x128 frame in 1.28 s; 32/16
    gave mAP 89.5, PSNR 27.3 in 0.99 s; 24/12 mAP 89.6, PSNR 27.4 in 0.79 s."""
    proposal_update_every: int = 5
    """Update the proposal network every N steps once warmed up."""
    proposal_warmup: int = 500
    """Steps over which proposal updates slow down from every step to every N steps."""
    proposal_weights_anneal_slope: float = 10.0
    proposal_weights_anneal_max_num_iters: int = 500
    static_levels: Optional[int] = None
    """Levels of the static hash grid (CPU 12, GPU 16); then its table size (2^17, 2^19) and finest
    resolution (512, 2048), and the same for the object and actor grids (8 / 16 levels, 2^15 / 2^17,
    256 / 1024)."""
    static_log2_hashmap_size: Optional[int] = None
    static_max_res: Optional[int] = None
    transient_levels: Optional[int] = None
    transient_log2_hashmap_size: Optional[int] = None
    transient_max_res: Optional[int] = None
    hidden_dim: int = 64
    appearance_dim: int = 8
    temporal_code_dim: int = 17
    """Size of z(t), the temporal code of the object and actor streams (reference: 17)."""
    temporal_frequencies: int = 8
    """sin/cos frequencies of the temporal code."""
    time_grids: Tuple[Literal["objects", "actor"], ...] = ()
    """Streams ("objects", "actor") that also read a hash grid over (x, y, t): their first two
    coordinates and time. Off: with both at scale 0.25 (divff-geometry, 3000 steps, CLEAN_48 and
    LANG_73) test PSNR +0.5 / +1.4 dB and training-frame mAP +2, but test object AP -16 / -8: the
    objects stream draws a faint copy of the wall (README, "Measured")."""
    time_grid_scale: float = 1.0
    """Time's extent in those grids (1: as fine in t as in x and y)."""
    coarse_to_fine_steps: int = 0
    """Steps over which the static grid's levels fade in, from `coarse_start` of them to all (0: all
    from the start). Early on the static stream cannot draw anything object-sized, so the objects
    stream learns the objects. With `overlap_loss_weight` 0.3 (divff-geometry, 3500 steps, 1024
    rays, training seed 42): 2000 lifts the clean seed-21 scene's object AP from 23 to 73, but on
    the textured hard seed-22 scene the objects stream learns the fine texture of the whole room
    and keeps it (object AP 49 -> 25); 500 gives 37 and 45. Off until it helps both."""
    coarse_start: float = 1 / 3
    """Fraction of the grids' levels let through at the start of `coarse_to_fine_steps`."""
    coarse_to_fine_transient: bool = False
    """Fade the object and actor grids in the same way, so neither takes the fine texture the static
    stream may not draw yet (hard scene, with the overlap loss: object AP 13 -> 49 at 2000 steps;
    clean: 54 -> 37). README, "Measured", has both scenes."""
    beta_min: float = 0.03
    """Smallest colour uncertainty (NeuralDiff: 0.03)."""
    beta_max: Optional[float] = None
    """Largest colour uncertainty (None: no limit, as NeuralDiff). Unlimited, a faint high-beta layer
    of a dynamic stream makes the residual of a ghost nearly free, so the static stream keeps an
    object where it rests most of the time. 0.1 moves them to the objects stream on the clean
    seed-21 scene (divff-geometry, 3500 steps: object AP 37 -> 93), but the dynamic streams then
    take a faint copy of the room wherever the static one misses (exposure, blur), and the hard
    and both check scenes lose (README, "Measured"); `opacity_entropy_weight` keeps the copy out
    on clean scenes. Off until it helps them."""
    beta_max_steps: int = 0
    """Training steps the `beta_max` limit holds (0: all of them)."""
    dynamic_density_weight: float = 0.01
    """Weight of the mean object + actor density (sparsity: prefer the static stream)."""
    overlap_loss_weight: float = 0.0
    """Weight of the objects stream's rendering weight where the static stream has density too
    (the static share detached, so it asks the objects stream to give way; static density still
    gets a gradient through the transmittance in front of the objects). Alone
    at 0.3 on the hard seed-22 scene (3500 steps): object AP 47 (49 without), actor AP 82 (90)."""
    opacity_entropy_weight: float = 0.0
    """Weight of the binary entropy of each ray's object and actor opacity: a faint layer pays,
    an opaque object or empty space does not. With `beta_max` 0.1 and 0.1 here it keeps the faint
    room copy out: clean seed-21 scene mAP 96.6 / 96.4, object AP 89.1 / 88.5 (seeds 42 / 7; 87.5 /
    86.5 and 36.7 / 32.7 without both), but the hard scenes still lose 1-3 mAP (README)."""
    interlevel_loss_mult: float = 1.0
    use_average_appearance_embedding: bool = True
    image_exposure: bool = True
    """Learn a colour gain and offset per training image for the composite (exposure and white
    balance that drift), so no stream has to explain them; renders use none. Its own optimizer
    group ("exposure", a tenth of the grids' rate). divff-geometry, 3500 steps, 1 thread, training
    seeds 42 and 7, on against off: clean seed-21 scene mAP 87.5 / 86.5 against 84.9 / 81.5, object
    AP 36.7 / 32.7 against 27.7 / 25.4; hard seed-22 scene mAP 90.3 / 90.1 against 85.7 / 86.9,
    object AP 59.4 / 49.7 against 33.6 / 32.2 (README, "Measured"). A run from scratch starts it
    from gains read off the frames (--pipeline.datamanager.exposure-estimate)."""
    clipped_level: Optional[float] = 0.98
    """Observed colour channels at or above this (or at or below 1 minus it) were clipped by the
    camera: a render beyond them costs nothing there (None: every channel is taken as measured).
    Once the per-image exposure brightens a frame, the render of a wall the camera saturated comes
    out above 1; charged for it, the dynamic streams darken the wall with a copy of it (the hard
    seed-22 scene clips 12 % of the pixels of its brightest frames, a quarter of their top rows)."""
    geometry_steps: int = 2000
    """Language stage 1: steps of geometry alone (no language heads evaluated)."""
    feature_steps: int = 500
    """Language stage 2: steps that train only the language heads, geometry frozen; then both."""
    language_hidden_dim: int = 64
    clip_loss_weight: float = 1.0
    video_loss_weight: float = 1.0
    dino_loss_weight: float = 0.1
    """Weight of the optional DINO head's MSE (--pipeline.datamanager.language.dino.enabled True)."""
    motion_loss_weight: float = 1.0
    """Weight of the motion prior (--pipeline.datamanager.motion-prior.enabled True): mean of
    evidence x (1 - dynamic share)^2, so pixels seen to move are given to the objects or the actor."""
    change_loss_weight: float = 10.0
    """Weight of the change prior (data/change_evidence.py; computed once, at the step
    --pipeline.datamanager.change-prior.at-step): mean of evidence x (1 - dynamic share)^2 where a
    surface the static stream draws was seen to be gone for a while, so an object that rests most
    of the video and is moved once goes to the objects stream in every frame (0: off). divff-geometry,
    3500 steps, training seed 42: clean seed-21 scene object AP 20 -> 82, fresh clean seed-71 39 ->
    77; hard scenes -0.6 to -3.2 mAP, within one run's spread (README, "Measured")."""

    ghost_loss_weight: float = 10.0
    """Weight of the change prior's ghosts (data/change_evidence.py, computed with it): mean of
    evidence x dynamic share^2 where a surface seen gone for a while is absent from a frame and the
    static stream draws it there anyway; there the colour loss also takes the uncertainty at its
    floor (beta_min), so the dynamic layer that hides the ghost gives way and the colour loss
    carves the static density out (0: off). Object AP +9.0 / +2.7 on the two clean scenes of eight
    where ghosts were found, within 1 point on the rest (README, "Change prior")."""

    arm_loss_weight: float = 10.0
    """Weight of the arm prior (data/arm_evidence.py; computed with the change prior, at its step and
    from the same renders): mean of evidence x (1 - actor share)^2 where a dynamic blob reaches the
    bottom edge of the frame, so a hand resting at an object goes to the actor stream, not the
    objects stream (0: off). divff-geometry, 3500 steps: fresh hard seed-83 scene object AP 49 -> 72
    (README, "Measured")."""

    def __setstate__(self, state: Dict[str, object]) -> None:
        """A run's config.yml is loaded through here: a field it lacks was saved before that field
        existed, so it takes the value the run trained with, not today's default."""
        self.__dict__.update({**_BEFORE_THE_FIELD, **state})


_BEFORE_THE_FIELD: Dict[str, object] = {"image_exposure": False, "clipped_level": None, "change_loss_weight": 0.0, "arm_loss_weight": 0.0, "ghost_loss_weight": 0.0}
"""Fields whose default changed, with the value that runs older than the field trained with."""


class DivffModel(Model):
    config: DivffModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        CONSOLE.print(device_preset.resolve(self.config, self.kwargs.get("device", "cpu")))
        implementation = self.config.implementation
        meta = self.kwargs.get("metadata", {})
        nears, fars = meta.get("nears"), meta.get("fars")
        num_frames = int(meta.get("num_frames", self.num_train_data))
        # Defaults come from the dataset's per-frame near/far (epic-diff metadata) when there are any.
        near, far, actor_extent = self.config.near_plane, self.config.far_plane, self.config.actor_extent
        if near is None:
            near = 0.9 * float(nears.min()) if nears is not None else 0.05
        if far is None:
            far = 1.05 * float(fars.max()) if fars is not None else 2.0
        if actor_extent is None:
            actor_extent = 0.6 * (float(fars.median()) if fars is not None else far)
        aabb = self.scene_box.aabb.float()

        self.field = DivffField(
            aabb,
            actor_extent,
            num_images=self.num_train_data,
            num_frames=num_frames,
            static_levels=self.config.static_levels,
            static_log2_size=self.config.static_log2_hashmap_size,
            static_max_res=self.config.static_max_res,
            transient_levels=self.config.transient_levels,
            transient_log2_size=self.config.transient_log2_hashmap_size,
            transient_max_res=self.config.transient_max_res,
            hidden_dim=self.config.hidden_dim,
            appearance_dim=self.config.appearance_dim,
            temporal_code_dim=self.config.temporal_code_dim,
            temporal_frequencies=self.config.temporal_frequencies,
            use_average_appearance_embedding=self.config.use_average_appearance_embedding,
            implementation=implementation,
            time_grids=tuple(self.config.time_grids),
            time_grid_scale=self.config.time_grid_scale,
        )
        self.proposal = WorldAndCameraProposal(aabb, actor_extent, implementation=implementation)
        self.exposure = ImageExposure(self.num_train_data) if self.config.image_exposure else None
        self.collider = ZDepthCollider(near_plane=near, far_plane=far)
        spec: Optional[LanguageSpec] = meta.get("language")
        self.language: Optional[LanguageHeads] = None
        self.queries: Optional[QuerySession] = None
        if spec is not None:
            self.language = LanguageHeads(self.field.feature_dims(), spec.target_dims(), self.config.language_hidden_dim, implementation)
            self.queries = QuerySession(QueryEncoder(spec.clip, spec.video, spec.clip_dim if spec.oracle else None))
        self.frame = RenderFrame()
        self.step = 0
        self.change_evidence: Optional[UInt8[Tensor, "num_images h w"]] = None
        """The change prior's evidence per training pixel (CHANGED or GHOST, data/change_evidence.py),
        at its render size (a fraction of the frames' `evidence_frame_size`); set once while
        training (DivffPipeline), saved with the checkpoints."""
        self.arm_evidence: Optional[UInt8[Tensor, "num_images h w"]] = None
        """The arm prior's (ACTOR or NOT_OBJECTS per pixel, data/arm_evidence.py), likewise."""
        self.evidence_frame_size = (0, 0)

        def update_schedule(step: int) -> int:
            return int(np.clip(np.interp(step, [0, self.config.proposal_warmup], [0, self.config.proposal_update_every]), 1, self.config.proposal_update_every))

        def sampler(proposal_samples: int, nerf_samples: int, schedule: Callable[[int], int]) -> ProposalNetworkSampler:
            return ProposalNetworkSampler(
                num_proposal_samples_per_ray=(proposal_samples,),
                num_nerf_samples_per_ray=nerf_samples,
                num_proposal_network_iterations=1,
                single_jitter=True,
                update_sched=schedule,
                initial_sampler=UniformSampler(single_jitter=True),
            )

        self.proposal_sampler = sampler(self.config.num_proposal_samples, self.config.num_nerf_samples, update_schedule)
        # the same proposal network, sampled more sparsely for renders; no parameters of its own
        self.render_sampler = sampler(self.config.eval_num_proposal_samples, self.config.eval_num_nerf_samples, lambda step: 1)
        # imported here, as nerfacto does, so compat.install() has wrapped LPIPS by now
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = structural_similarity_index_measure
        self.lpips = LearnedPerceptualImagePatchSimilarity(normalize=True)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = {"proposal_networks": list(self.proposal.parameters()), "fields": list(self.field.parameters())}
        if self.exposure is not None:
            groups["exposure"] = list(self.exposure.parameters())
        if self.language is not None:
            groups["language"] = list(self.language.parameters())
        return groups

    def stage(self) -> str:
        """Which part of the schedule training is in: geometry, features (geometry frozen) or joint."""
        if self.language is None or self.step < self.config.geometry_steps:
            return "geometry"
        return "features" if self.step < self.config.geometry_steps + self.config.feature_steps else "joint"

    def set_step(self, step: int) -> None:
        self.step = step
        steps, start = self.config.coarse_to_fine_steps, self.config.coarse_start
        if steps > 0:
            self.field.set_levels(start + (1 - start) * min(step / steps, 1.0), self.config.coarse_to_fine_transient)

    def missing_priors(self) -> Tuple[str, ...]:
        """The render priors ("change", "arm") whose loss weight asks for evidence the model does not
        hold yet: the pipeline renders only when one is missing, and computes only those."""
        held = (("change", self.config.change_loss_weight, self.change_evidence), ("arm", self.config.arm_loss_weight, self.arm_evidence))
        return tuple(name for name, weight, evidence in held if weight > 0 and evidence is None)

    def get_extra_state(self) -> Dict[str, object]:
        """The schedule counters that are not parameters, saved with the checkpoint: the proposal
        sampler decides from them whether this step updates the proposal network, so without them
        a resumed run would take other steps than the uninterrupted one. Likewise the change and
        arm priors' evidence, computed from the model as it was at one step."""
        sampler = self.proposal_sampler  # its counters are private in nerfstudio, with no accessor
        state: Dict[str, object] = {"step": self.step, "sampler_step": sampler._step, "sampler_steps_since_update": sampler._steps_since_update}
        for key, evidence in (("change_evidence", self.change_evidence), ("arm_evidence", self.arm_evidence)):
            if evidence is not None:
                state[key] = evidence.cpu()
                state["change_frame_size"] = self.evidence_frame_size  # the key checkpoints have used since the change prior
        return state

    def set_extra_state(self, state: Dict[str, object]) -> None:
        self.set_step(int(state["step"]))
        self.proposal_sampler._step = int(state["sampler_step"])
        self.proposal_sampler._steps_since_update = int(state["sampler_steps_since_update"])
        change, arm = state.get("change_evidence"), state.get("arm_evidence")
        # checkpoints from before GHOST and NOT_OBJECTS hold bool masks: True is CHANGED and ACTOR
        self.change_evidence = change.to(self.device, torch.uint8) if isinstance(change, Tensor) else None
        self.arm_evidence = arm.to(self.device, torch.uint8) if isinstance(arm, Tensor) else None
        self.evidence_frame_size = tuple(state.get("change_frame_size", (0, 0)))

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        def set_anneal(step: int) -> None:
            frac = np.clip(step / self.config.proposal_weights_anneal_max_num_iters, 0, 1)
            b = self.config.proposal_weights_anneal_slope
            anneal = b * frac / ((b - 1) * frac + 1)
            for sampler in (self.proposal_sampler, self.render_sampler):
                sampler.set_anneal(anneal)

        return [
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self.set_step, update_every_num_iters=1),
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], set_anneal, update_every_num_iters=1),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.proposal_sampler.step_cb, update_every_num_iters=1),
        ]

    def get_rgba_image(self, outputs: Dict[str, Tensor], output_name: str = "rgb") -> Tensor:
        """Colour and opacity, for ns-export's opacity filter: `rgb_<stream>` (or any output named
        for a stream) goes with that stream's own opacity, everything else with the composite's."""
        stream = next((k for k in STREAMS if output_name.endswith(f"_{k}")), None)
        opacity = outputs[f"opacity_{stream}"] if stream else outputs["accumulation"]
        return torch.cat([outputs[output_name][..., :3] / opacity.clamp(min=1e-10), opacity], dim=-1)

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        ray_bundle = self.frame.rays(ray_bundle, self.training)
        stage = self.stage() if self.training else "joint"
        language = self.language is not None and stage != "geometry"
        with torch.set_grad_enabled(torch.is_grad_enabled() and stage != "features"):
            outputs, out, stream_weights = self._render_geometry(ray_bundle, features=language)
            if self.training and self.exposure is not None and ray_bundle.camera_indices is not None:
                outputs["rgb"] = self.exposure(outputs["rgb"], ray_bundle.camera_indices)
        if language:
            # detached weights: language never bends geometry (as LERF)
            hidden = self.language(stream_outputs(out, "features"), {k: w.detach() for k, w in stream_weights.items()})
            if self.training:
                for kind in ("clip", "video"):
                    outputs[kind] = self.language.embed(hidden, kind)["composite"]
            else:
                outputs.update({f"language_{k}": h for k, h in hidden.items()})
                outputs["language_features"] = sum(hidden.values())  # shown by the viewer as PCA colours
            if "dino" in self.language.projections:
                outputs["dino"] = self.language.render(hidden, "dino")
        return outputs

    def _render_geometry(self, ray_bundle: RayBundle, features: bool) -> Tuple[Dict[str, Tensor], Dict, Dict[str, Tensor]]:
        """The composite and each stream; `out` (the field's outputs) holds the streams' features
        for the language heads only with `features`."""
        sampler = self.proposal_sampler if self.training else self.render_sampler
        ray_samples, weights_list, ray_samples_list = sampler(ray_bundle, density_fns=[self.proposal.density_fn(ray_bundle)])
        out = self.field(ray_samples, features=features)
        densities, colours, betas = (stream_outputs(out, q) for q in ("density", "rgb", "beta"))
        weights, stream_weights = composite_weights(densities, ray_samples.deltas)
        midpoints = (ray_samples.frustums.starts + ray_samples.frustums.ends) / 2
        outputs: Dict[str, Tensor] = {
            "rgb": sum(render_stream(stream_weights[k], colours[k]) for k in STREAMS),
            "accumulation": weights.sum(dim=-2),
            "depth": render_stream(weights, midpoints) / (weights.sum(dim=-2) + 1e-10),
        }
        for k in STREAMS:
            outputs[f"accumulation_{k}"] = stream_weights[k].sum(dim=-2)
            solo = ray_samples.get_weights(densities[k])
            outputs[f"rgb_{k}"] = render_stream(solo, colours[k])
            # each stream alone, for exports: what it holds where the others are not in the way
            outputs[f"opacity_{k}"] = solo.sum(dim=-2)
            outputs[f"depth_{k}"] = render_stream(solo, midpoints) / (outputs[f"opacity_{k}"] + 1e-10)
        outputs["dynamic_mask"] = (outputs["accumulation_objects"] + outputs["accumulation_actor"]).clamp(0, 1)
        beta = sum(render_stream(stream_weights[k], b) for k, b in betas.items())
        if self.config.beta_max is not None and (self.config.beta_max_steps == 0 or self.step < self.config.beta_max_steps):
            beta = beta.clamp(max=self.config.beta_max - self.config.beta_min)
        outputs["beta"] = beta + self.config.beta_min
        if self.training:
            weights_list.append(weights)
            ray_samples_list.append(ray_samples)
            outputs["weights_list"] = weights_list
            outputs["ray_samples_list"] = ray_samples_list
            outputs["mean_dynamic_density"] = (densities["objects"].mean() + densities["actor"].mean())[None]
            if self.config.overlap_loss_weight > 0:
                static_share = (densities["static"] / sum(densities.values()).clamp(min=1e-10)).detach()
                outputs["objects_over_static"] = (stream_weights["objects"] * static_share).sum(dim=-2).mean()[None]
        return outputs, out, stream_weights

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        image = batch["image"].to(self.device)
        return {"psnr": self.psnr(outputs["rgb"], image), "mean_beta": outputs["beta"].mean()}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        image = batch["image"].to(self.device)
        beta = outputs["beta"]
        rgb = outputs["rgb"] if self.config.clipped_level is None else clip_as_observed(outputs["rgb"], image, self.config.clipped_level)
        change = self._evidence_of(self.change_evidence, batch["indices"]) if self.training and self.change_evidence is not None else None
        ghost = change == GHOST if change is not None and self.config.ghost_loss_weight > 0 else None
        # a ghost's pixel shows the static surface: no uncertainty may excuse the static stream there
        colour_beta = beta if ghost is None else torch.where(ghost, torch.full_like(beta, self.config.beta_min), beta)
        loss = {
            "rgb_loss": ((rgb - image) ** 2 / (2 * colour_beta**2)).mean(),
            "beta_loss": torch.log(beta).mean(),
        }
        for kind, weight in (("clip", self.config.clip_loss_weight), ("video", self.config.video_loss_weight)):
            if kind in outputs and kind in batch:
                loss[f"{kind}_loss"] = weight * feature_loss(outputs[kind], batch[kind].to(self.device))
        if self.training and "dino" in outputs and "dino" in batch:
            loss["dino_loss"] = self.config.dino_loss_weight * ((outputs["dino"] - batch["dino"].to(self.device)) ** 2).mean()
        if self.training:
            # both priors: evidence that a pixel is dynamic asks for the dynamic streams' share there
            missing = (1 - outputs["dynamic_mask"]) ** 2
            if "motion" in batch:
                loss["motion_loss"] = self.config.motion_loss_weight * (batch["motion"].to(self.device) * missing).mean()
            if change is not None and self.config.change_loss_weight > 0:
                loss["change_loss"] = self.config.change_loss_weight * ((change == CHANGED) * missing).mean()
            if ghost is not None:
                loss["ghost_loss"] = self.config.ghost_loss_weight * (ghost * outputs["dynamic_mask"] ** 2).mean()
            if self.arm_evidence is not None and self.config.arm_loss_weight > 0:
                arm = self._evidence_of(self.arm_evidence, batch["indices"])
                loss["arm_loss"] = self.config.arm_loss_weight * arm_loss(arm, outputs["accumulation_actor"], outputs["accumulation_objects"])
        if self.training:
            loss["dynamic_density_loss"] = self.config.dynamic_density_weight * outputs["mean_dynamic_density"].squeeze()
            if self.config.opacity_entropy_weight > 0:
                loss["opacity_entropy_loss"] = self.config.opacity_entropy_weight * self.opacity_entropy(outputs)
            if self.config.overlap_loss_weight > 0:
                loss["overlap_loss"] = self.config.overlap_loss_weight * outputs["objects_over_static"].squeeze()
            loss["interlevel_loss"] = self.config.interlevel_loss_mult * interlevel_loss(
                outputs["weights_list"], outputs["ray_samples_list"]
            )
        return loss

    def _evidence_of(self, evidence: Tensor, indices: Tensor) -> Float[Tensor, "rays 1"]:
        """The evidence (num_images x h x w) of each ray's pixel (indices: image, row, column at the frames' size)."""
        image, row, column = indices.long().to(evidence.device).unbind(-1)
        height, width = self.evidence_frame_size
        row = row * evidence.shape[1] // height
        column = column * evidence.shape[2] // width
        return evidence[image, row, column].float()[:, None].to(self.device)

    @torch.no_grad()
    def render_geometry(self, camera: Cameras, keys: Tuple[str, ...]) -> Dict[str, Tensor]:
        """The named outputs of a dataset camera, at its time, without language features or the
        query cache: what the change prior reads while training."""
        rays = camera.generate_rays(camera_indices=0, keep_shape=True)
        height, width = rays.shape
        flat = rays.flatten()
        chunk = self.config.eval_num_rays_per_chunk
        parts: List[Dict[str, Tensor]] = []
        for start in range(0, len(flat), chunk):
            bundle = self.frame.rays(self.collider(flat[start : start + chunk]), training=False)
            outputs, _, _ = self._render_geometry(bundle, features=False)
            parts.append({k: outputs[k] for k in keys})
        return {k: torch.cat([p[k] for p in parts]).view(height, width, -1) for k in keys}

    @staticmethod
    def opacity_entropy(outputs: Dict[str, Tensor]) -> Tensor:
        """Mean binary entropy of the objects' and the actor's opacity per ray."""
        share = torch.cat([outputs["accumulation_objects"], outputs["accumulation_actor"]], -1).clamp(1e-4, 1 - 1e-4)
        return -(share * torch.log(share) + (1 - share) * torch.log(1 - share)).mean()

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box: Optional[OrientedBox] = None) -> Dict[str, Tensor]:
        """Render a camera that may not come from the dataset (see RenderFrame.camera); with a
        query, add its relevancy maps, re-using the last render when only the query changed."""
        camera = self.frame.camera(camera)
        if self.queries is None:
            return super().get_outputs_for_camera(camera, obb_box=obb_box)
        key = camera_key(camera, self.step, self.training) if obb_box is None else None
        outputs = self.queries.cached_render(key, lambda: super(DivffModel, self).get_outputs_for_camera(camera, obb_box=obb_box))
        outputs.update(self.queries.relevancy(outputs, self.language))
        return outputs

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        gt = batch["image"].to(self.device)[..., :3]
        pred = outputs["rgb"]
        gt_chw, pred_chw = torch.moveaxis(gt, -1, 0)[None], torch.moveaxis(pred, -1, 0)[None]
        metrics = {
            "psnr": float(self.psnr(gt_chw, pred_chw)),
            "ssim": float(self.ssim(gt_chw, pred_chw)),
            "lpips": float(self.lpips(gt_chw, pred_chw)),
        }
        mask = colormaps.apply_colormap(outputs["dynamic_mask"])
        streams = torch.cat([outputs["rgb_static"], outputs["rgb_objects"], outputs["rgb_actor"]], dim=1)
        images = {"img": torch.cat([gt, pred], dim=1), "streams": streams, "dynamic_mask": mask}
        images["depth"] = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        return metrics, images
