"""TinyVideoDecoder: the TAEHV tiny video autoencoder (taew2_1 / lighttaew2_1), exact when streamed.

Written from TAEHV's description (MIT, github.com/madebyollin/taehv: its README's layer list); the module
tree reproduces the checkpoint's key layout (`decoder.{i}.*` / `encoder.{i}.*` by `nn.Sequential` index)
so its files load strictly.

Architecture. Every layer is a 2D convolution applied to each frame; time is mixed only by

- `MemBlock(x, past)`: `relu(conv(relu(conv(relu(conv(cat[x, past]))))) + skip(x))`, where `past` is the
  block's *own input one time step earlier* (zeros only at the first frame of the whole video), and
- `TGrow` (decoder) / `TPool` (encoder): a 1x1 convolution without bias whose output channel group j
  becomes sub-frame j (TGrow), or whose input is `stride` consecutive frames side by side (TPool).

The decoder turns T latent frames into 4T frames (two TGrow of stride 2) and drops the first 3 *once per
video*, so a whole video gives 4T - 3 = 1 + 4 (T - 1) frames like Wan's VAE; a streamed first chunk of f
latents gives 4f - 3 frames, every later chunk 4f.

Exact streaming: a MemBlock needs only the previous time step of its own input, so decoding a chunk with
each MemBlock's last input carried over from the previous chunk (`TinyStreamDecoder`) reproduces the
whole-video decode; every frame inside a chunk is decoded in parallel. Peers that re-decode a few
previous latents instead are not exact: the memory chains through 9 MemBlocks and reaches ~7-8 latents
back.

Latent space. The slot's input is the normalised Wan latent (what the DiT produces). taew2_1 takes it as
is (`latent_space="normalized"`); lighttaew2_1 was trained on raw latents (`latent_space="raw"`): the
decoder un-normalises inside with Wan's `latents_mean` / `latents_std`. The configuration is always
chosen explicitly, never from a file name.

Legend: `b` batch, `c` latent channels, `f`/`t` latent frames, `T` decoder frames (4 per latent), `F`
pixel frames, `h w` latent height/width, `H W` pixel height/width, `C` feature channels, `p` patch size.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import einops
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from rfvideo.decoders.weights import load_state_dict_file, resolve_weights_file
from rfvideo.models.vae import latent_frames_for_pixel_frames, num_pixel_frames
from rfvideo.utils.chunk_stream import check_chunk_continues

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

__all__ = [
    "MemBlock",
    "SoftClamp",
    "TGrow",
    "TPool",
    "TinyStreamDecoder",
    "TinyVideoDecoder",
    "wan21_latent_stats",
]

LatentSpace = Literal["normalized", "raw"]
_TEMPORAL = 4  # two stride-2 TGrow layers
_SPATIAL = 8  # three 2x nearest upsamplings


def wan21_latent_stats() -> tuple[list[float], list[float]]:
    """Wan2.1's per-channel latent (mean, std): diffusers' `AutoencoderKLWan` defaults, their one home."""
    from diffusers import AutoencoderKLWan

    params = inspect.signature(AutoencoderKLWan.__init__).parameters
    return list(params["latents_mean"].default), list(params["latents_std"].default)


def _conv3(n_in: int, n_out: int, *, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


class SoftClamp(nn.Module):
    """`3 tanh(x / 3)`: keeps outlier latents in range without a hard kink (parameter-free)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3.0 * torch.tanh(x / 3.0)


class MemBlock(nn.Module):
    """Residual block over `cat[x, past]`, `past` the block's own input one time step earlier.

    Keys: `conv.{0,2,4}.{weight,bias}` (3x3 convs), `skip.weight` only when widths differ.
    """

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv3(2 * n_in, n_out), nn.ReLU(), _conv3(n_out, n_out), nn.ReLU(), _conv3(n_out, n_out)
        )
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        """x, past: ((b t) C H W), frame-aligned -> ((b t) C' H W)."""
        return self.act(self.conv(torch.cat([x, past], dim=1)) + self.skip(x))


class TGrow(nn.Module):
    """Time upsampling: a 1x1 conv C -> stride C; output channel group j is sub-frame j of each frame."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """((b t) C H W) -> ((b t stride) C H W), sub-frames in time order."""
        return einops.rearrange(self.conv(x), "n (s c) h w -> (n s) c h w", s=self.stride)


class TPool(nn.Module):
    """Time downsampling: `stride` consecutive frames side by side, 1x1 conv stride C -> C."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels * stride, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """((b t stride) C H W) -> ((b t) C H W)."""
        return self.conv(einops.rearrange(x, "(n s) c h w -> n (s c) h w", s=self.stride))


def _decoder_layers(latent_channels: int, widths: Sequence[int], out_channels: int) -> nn.Sequential:
    """TAEHV's decoder: clamp, conv, 3 x (3 MemBlocks, 2x upsample, TGrow, conv), ReLU, conv.

    TGrow strides (1, 2, 2) at indices 7, 13, 19; the convs after a TGrow have no bias.
    """
    w0, w1, w2, w3 = widths
    layers: list[nn.Module] = [SoftClamp(), _conv3(latent_channels, w0), nn.ReLU()]
    for n_in, n_out, t_stride in ((w0, w1, 1), (w1, w2, 2), (w2, w3, 2)):
        layers += [MemBlock(n_in, n_in) for _ in range(3)]
        layers += [nn.Upsample(scale_factor=2), TGrow(n_in, t_stride), _conv3(n_in, n_out, bias=False)]
    layers += [nn.ReLU(), _conv3(w3, out_channels)]
    return nn.Sequential(*layers)


def _encoder_layers(in_channels: int, width: int, latent_channels: int) -> nn.Sequential:
    """conv, ReLU, 3 x (TPool, stride-2 conv, 3 MemBlocks), conv; TPool strides (2, 2, 1)."""
    layers: list[nn.Module] = [_conv3(in_channels, width), nn.ReLU()]
    for t_stride in (2, 2, 1):
        layers += [TPool(width, t_stride), _conv3(width, width, stride=2, bias=False)]
        layers += [MemBlock(width, width) for _ in range(3)]
    layers.append(_conv3(width, latent_channels))
    return nn.Sequential(*layers)


def _run_with_memory(
    layers: nn.Sequential,
    x: torch.Tensor,
    memory: Sequence[torch.Tensor | None],
    *,
    checkpoint: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Run `layers` over every frame of `x` at once, MemBlocks fed their own previous-step input.

    Args:
        layers: The decoder or encoder sequence.
        x: (b t C H W) input frames.
        memory: Per layer index, the MemBlock's input at the time step just before `x[:, 0]` as
            (b C H W), or None at the start of a video (zeros). Entries of other layers are ignored.
        checkpoint: Activation-checkpoint each MemBlock (backward recomputes it).

    Returns:
        (b T C' H' W') output frames and the memory to carry into the next call (last input per MemBlock).
    """
    b = x.shape[0]
    y = einops.rearrange(x, "b t c h w -> (b t) c h w")
    carried: list[torch.Tensor | None] = list(memory)
    for i, layer in enumerate(layers):
        if isinstance(layer, MemBlock):
            frames = einops.rearrange(y, "(b t) c h w -> b t c h w", b=b)
            prev = memory[i]
            first = torch.zeros_like(frames[:, :1]) if prev is None else prev.unsqueeze(1).to(frames)
            # past[t] = input[t - 1]; the chunk's first frame looks at the carried (or zero) step
            past = einops.rearrange(torch.cat([first, frames[:, :-1]], dim=1), "b t c h w -> (b t) c h w")
            carried[i] = frames[:, -1]
            if checkpoint:
                y = torch_checkpoint(layer, y, past, use_reentrant=False)
            else:
                y = layer(y, past)
        else:
            y = layer(y)
    return einops.rearrange(y, "(b t) c h w -> b t c h w", b=b), carried


class TinyVideoDecoder(nn.Module):
    """TAEHV tiny video decoder (and optionally its encoder) in the decoder slot.

    Args:
        latent_channels: `c` of the latents (16 for Wan2.1).
        widths: Decoder feature widths per stage (taew2_1: 256, 128, 64, 64).
        latent_space: What the weights expect: "normalized" (taew2_1; the slot's latent as is) or "raw"
            (lighttaew2_1; un-normalised inside with `latents_mean` / `latents_std`).
        latents_mean, latents_std: Per-channel stats for "raw" (default: Wan2.1's).
        encoder_width: Width of the encoder half; None builds no encoder (decode-only).
        patch_size: Pixel-shuffle patch of the output (1 for Wan2.1).
    """

    def __init__(
        self,
        *,
        latent_channels: int = 16,
        widths: Sequence[int] = (256, 128, 64, 64),
        latent_space: LatentSpace = "normalized",
        latents_mean: Sequence[float] | None = None,
        latents_std: Sequence[float] | None = None,
        encoder_width: int | None = None,
        patch_size: int = 1,
    ) -> None:
        super().__init__()
        if latent_space not in ("normalized", "raw"):
            raise ValueError(f"latent_space must be 'normalized' or 'raw', got {latent_space!r}")
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"widths must be 4 positive ints, got {widths!r}")
        for name, v in (("latent_channels", latent_channels), ("patch_size", patch_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.latent_channels = latent_channels
        self.temporal_factor = _TEMPORAL
        self.spatial_factor = _SPATIAL * patch_size
        self.patch_size = patch_size
        self.latent_space: LatentSpace = latent_space
        self.widths = widths
        # Decoded frames 0..2 precede pixel frame 0 (4 per latent, then 1 + 4 (f - 1) kept).
        self.frames_to_trim = _TEMPORAL - 1
        if latent_space == "raw":
            mean_std = wan21_latent_stats()
            mean = list(latents_mean) if latents_mean is not None else mean_std[0]
            std = list(latents_std) if latents_std is not None else mean_std[1]
            if len(mean) != latent_channels or len(std) != latent_channels or min(std) <= 0:
                raise ValueError(
                    f"latent_space='raw' needs {latent_channels} latents_mean / latents_std entries "
                    f"(std > 0), got {len(mean)} / {len(std)}"
                )
            # Buffers, not parameters: no checkpoint key (the file has none), they follow .to(device).
            self.register_buffer("latents_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("latents_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        elif latents_mean is not None or latents_std is not None:
            raise ValueError("latents_mean / latents_std apply only to latent_space='raw'")
        self.decoder = _decoder_layers(latent_channels, widths, 3 * patch_size**2)
        self.encoder = (
            _encoder_layers(3 * patch_size**2, encoder_width, latent_channels)
            if encoder_width is not None
            else None
        )

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike[str],
        *,
        filename: str | None = None,
        subfolder: str | None = None,
        latent_space: LatentSpace = "normalized",
        torch_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        load_encoder: bool = False,
        **kwargs: Any,
    ) -> TinyVideoDecoder:
        """Load taew2_1 (`latent_space="normalized"`) or lighttaew2_1 (`"raw"`) weights, frozen, eval.

        Args:
            path_or_hub_id: A `.pth` / `.safetensors` file, a folder holding one, or a hub id (with
                `filename`, e.g. `madebyollin/taehv` + `taew2_1.pth`).
            filename: The file inside a folder or hub repository.
            subfolder: A subfolder of `path_or_hub_id` (a pipeline folder's `vae`). A folder written by
                `save_pretrained` holds `config.json` with the constructor arguments, which are used.
            latent_space: The latent space the weights were trained on (see the class docstring).
            torch_dtype, device: Where the loaded module lives (default float32, CPU).
            load_encoder: Also build and load the encoder half (`encode`); else `encoder.*` is skipped.
            **kwargs: `TinyVideoDecoder` arguments (`widths`, `latent_channels`, `patch_size`, ...).

        Raises:
            ValueError: A missing / unexpected `decoder.*` (or, with `load_encoder`, `encoder.*`) key or a
                shape mismatch, named in one line; an unknown top-level key.
        """
        if subfolder is not None:  # a pipeline folder's `vae/` (written by `save_pretrained`)
            path_or_hub_id = Path(path_or_hub_id) / subfolder
        config_file = Path(path_or_hub_id) / CONFIG_NAME
        if config_file.is_file():  # save_pretrained's own layout: the constructor arguments are recorded
            config = json.loads(config_file.read_text(encoding="utf-8"))
            if config.pop("_class_name", None) != cls.__name__:
                raise ValueError(f"{str(config_file)!r} does not describe a {cls.__name__}")
            latent_space = config.pop("latent_space", latent_space)
            kwargs = config | kwargs
            filename = filename or WEIGHTS_NAME
        sd = load_state_dict_file(resolve_weights_file(path_or_hub_id, filename, what="tiny decoder"))
        if load_encoder:
            enc = [k for k in sd if k.startswith("encoder.")]
            if not enc:
                raise ValueError(f"{os.fspath(path_or_hub_id)!r} holds no encoder.* keys (load_encoder=True)")
            kwargs.setdefault("encoder_width", int(sd["encoder.0.weight"].shape[0]))
        model = cls(latent_space=latent_space, **kwargs)
        model.load_checkpoint_state_dict(sd, source=os.fspath(path_or_hub_id))
        model.requires_grad_(False).eval()
        return model.to(device=device, dtype=torch_dtype)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Write `config.json` (the constructor arguments) and `model.safetensors` (TAEHV's key layout), which
        `from_pretrained(directory)` reads back exactly (the pipeline folder's `vae/`)."""
        from safetensors.torch import save_file

        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "_class_name": type(self).__name__,
            "latent_channels": self.latent_channels,
            "widths": list(self.widths),
            "latent_space": self.latent_space,
            "patch_size": self.patch_size,
            "encoder_width": None if self.encoder is None else int(self.encoder[0].weight.shape[0]),
        }
        if self.latent_space == "raw":
            config["latents_mean"] = self.latents_mean.flatten().tolist()
            config["latents_std"] = self.latents_std.flatten().tolist()
        (root / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, root / WEIGHTS_NAME)

    def load_checkpoint_state_dict(
        self, sd: Mapping[str, torch.Tensor], *, source: str = "state dict"
    ) -> None:
        """Strictly load a TAEHV-layout state dict (`decoder.{i}.*`, `encoder.{i}.*`).

        `encoder.*` is skipped when this module has no encoder. A TGrow weight with more sub-frames than
        this layer's stride (older taew2_1 files trained the first TGrow with stride 2) keeps its last
        sub-frames' rows, as TAEHV does.
        """
        own = self.state_dict()
        keep: dict[str, torch.Tensor] = {}
        for key, value in sd.items():
            head = key.split(".", 1)[0]
            if head == "encoder" and self.encoder is None:
                continue
            if head not in ("decoder", "encoder"):
                raise ValueError(f"{source}: unexpected key {key!r} (expected decoder.* / encoder.*)")
            keep[key] = value
        for i, layer in enumerate(self.decoder):
            key = f"decoder.{i}.conv.weight"
            if isinstance(layer, TGrow) and key in keep and key in own:
                rows, want = keep[key].shape[0], own[key].shape[0]
                if rows > want and rows % layer.conv.in_channels == 0:
                    keep[key] = keep[key][-want:]
        missing = sorted(set(own) - set(keep))
        unexpected = sorted(set(keep) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"{source}: key mismatch with TinyVideoDecoder(widths={self.widths}): "
                f"missing {missing[:4]}{' ...' if len(missing) > 4 else ''}, "
                f"unexpected {unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}"
            )
        for key, value in keep.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise ValueError(
                    f"{source}: shape mismatch at {key!r}: file {tuple(value.shape)}, "
                    f"model {tuple(own[key].shape)} (widths={self.widths})"
                )
        self.load_state_dict(keep, strict=True)

    # ---------------------------------------------------------------- decode
    def _check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels or latents.shape[2] < 1:
            raise ValueError(
                f"latents must be (b c f h w) with c={self.latent_channels}, f >= 1, "
                f"got shape {tuple(latents.shape)}"
            )

    def _decoder_input(self, latents: torch.Tensor) -> torch.Tensor:
        """Slot latents (b c f h w) -> decoder input (b f c h w) in the weights' latent space."""
        z = einops.rearrange(latents, "b c f h w -> b f c h w").to(self.decoder[1].weight.dtype)
        if self.latent_space == "raw":
            z = z * self.latents_std.to(z) + self.latents_mean.to(z)
        return z

    def _decode_frames(
        self,
        latents: torch.Tensor,
        memory: Sequence[torch.Tensor | None],
        *,
        first: bool,
        checkpoint: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """Latents (b c f h w) following `memory` -> video (b F 3 H W) in [0, 1] and the new memory."""
        z = self._decoder_input(latents)
        out, memory = _run_with_memory(self.decoder, z, memory, checkpoint=checkpoint)
        if self.patch_size > 1:
            out = einops.rearrange(
                F.pixel_shuffle(einops.rearrange(out, "b t c h w -> (b t) c h w"), self.patch_size),
                "(b t) c h w -> b t c h w",
                b=out.shape[0],
            )
        out = out.clamp(0.0, 1.0)
        return (out[:, self.frames_to_trim :] if first else out), memory

    def _empty_memory(self) -> list[torch.Tensor | None]:
        return [None] * len(self.decoder)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (b c f h w) -> video (b F 3 H W) in [0, 1], F = 1 + 4 (f - 1)."""
        self._check_latents(latents)
        return self._decode_frames(latents, self._empty_memory(), first=True)[0]

    def decode_last(
        self, latents: torch.Tensor, num_frames: int = 1, *, checkpoint: bool = False
    ) -> torch.Tensor:
        """The last `num_frames` frames of `decode(latents)`, exact and differentiable.

        The MemBlock memory left by the latent frames before the first one needed is built under
        `no_grad` (a constant); the trailing latent frames are decoded with grad. So the result equals
        `decode(latents)[:, -num_frames:]` and its gradient reaches only those trailing latent frames.

        Args:
            latents: Normalised latents (b c f h w).
            num_frames: Trailing pixel frames, 1 .. 1 + 4 (f - 1).
            checkpoint: Activation-checkpoint each MemBlock of the trailing decode (only with grad).

        Returns:
            Video (b num_frames 3 H W) in [0, 1].
        """
        self._check_latents(latents)
        total = num_pixel_frames(latents.shape[2], self.temporal_factor)
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or not 1 <= num_frames <= total:
            raise ValueError(f"num_frames must be an int in [1, {total}], got {num_frames!r}")
        start = latent_frames_for_pixel_frames([total - num_frames], total, self.temporal_factor)[0]
        memory = self._empty_memory()
        if start > 0:
            with torch.no_grad():
                _, memory = self._decode_frames(latents[:, :, :start], memory, first=True)
        video, _ = self._decode_frames(
            latents[:, :, start:], memory, first=start == 0, checkpoint=checkpoint and torch.is_grad_enabled()
        )
        return video[:, -num_frames:]

    def stream_decoder(self) -> TinyStreamDecoder:
        """A `TinyStreamDecoder` that carries each MemBlock's last input from chunk to chunk (exact)."""
        return TinyStreamDecoder(self)

    # ---------------------------------------------------------------- encode
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video (b F 3 H W) in [0, 1] -> normalised latents (b c f h w), f = ceil(F / 4).

        The clip is padded at its end with copies of its last frame to a multiple of 4 frames, as TAEHV
        does. Needs an encoder (`encoder_width`, or `from_pretrained(load_encoder=True)`).
        """
        if self.encoder is None:
            raise ValueError("this TinyVideoDecoder has no encoder (build it with encoder_width=...)")
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be (b F 3 H W), got shape {tuple(video.shape)}")
        x = video.to(self.encoder[0].weight.dtype)
        if self.patch_size > 1:
            b = x.shape[0]
            x = einops.rearrange(
                F.pixel_unshuffle(einops.rearrange(x, "b t c h w -> (b t) c h w"), self.patch_size),
                "(b t) c h w -> b t c h w",
                b=b,
            )
        pad = -x.shape[1] % _TEMPORAL
        if pad:
            x = torch.cat([x, x[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
        z, _ = _run_with_memory(self.encoder, x, [None] * len(self.encoder))
        z = einops.rearrange(z, "b f c h w -> b c f h w")
        if self.latent_space == "raw":
            mean = self.latents_mean.unsqueeze(2).to(z)  # (1 c 1 1 1)
            std = self.latents_std.unsqueeze(2).to(z)
            z = (z - mean) / std
        return z


class TinyStreamDecoder:
    """Chunk-by-chunk decode of one video with `TinyVideoDecoder`, equal to its whole-video `decode`.

    Carries, per MemBlock, its input at the last time step of the previous chunk (b C H W): constant
    memory however long the video. The first chunk of f latents returns 4f - 3 frames, later ones 4f.
    Runs under `no_grad` (use `decode_last` for a differentiable decode). `reset()` starts a new video.
    """

    def __init__(self, decoder: TinyVideoDecoder) -> None:
        self.decoder = decoder
        self.reset()

    def reset(self) -> None:
        """Forget the memory: the next call is latent frame 0 of a new video."""
        self._memory = self.decoder._empty_memory()
        self.next_frame = 0  # absolute latent index of the next chunk's first frame
        self._shape: tuple[int, int, int, int] | None = None  # (b c h w) of the first chunk

    def cache_bytes(self) -> int:
        """Bytes carried between calls (one frame of features per MemBlock)."""
        return sum(t.numel() * t.element_size() for t in self._memory if t is not None)

    @torch.no_grad()
    def __call__(self, chunk: torch.Tensor, *, frame_offset: int | None = None) -> torch.Tensor:
        """Decode the next chunk (b c f h w) -> (b F 3 H W): F = 4f - 3 for the first chunk, else 4f.

        Raises:
            ValueError: Bad shape, a batch / channel / latent size other than the first chunk's, or a
                `frame_offset` other than the number of latent frames decoded so far.
        """
        self.decoder._check_latents(chunk)
        b, c, f, h, w = chunk.shape
        check_chunk_continues((b, c, f, h, w), self._shape, frame_offset, self.next_frame)
        video, memory = self.decoder._decode_frames(chunk, self._memory, first=self.next_frame == 0)
        # Commit only after the decode succeeded, so an exception leaves the stream where it was.
        self._memory, self._shape = memory, (b, c, h, w)
        self.next_frame += f
        return video
