"""Video rewards: models that score a whole clip against its prompt (VideoAlign / VideoReward style).

A video reward model sees several frames at its own frame rate and resolution and may return several
heads (VideoAlign's VideoReward: VQ visual quality, MQ motion quality, TA text alignment). `VideoReward`
fixes the three choices every such model needs, each differentiable w.r.t. the pixels:

1. **Frame sampling** (`FrameSampling`): from the clip's `source_fps` to the model's `target_fps`
   (VideoAlign samples at 2 fps), then to at most / exactly `num_frames`, padded by repeating the last
   frame to a multiple of `multiple_of` (Qwen2-VL packs 2 frames per temporal patch). Sampling is an
   index gather, so gradients reach exactly the sampled frames.
2. **Spatial preprocessing** (`VideoPreprocess`): a fixed `(h, w)` resize, or Qwen2-VL's "smart resize"
   (both sides a multiple of `factor`, area within [min_pixels, max_pixels], aspect kept), bicubic with
   antialiasing, then mean/std normalisation; no uint8 rounding (so it stays differentiable).
3. **Heads** (`heads`, `head_weights`, `head_norm`): the model returns one score per head; each head is
   optionally normalised `(s - mean) / std`, then the reward is `sum_k w_k * s_k` (VideoAlign's "Overall"
   is VQ + MQ + TA: all weights 1). `head_scores` returns the per-head values for logging.

`CallableVideoReward` wraps any differentiable torch callable `fn(clip (b t 3 h w), prompts)` returning
`(b,)`, `(b k)` or `{head: (b,)}`; it is the stand-in used by the tests and the quickest way to plug in
a model whose forward already takes normalised pixels.

`rfvideo.rewards.videoalign.Qwen2VLVideoReward` implements the steps below (tested on a tiny random
Qwen2-VL); what it still needs from a real checkpoint is listed in its module docstring.

Plugging in a real VideoAlign checkpoint (KwaiVGI/VideoReward, Qwen2-VL-2B + a 3-way reward head read at
the special tokens `<|VQ_reward|>`, `<|MQ_reward|>`, `<|TA_reward|>`):
    - Build `Qwen2VLForConditionalGeneration` from the local checkpoint directory (`from_pretrained(path)`,
      never `trust_remote_code`), add the three special tokens to the processor's tokenizer, resize the
      token embeddings, and load the reward head weights (a Linear(hidden, 3 or 1)).
    - Subclass `VideoReward` with `FrameSampling(source_fps=16, target_fps=2)`, `VideoPreprocess(
      factor=28, max_pixels=448 * 448, mean=CLIP_MEAN, std=CLIP_STD)` and `heads=("VQ", "MQ", "TA")`.
    - In `score_clip`: patchify the normalised clip exactly as `Qwen2VLImageProcessor` does (temporal
      patch 2, spatial patch 14, 2x2 merge; `pixel_values_videos` of shape
      (t/2 * h/14 * w/14, 3 * 2 * 14 * 14) and `video_grid_thw`), tokenize the chat template with one
      `<|video_pad|>` per merged patch and the three reward tokens, run the model with
      `output_hidden_states=True`, and apply the reward head to the last hidden state at each reward
      token: head k comes from the position of token k. Return `(b 3)`.
    - Set `head_norm` to the checkpoint's published per-head mean/std if scores from different heads or
      models are mixed in an ensemble.
Only the pixels carry gradients; the text goes through the tokenizer as usual.

Shapes: b batch, f input frames, t sampled frames, k heads, H W input size, h w model size.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rfvideo.rewards.base import Reward
from rfvideo.rewards.preprocess import CLIP_MEAN, CLIP_STD

__all__ = ["CallableVideoReward", "FrameSampling", "VideoPreprocess", "VideoReward", "smart_resize_size"]

HeadOutput = torch.Tensor | Mapping[str, torch.Tensor]


@dataclass(kw_only=True)
class FrameSampling:
    """Which frames of a `(b f 3 H W)` clip the video model sees."""

    source_fps: float | None = None
    """Frame rate of the incoming clip (Wan2.1: 16). None: no fps resampling."""
    target_fps: float | None = None
    """Frame rate the model was trained at (VideoAlign: 2). None: keep every frame."""
    num_frames: int | None = None
    """After fps resampling, pick exactly this many frames uniformly (repeating if fewer). None: keep all."""
    max_frames: int | None = None
    """Upper bound on the number of frames after fps resampling (uniform subsampling). None: no bound."""
    multiple_of: int = 1
    """Pad by repeating the last frame up to a multiple of this (Qwen2-VL's temporal patch: 2)."""
    uniform: bool = False
    """qwen_vl_utils' rule (used by VideoAlign): the fps only sets the count, `f / source_fps * target_fps`
    clamped to [min_frames, max_frames or f] and floored to `multiple_of`; the frames are then spread
    evenly over the clip (`linspace(0, f - 1, count).round()`). False: one frame every
    `source_fps / target_fps` input frames from the first."""
    min_frames: int = 1
    """Lower bound of the count in `uniform` mode (qwen_vl_utils: 4)."""

    def __post_init__(self) -> None:
        if (self.source_fps is None) != (self.target_fps is None):
            raise ValueError(
                f"source_fps and target_fps go together, got {self.source_fps} and {self.target_fps}"
            )
        for label, value in (("source_fps", self.source_fps), ("target_fps", self.target_fps)):
            if value is not None and value <= 0:
                raise ValueError(f"{label} must be positive, got {value}")
        for label, count in (("num_frames", self.num_frames), ("max_frames", self.max_frames)):
            if count is not None and count < 1:
                raise ValueError(f"{label} must be >= 1, got {count}")
        if self.multiple_of < 1 or self.min_frames < 1:
            raise ValueError(
                f"multiple_of and min_frames must be >= 1, got {self.multiple_of}, {self.min_frames}"
            )

    def indices(self, num_frames: int) -> torch.Tensor:
        """Indices into the `f = num_frames` input frames, shape (t,), sorted, duplicates allowed."""
        if num_frames < 1:
            raise ValueError(f"a clip needs at least one frame, got {num_frames}")
        idx = torch.arange(num_frames)
        if self.uniform and self.source_fps is not None and self.target_fps is not None:
            m = self.multiple_of
            count = num_frames / self.source_fps * self.target_fps
            upper = min(self.max_frames or num_frames, num_frames)
            count = min(max(count, math.ceil(self.min_frames / m) * m), upper)
            count = max(m, math.floor(count / m) * m)
            return _uniform(num_frames, count)
        if self.source_fps is not None and self.target_fps is not None:
            # One frame every source/target input frames, starting at the first (floor of the timestamps).
            step = self.source_fps / self.target_fps
            count = max(1, math.ceil(num_frames / step - 1e-9))
            idx = (
                torch.floor(torch.arange(count, dtype=torch.float64) * step).long().clamp_max(num_frames - 1)
            )
        if self.max_frames is not None and len(idx) > self.max_frames:
            idx = idx[_uniform(len(idx), self.max_frames)]
        if self.num_frames is not None:
            idx = idx[_uniform(len(idx), self.num_frames)]
        remainder = len(idx) % self.multiple_of
        if remainder:
            idx = torch.cat([idx, idx[-1:].expand(self.multiple_of - remainder)])
        return idx

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        """(b f 3 H W) -> (b t 3 H W), a differentiable gather."""
        return video.index_select(1, self.indices(video.shape[1]).to(video.device))


def _uniform(n: int, k: int) -> torch.Tensor:
    """k indices spread evenly over range(n), first and last included (repeats when k > n)."""
    return torch.linspace(0, n - 1, k, dtype=torch.float64).round().long()


def smart_resize_size(
    height: int, width: int, *, factor: int = 28, min_pixels: int = 4 * 28 * 28, max_pixels: int = 448 * 448
) -> tuple[int, int]:
    """Qwen2-VL's resize rule: sides multiples of `factor`, area in [min_pixels, max_pixels], aspect kept.

    Each side is first rounded to the nearest multiple (Python `round`: halves to even, as upstream); if
    the area is too large both sides are scaled by
    sqrt(area / max_pixels) and floored to a multiple, if too small scaled up and ceiled.
    """
    if min(height, width) < 1 or factor < 1:
        raise ValueError(f"bad size {height}x{width} or factor {factor}")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


@dataclass(kw_only=True)
class VideoPreprocess:
    """Differentiable resize + normalisation of sampled frames, `(b t 3 H W)` in [0, 1] -> `(b t 3 h w)`."""

    size: tuple[int, int] | None = None
    """Fixed output `(h, w)`; None: Qwen2-VL smart resize with `factor`, `min_pixels`, `max_pixels`."""
    factor: int = 28
    """Smart resize: both sides a multiple of this (Qwen2-VL: patch 14 x merge 2)."""
    min_pixels: int = 4 * 28 * 28
    """Smart resize: minimum area."""
    max_pixels: int = 448 * 448
    """Smart resize: maximum area (VideoAlign's max_frame_pixels 200704 = 448 * 448)."""
    mean: Sequence[float] = CLIP_MEAN
    """Per-channel mean (Qwen2-VL uses the CLIP constants)."""
    std: Sequence[float] = CLIP_STD
    """Per-channel std."""
    mode: str = "bicubic"
    """`F.interpolate` mode."""

    def __post_init__(self) -> None:
        if self.size is not None and min(self.size) < 1:
            raise ValueError(f"size must be positive, got {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std must have 3 entries and std > 0, got {self.mean} {self.std}")
        if self.mode not in ("bilinear", "bicubic"):
            raise ValueError(f"mode must be bilinear or bicubic, got {self.mode!r}")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} exceeds max_pixels {self.max_pixels}")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Model input `(h, w)` for an `H x W` clip."""
        if self.size is not None:
            return self.size
        return smart_resize_size(
            height, width, factor=self.factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        """(b t 3 H W) in [0, 1] -> (b t 3 h w) normalised."""
        b, t, c, height, width = clip.shape
        h, w = self.output_size(height, width)
        x = clip.reshape(b * t, c, height, width)
        if (h, w) != (height, width):
            x = F.interpolate(x, size=(h, w), mode=self.mode, align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return ((x - mean) / std).reshape(b, t, c, h, w)


class VideoReward(Reward):
    """Base of clip-level rewards: sample frames, preprocess, score heads, combine.

    Subclasses implement `score_clip`. The ensemble passes the whole clip (`is_video = True`).

    Args:
        heads: names of the model's outputs, in the order `score_clip` returns them.
        head_weights: weight per head in the combined reward; default 1 for every head (VideoAlign's
            "Overall" = VQ + MQ + TA). Heads left out get weight 0 (they are still computed and logged).
        head_norm: optional `(mean, std)` per head applied before weighting.
        sampling: frame sampling to the model's fps / frame count.
        preprocess: resize + normalisation to the model's input.
        name: log name.
    """

    is_video = True

    def __init__(
        self,
        *,
        heads: Sequence[str] = ("score",),
        head_weights: Mapping[str, float] | None = None,
        head_norm: Mapping[str, tuple[float, float]] | None = None,
        sampling: FrameSampling | None = None,
        preprocess: VideoPreprocess | None = None,
        name: str = "video_reward",
    ) -> None:
        super().__init__()
        heads = tuple(heads)
        if not heads or len(set(heads)) != len(heads):
            raise ValueError(f"heads must be non-empty and unique, got {heads}")
        weights = dict.fromkeys(heads, 1.0) if head_weights is None else dict(head_weights)
        unknown = sorted(set(weights) - set(heads))
        if unknown:
            raise ValueError(f"head_weights names unknown heads {unknown}; heads are {list(heads)}")
        norm = dict(head_norm or {})
        bad = sorted(set(norm) - set(heads)) + sorted(k for k, (_, s) in norm.items() if s <= 0)
        if bad:
            raise ValueError(f"head_norm has unknown heads or std <= 0: {bad}")
        self.name = name
        self.heads = heads
        self.head_weights = {h: float(weights.get(h, 0.0)) for h in heads}
        self.head_norm = norm
        self.sampling = sampling or FrameSampling()
        self.preprocess = preprocess or VideoPreprocess(size=(224, 224))

    def frames_read(self, num_pixel_frames: int) -> list[int]:
        """Sorted distinct pixel frames this reward reads from a `num_pixel_frames`-frame clip.

        A trainer that decodes only what the rewards score decodes these (and passes the full-length clip,
        or calls the reward on exactly the frames it needs).
        """
        return sorted(set(self.sampling.indices(num_pixel_frames).tolist()))

    @abstractmethod
    def score_clip(self, clip: torch.Tensor, prompts: list[str]) -> HeadOutput:
        """Model scores of preprocessed clips.

        Args:
            clip: (b t 3 h w) normalised model input.
            prompts: b prompts.

        Returns:
            (b,) for a single head, (b k) in `heads` order, or a dict head -> (b,).
        """

    def head_scores(self, video: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Per-head scores (after `head_norm`) of a validated `(b f 3 H W)` clip: head -> (b,)."""
        clip = self.preprocess(self.sampling(video))
        out = self.score_clip(clip, prompts)
        b = video.shape[0]
        if isinstance(out, Mapping):
            missing = sorted(set(self.heads) - set(out))
            if missing:
                raise ValueError(f"{type(self).__name__}.score_clip did not return heads {missing}")
            scores = {h: out[h] for h in self.heads}
        elif out.shape == (b,) and len(self.heads) == 1:
            scores = {self.heads[0]: out}
        elif out.shape == (b, len(self.heads)):
            scores = {h: out[:, i] for i, h in enumerate(self.heads)}
        else:
            raise ValueError(
                f"{type(self).__name__}.score_clip returned shape {tuple(out.shape)}; expected "
                f"({b}, {len(self.heads)}) for heads {list(self.heads)}"
            )
        for h, s in scores.items():
            if s.shape != (b,):
                raise ValueError(f"head {h!r} has shape {tuple(s.shape)}, expected ({b},)")
        for h, (mean, std) in self.head_norm.items():
            scores[h] = (scores[h] - mean) / std
        return scores

    def score(self, video: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        scores = self.head_scores(video, prompts)
        return torch.stack([self.head_weights[h] * scores[h] for h in self.heads]).sum(0)


class CallableVideoReward(VideoReward):
    """A `VideoReward` around any differentiable callable `fn(clip (b t 3 h w), prompts) -> heads`.

    If `fn` is an `nn.Module` it is registered (moves with `.to()`) and frozen.
    """

    def __init__(self, fn: Callable[[torch.Tensor, list[str]], HeadOutput], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not callable(fn):
            raise ValueError(f"fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.freeze()

    def score_clip(self, clip: torch.Tensor, prompts: list[str]) -> HeadOutput:
        return self.fn(clip, prompts)
