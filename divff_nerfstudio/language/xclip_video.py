"""X-CLIP video-language targets through `transformers`: the real video model behind `backend xclip`.

Each frame's target grid comes from the clip of `window` frames around it: square crops (the
same boxes in every frame of the clip, `crop_fractions` of the frame height, half-overlapping) are
cut from all the clip's frames, each crop's little video is embedded by X-CLIP's video tower, and
the crop embeddings are resampled to the target grid (as the CLIP pyramid does for images). Text
queries use X-CLIP's text tower without its video-conditioned prompts, so one text embedding
serves every pixel. Loading is the real thing (`XCLIPModel.from_pretrained`, a hub name or a
folder); offline, `save_tiny_xclip` writes a randomly initialised model of the same architecture
from the config the project ships, with CLIP's BPE vocabulary from open_clip, to exercise it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from divff_nerfstudio.language.clip_encoder import ClipEncoder
from divff_nerfstudio.language.pyramid_targets import PatchPyramidConfig, pyramid_targets
from divff_nerfstudio.language.video_targets import VideoExtractorConfig, VideoTargetExtractor
from divff_nerfstudio.utils.digests import weights_digest
from divff_nerfstudio.utils.errors import UserError

TINY_CONFIG = Path(__file__).parent / "video_configs" / "xclip-tiny.json"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class VideoWeightsUnavailable(UserError, RuntimeError):
    """The video model asked for cannot be loaded; the message says how to provide it."""


def _load(loader, name: str, what: str):
    try:
        return loader.from_pretrained(name)
    except Exception as err:  # network, hub or file errors all mean the same thing to the user
        raise VideoWeightsUnavailable(
            f"{name}: could not load the X-CLIP {what} ({type(err).__name__}: {err}). Run once with internet so "
            f"transformers caches it (HF_HOME), or pass a folder written by save_pretrained: "
            f"--pipeline.datamanager.language.video.model /path/to/xclip"
        ) from err


class XClipVideoExtractor(VideoTargetExtractor):
    def __init__(self, config: VideoExtractorConfig):
        super().__init__(config)
        from transformers import XCLIPConfig

        self.model_config = _load(XCLIPConfig, config.model, "config")
        self.window = int(self.model_config.vision_config.num_frames)  # X-CLIP's frame attention is sized for it
        self._model = None
        self._tokenizer = None

    def _ensure_loaded(self) -> None:
        if self._model is None:
            from transformers import AutoTokenizer, XCLIPModel

            self._model = _load(XCLIPModel, self.config.model, "weights").eval().requires_grad_(False)
            self._tokenizer = _load(AutoTokenizer, self.config.model, "tokenizer")

    def identity(self) -> Dict[str, object]:
        folder = Path(self.config.model).expanduser()
        weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) if folder.is_dir() else []
        return {
            "extractor": "xclip",
            "model": [weights_digest(w) for w in weights] or self.config.model,
            "window": self.window,
            "stride": self.config.stride,
            "crop_fractions": list(self.config.crop_fractions),
        }

    def embed_dim(self, image_dim: int) -> int:
        return int(self.model_config.projection_dim)

    @torch.no_grad()
    def _encode_clips(self, crops: Float[Tensor, "b t3 s s"]) -> Float[Tensor, "b d"]:
        size = int(self.model_config.vision_config.image_size)
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        out = []
        for chunk in crops.split(self.config.batch_size):
            frames = chunk.reshape(-1, 3, *chunk.shape[-2:])  # (b * t, 3, s, s)
            frames = nn.functional.interpolate(frames, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            video = ((frames - mean) / std).reshape(len(chunk), self.window, 3, size, size)
            out.append(self._model.get_video_features(pixel_values=video).pooler_output.float())
        return nn.functional.normalize(torch.cat(out), dim=-1)

    def extract(self, frames: Float[Tensor, "t 3 h w"], image_targets: Float[Tensor, "t gh gw d"]) -> Float[Tensor, "gh gw d"]:
        self._ensure_loaded()
        t, _, h, w = frames.shape
        gh, gw = image_targets.shape[1:3]
        crops = PatchPyramidConfig(patch_fractions=tuple(self.config.crop_fractions), overlap=0.5, grid_stride=max(1, math.ceil(h / gh)))
        grid = pyramid_targets(frames.reshape(t * 3, h, w), self._encode_clips, crops)
        if grid.shape[:2] != (gh, gw):
            grid = nn.functional.interpolate(grid.permute(2, 0, 1)[None], size=(gh, gw), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
        return nn.functional.normalize(grid, dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], clip: ClipEncoder) -> Float[Tensor, "n d"]:
        self._ensure_loaded()
        tokens = self._tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        features = self._model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return nn.functional.normalize(features.pooler_output.float(), dim=-1)


def save_tiny_xclip(out: Path, seed: int = 0) -> Path:
    """A randomly initialised X-CLIP of the shipped tiny architecture, with CLIP's tokenizer, saved
    where `from_pretrained` finds it (no download): for tests and for trying the backend offline."""
    import open_clip.tokenizer
    from transformers import CLIPTokenizer, XCLIPConfig, XCLIPModel

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    XCLIPModel(XCLIPConfig(**json.loads(TINY_CONFIG.read_text()))).save_pretrained(out)
    bpe = open_clip.tokenizer.SimpleTokenizer()
    renamed = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {renamed.get(token, token): index for token, index in bpe.encoder.items()}
    (out / "vocab.json").write_text(json.dumps(vocab))
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(pair) for pair in merges) + "\n")
    CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt")).save_pretrained(out)
    return out
