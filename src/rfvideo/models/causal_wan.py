"""Chunk-wise causal Wan2.1 DiT with diffusers' exact parameter names (loads `WanTransformer3DModel`
checkpoints strictly), three attention modes (full, block-causal mask, cached chunk) and a KV cache.

Shapes (einops): `b` batch, `c` latent channels, `f` latent frames, `h w` latent height/width,
`T` tokens per latent frame (after patching), `l` tokens, `n` text tokens, `D` model width,
`H` heads, `d` head dim, `g` frames of timestep modulation (1 for a scalar timestep, else `f`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.embeddings import PixArtAlphaTextProjection, TimestepEmbedding, Timesteps
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import FP32LayerNorm

from rfvideo.models.attention import attention, build_attention_mask, frame_visibility, resolve_backend
from rfvideo.models.causal_options import CausalOptions
from rfvideo.models.kv_cache import KVCache
from rfvideo.models.layer_kv import ChunkKV, LayerKV, RecacheKV
from rfvideo.models.rope import WanRope, apply_rope

__all__ = ["ATTENTION_MODES", "CausalWanTransformer", "WanAttention", "WanBlock", "WanConditionEmbedder"]

ATTENTION_MODES = ("full", "block_causal", "cached")
_DEFAULT_OPTIONS = CausalOptions()


# ---------------------------------------------------------------------------------------- layers
class WanAttention(nn.Module):
    """Self- or cross-attention with diffusers' names: to_q/to_k/to_v/to_out.0, RMSNorm over all heads."""

    def __init__(self, dim: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])
        self.norm_q = nn.RMSNorm(dim, eps=eps, elementwise_affine=True)
        self.norm_k = nn.RMSNorm(dim, eps=eps, elementwise_affine=True)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K (normed) and V `(b l H d)` of `x (b l D)`."""
        k = self.norm_k(self.to_k(x)).unflatten(2, (self.heads, -1))
        v = self.to_v(x).unflatten(2, (self.heads, -1))
        return k, v

    def out(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_out[1](self.to_out[0](x.flatten(2)))


class WanBlock(nn.Module):
    """Wan DiT block (diffusers' `WanTransformerBlock` names) with per-frame adaLN.

    In "cached" mode the block is given its layer's cache handle (`LayerKV`): the handle turns this call's
    keys and values into the ones to attend over (cached context + own, one buffer slice at inference)
    and stores them when the call writes. The block returns hidden states only.
    """

    def __init__(self, dim: int, ffn_dim: int, heads: int, cross_attn_norm: bool, eps: float) -> None:
        super().__init__()
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = WanAttention(dim, heads, eps)
        self.attn2 = WanAttention(dim, heads, eps)
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        self.ffn = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def _modulation(self, temb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mod = (self.scale_shift_table[None] + temb.float()).unsqueeze(3)  # (b g 6 1 D)
        return mod.unbind(2)  # shift, scale, gate, c_shift, c_scale, c_gate; each (b g 1 D)

    @staticmethod
    def _modulate(norm: nn.Module, h: torch.Tensor, sc: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
        g = sc.shape[1]
        hv = norm(h.float()).unflatten(1, (g, -1))  # (b g l/g D)
        return (hv * (1 + sc) + sh).flatten(1, 2).type_as(h)

    @staticmethod
    def _gated(h: torch.Tensor, y: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        g = gt.shape[1]
        return (h.float() + (y.float().unflatten(1, (g, -1)) * gt).flatten(1, 2)).type_as(h)

    def self_attention_qkv(
        self, x: torch.Tensor, temb: torch.Tensor, rope_q: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """adaLN-modulated self-attention inputs of `x (b l D)`: rotated queries, unrotated (normed) keys
        and values, each `(b l H d)`."""
        shift, scale = self._modulation(temb)[:2]
        a = self.attn1
        nx = self._modulate(self.norm1, x, scale, shift)
        q = a.norm_q(a.to_q(nx)).unflatten(2, (a.heads, -1))
        k, v = a.project_kv(nx)
        return apply_rope(q, *rope_q), k, v

    def residual_cross_ffn(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        temb: torch.Tensor,
        text: torch.Tensor,
        cross_kv: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The rest of the block after self-attention: gated residual of its output `y (b l H d)`, then
        cross-attention to the text, then the gated feed-forward.

        Returns x `(b l D)` and the cross-attention K, V `(b n H d)` it used (projected here when
        `cross_kv` is None: every parameter use stays inside the block's forward, which FSDP needs).
        """
        _, _, gate, c_shift, c_scale, c_gate = self._modulation(temb)
        x = self._gated(x, self.attn1.out(y), gate)
        c = self.attn2
        nx = self.norm2(x.float()).type_as(x)
        cq = c.norm_q(c.to_q(nx)).unflatten(2, (c.heads, -1))
        ck, cv = cross_kv if cross_kv is not None else c.project_kv(text)
        yc = attention(cq, ck.to(cq.dtype), cv.to(cq.dtype)).type_as(cq)
        x = x + c.out(yc)
        nx = self._modulate(self.norm3, x, c_scale, c_shift)
        return self._gated(x, self.ffn(nx), c_gate), ck, cv

    def forward(
        self,
        x: torch.Tensor,
        temb: torch.Tensor,
        rope_q: tuple[torch.Tensor, torch.Tensor],
        text: torch.Tensor,
        attn_mask: Any = None,
        kv: LayerKV | None = None,
    ) -> torch.Tensor:
        """One block.

        Args:
            x: `(b l D)` tokens.
            temb: `(b g 6 D)` timestep projection; `g` divides the frames, modulation is per frame.
            rope_q: cos, sin `(l d)` for this call's tokens (queries and their own keys).
            text: `(b n D)` projected text (used unless the handle has cached cross-attention K/V).
            attn_mask: self-attention mask from `build_attention_mask`, None = all keys visible.
            kv: this layer's cache handle ("cached" mode and `recache`), None otherwise.

        Returns:
            x `(b l D)`.
        """
        # `self_attention_qkv` and `residual_cross_ffn` are the attention-free halves;
        # `rfvideo.sampling.compile_cached` shadows them with compiled versions (instance attributes),
        # the cache bookkeeping stays eager
        q_r, k, v = self.self_attention_qkv(x, temb, rope_q)
        if kv is None:
            keys, values = apply_rope(k, *rope_q), v
        else:
            keys, values = kv.self_kv(k, v, rope_q)
        y = attention(q_r, keys, values, attn_mask).type_as(q_r)
        x, ck, cv = self.residual_cross_ffn(x, y, temb, text, None if kv is None else kv.cross_kv())
        if kv is not None:
            kv.store_cross(ck, cv)
        return x


class WanConditionEmbedder(nn.Module):
    """Timestep and text conditioning with the names (and math) of diffusers'
    `WanTimeTextImageEmbedding` (T2V: no image embedder), one timestep embedding per modulation frame.

    Args:
        dim: Model width `D`.
        freq_dim: Width of the sinusoidal timestep features.
        text_dim: Width `d` of the text encoder's embeddings.
    """

    def __init__(self, dim: int, freq_dim: int, text_dim: int) -> None:
        super().__init__()
        self.timesteps_proj = Timesteps(num_channels=freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedder = TimestepEmbedding(in_channels=freq_dim, time_embed_dim=dim)
        self.act_fn = nn.SiLU()
        self.time_proj = nn.Linear(dim, dim * 6)
        self.text_embedder = PixArtAlphaTextProjection(text_dim, dim, act_fn="gelu_tanh")

    def forward(
        self, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed the timesteps `(b g)` and the text `(b n d)`.

        Returns:
            temb `(b g D)` (the output head's modulation), tproj `(b g 6 D)` (the blocks' modulation) and
            text `(b n D)`.
        """
        b, g = timestep.shape
        tp = self.timesteps_proj(timestep.flatten())  # (b*g freq_dim)
        te_dtype = next(iter(self.time_embedder.parameters())).dtype
        if tp.dtype != te_dtype and te_dtype != torch.int8:
            tp = tp.to(te_dtype)
        temb = self.time_embedder(tp).type_as(encoder_hidden_states)  # (b*g D)
        tproj = self.time_proj(self.act_fn(temb)).unflatten(1, (6, -1)).unflatten(0, (b, g))  # (b g 6 D)
        return temb.unflatten(0, (b, g)), tproj, self.text_embedder(encoder_hidden_states)


# ---------------------------------------------------------------------------------------- model
class CausalWanTransformer(ModelMixin, ConfigMixin):
    """Wan2.1 T2V DiT, chunk-wise causal, with diffusers' `WanTransformer3DModel` parameter names.

    Config keys: every key of `WanTransformer3DModel`, plus the causal options
    `num_frames_per_chunk`, `local_attn_size` (frames visible incl. the current chunk and sinks,
    -1 = global), `sink_size` (frames), `rope_mode` ("absolute" | "relative"), `sink_eviction`
    ("drop" | "ema"), `sink_ema_decay`, the peers' cache behaviours `recache_visibility`, `recache_sinks`,
    `sink_fold`, `partial_eviction` (see `CausalOptions`), `attention_backend` ("auto" | "sdpa" | "flex";
    "auto" is SDPA with a dense boolean mask; "flex" uses torch's flex attention with a block mask for
    "block_causal").
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["WanBlock"]
    _keep_in_fp32_modules = ["rope", "time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"]
    _skip_layerwise_casting_patterns = ["patch_embedding", "condition_embedder", "norm"]
    _keys_to_ignore_on_load_unexpected = ["norm_added_q"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        # the causal options, flat so that config.json stays diffusers' flat dict (see `CausalOptions`)
        num_frames_per_chunk: int = _DEFAULT_OPTIONS.num_frames_per_chunk,
        local_attn_size: int = _DEFAULT_OPTIONS.local_attn_size,
        sink_size: int = _DEFAULT_OPTIONS.sink_size,
        rope_mode: str = _DEFAULT_OPTIONS.rope_mode,
        sink_eviction: str = _DEFAULT_OPTIONS.sink_eviction,
        sink_ema_decay: float = _DEFAULT_OPTIONS.sink_ema_decay,
        attention_backend: str = _DEFAULT_OPTIONS.attention_backend,
        recache_visibility: str = _DEFAULT_OPTIONS.recache_visibility,
        recache_sinks: str = _DEFAULT_OPTIONS.recache_sinks,
        sink_fold: str = _DEFAULT_OPTIONS.sink_fold,
        partial_eviction: str = _DEFAULT_OPTIONS.partial_eviction,
    ) -> None:
        super().__init__()
        if image_dim is not None or added_kv_proj_dim is not None or pos_embed_seq_len is not None:
            raise ValueError(
                f"image conditioning (image_dim={image_dim}, added_kv_proj_dim={added_kv_proj_dim}, "
                f"pos_embed_seq_len={pos_embed_seq_len}) is I2V, which CausalWanTransformer does not support"
            )
        if qk_norm not in ("rms_norm_across_heads", None):
            # diffusers builds RMSNorm across heads whatever this says; we refuse other values.
            raise ValueError(f"qk_norm must be 'rms_norm_across_heads', got {qk_norm!r}")
        # built once from the flat config keys (registered before this body runs); validates every
        # option with a one-line error
        self._causal = CausalOptions.from_config(self.config)
        inner_dim = num_attention_heads * attention_head_dim
        out_channels = out_channels or in_channels
        patch_size = tuple(patch_size)

        self.rope = WanRope(attention_head_dim, rope_max_seq_len)
        self.patch_embedding = nn.Conv3d(in_channels, inner_dim, kernel_size=patch_size, stride=patch_size)
        self.condition_embedder = WanConditionEmbedder(inner_dim, freq_dim, text_dim)
        self.blocks = nn.ModuleList(
            [
                WanBlock(inner_dim, ffn_dim, num_attention_heads, cross_attn_norm, eps)
                for _ in range(num_layers)
            ]
        )
        self.norm_out = FP32LayerNorm(inner_dim, eps, elementwise_affine=False)
        self.proj_out = nn.Linear(inner_dim, out_channels * math.prod(patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, inner_dim) / inner_dim**0.5)
        self.gradient_checkpointing = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        """diffusers' `from_pretrained`, refusing a local folder written by another rfvideo class.

        A folder of a subclass (the demo's `PositionedCausalWan`, whose position tables this class has no
        place for) would otherwise load with a warning and without those weights: a different model. A
        plain Wan folder (`WanTransformer3DModel`) and this class's own load as before.

        Raises:
            ValueError: the folder's `config.json` names another class (one line naming the loader to use).
        """
        import json
        from pathlib import Path

        folder = Path(str(pretrained_model_name_or_path)).expanduser() / (kwargs.get("subfolder") or "")
        config_file = folder / "config.json"
        if config_file.is_file():
            name = json.loads(config_file.read_text(encoding="utf-8")).get("_class_name")
            if name not in (None, cls.__name__, "WanTransformer3DModel", "CausalWanTransformer"):
                raise ValueError(
                    f"{str(folder)!r} holds a {name}, not a {cls.__name__}: loading it here would drop its "
                    f"own weights; use {name}.from_pretrained or RFVideoPipeline.from_pretrained"
                )
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def from_options(cls, options: CausalOptions, **config: Any) -> CausalWanTransformer:
        """Build from diffusers' config keys plus one `CausalOptions`."""
        return cls(**config, **options.to_config())

    @property
    def causal_options(self) -> CausalOptions:
        """The causal options (chunk size, window, sinks, eviction, RoPE mode, attention backend)."""
        return self._causal

    def set_causal_options(self, options: CausalOptions) -> None:
        """Take new causal options whole (e.g. an inference preset's): the config and `causal_options`
        change together; caches built afterwards (`new_kv_cache`) use them, and a cache built with the old
        options is refused by the next cached call. The weights are untouched.

        Raises:
            ValueError: `options` is not a `CausalOptions`.
        """
        if not isinstance(options, CausalOptions):
            raise ValueError(f"set_causal_options needs a CausalOptions, got {type(options).__name__}")
        self._causal = options
        self.register_to_config(**options.to_config())

    @property
    def num_frames_per_chunk(self) -> int:
        return self._causal.num_frames_per_chunk

    def new_kv_cache(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        max_frames: int | None = None,
    ) -> KVCache:
        """An empty `KVCache` with this model's causal options (`max_frames` sizes a global cache)."""
        return KVCache(
            self.config.num_layers,
            batch_size=batch_size,
            options=self._causal,
            device=device,
            dtype=dtype,
            max_frames=max_frames,
        )

    # ------------------------------------------------------------------ input checks
    def _check_inputs(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mode: str,
        kv_cache: KVCache | None,
        frame_offset: int | None,
        write_cache: bool,
    ) -> None:
        """Raise a one-line ValueError before any work (and before the cache is touched)."""
        if attention_mode not in ATTENTION_MODES:
            raise ValueError(f"attention_mode must be one of {ATTENTION_MODES}, got {attention_mode!r}")
        self._check_shapes(hidden_states, timestep, encoder_hidden_states, attention_mode)
        self._check_cache_args(hidden_states.shape[0], attention_mode, kv_cache, frame_offset, write_cache)
        num_frames = hidden_states.shape[2] // self.config.patch_size[0]
        self._check_rope_length(num_frames, frame_offset if attention_mode == "cached" else None)

    def _check_shapes(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mode: str,
    ) -> None:
        cfg = self.config
        if hidden_states.ndim != 5:
            raise ValueError(f"hidden_states must be (b c f h w), got shape {tuple(hidden_states.shape)}")
        b, c, f, h, w = hidden_states.shape
        if c != cfg.in_channels:
            raise ValueError(f"hidden_states has {c} latent channels, the model expects {cfg.in_channels}")
        pt, ph, pw = cfg.patch_size
        if f % pt or h % ph or w % pw:
            raise ValueError(
                f"latent size (f={f}, h={h}, w={w}) is not divisible by patch_size {cfg.patch_size}"
            )
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[-1] != cfg.text_dim:
            raise ValueError(
                f"encoder_hidden_states must be (b n {cfg.text_dim}), "
                f"got {tuple(encoder_hidden_states.shape)}"
            )
        if timestep.ndim not in (1, 2):
            raise ValueError(f"timestep must be (b,) or (b f), got shape {tuple(timestep.shape)}")
        if timestep.shape[0] != b or encoder_hidden_states.shape[0] != b:
            raise ValueError(
                f"batch sizes differ: hidden_states {b}, timestep {timestep.shape[0]}, "
                f"encoder_hidden_states {encoder_hidden_states.shape[0]}"
            )
        if timestep.ndim == 2 and (timestep.shape[1] != f or pt != 1):
            raise ValueError(
                f"per-frame timestep has {timestep.shape[1]} frames for {f} latent frames "
                f"(patch_size[0]={pt} must be 1)"
            )
        if attention_mode != "full" and pt != 1:
            raise ValueError(f"causal attention modes need patch_size[0] == 1, got {pt}")
        nfc = self._causal.num_frames_per_chunk
        if attention_mode == "block_causal" and f % nfc:
            raise ValueError(f"block_causal needs f ({f}) divisible by num_frames_per_chunk ({nfc})")

    def _check_cache_args(
        self,
        batch_size: int,
        attention_mode: str,
        kv_cache: KVCache | None,
        frame_offset: int | None,
        write_cache: bool,
    ) -> None:
        if attention_mode != "cached":
            if write_cache or kv_cache is not None:
                raise ValueError(
                    "kv_cache / write_cache are only used with attention_mode='cached', "
                    f"got {attention_mode!r}"
                )
            return
        if kv_cache is None:
            raise ValueError("attention_mode='cached' needs kv_cache (model.new_kv_cache(batch_size))")
        if frame_offset is None or frame_offset < 0:
            raise ValueError(f"attention_mode='cached' needs frame_offset >= 0, got {frame_offset}")
        kv_cache.check_batch(batch_size)
        if kv_cache.num_layers != self.config.num_layers:
            raise ValueError(f"KVCache has {kv_cache.num_layers} layers, the model {self.config.num_layers}")
        if kv_cache.options != self._causal:
            raise ValueError(f"KVCache options {kv_cache.options} differ from the model's {self._causal}")

    def _check_rope_length(self, num_frames: int, frame_offset: int | None) -> None:
        """`frame_offset` None: one forward over `num_frames` frames; else a cached step of a run."""
        o, table = self._causal, self.config.rope_max_seq_len
        # one forward places its frames at 0..f-1 whatever the RoPE mode; a cached call is the latest
        # step of a run of frame_offset + f frames (`CausalOptions.rope_frames_needed`: the one rule)
        needed = num_frames if frame_offset is None else o.rope_frames_needed(frame_offset + num_frames)
        if needed is not None and needed > table:
            hint = (
                "use rope_mode='relative' with a rolling window (local_attn_size) for longer videos"
                if o.rope_mode == "absolute" or o.local_attn_size == -1
                else "raise rope_max_seq_len"
            )
            raise ValueError(
                f"latent frame {needed - 1} is past the RoPE table (rope_max_seq_len={table}); {hint}"
            )

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        *,
        attention_mode: str = "full",
        kv_cache: KVCache | None = None,
        frame_offset: int | None = None,
        write_cache: bool = False,
        return_dict: bool | None = None,
        encoder_hidden_states_image: torch.Tensor | None = None,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor] | Transformer2DModelOutput:
        """Flow prediction `v = eps - x0`.

        Args:
            hidden_states: `(b c f h w)` noisy latents.
            timestep: `(b,)` or per-frame `(b f)`, in [0, 1000].
            encoder_hidden_states: `(b n text_dim)` text embeddings.
            attention_mode: "full" (bidirectional, == diffusers), "block_causal" (one forward, chunk mask
                with the configured window / sinks) or "cached" (one chunk against `kv_cache`).
            kv_cache: Required for "cached".
            frame_offset: "cached": absolute latent-frame index of `hidden_states[:, :, 0]`.
            write_cache: "cached": store this chunk's self-attention K/V (append, or overwrite the last
                written chunk when `frame_offset` is its start).
            return_dict: None (default): the tensor itself; False: a 1-tuple `(sample,)` as diffusers
                returns; True: diffusers' `Transformer2DModelOutput`.
            encoder_hidden_states_image: Accepted for diffusers compatibility; must be None (no I2V).
            attention_kwargs: Accepted for diffusers compatibility; must be None or empty (no LoRA scale).

        Returns:
            `(b c f h w)` flow prediction (wrapped as `return_dict` asks).
        """
        if encoder_hidden_states_image is not None:
            raise ValueError("encoder_hidden_states_image given: I2V is not supported")
        if attention_kwargs:
            raise ValueError(f"attention_kwargs {sorted(attention_kwargs)} are not supported (no LoRA scale)")
        self._check_inputs(
            hidden_states,
            timestep,
            encoder_hidden_states,
            attention_mode,
            kv_cache,
            frame_offset,
            write_cache,
        )
        _, _, f, h, w = hidden_states.shape
        pt, ph, pw = self.config.patch_size
        pf, hh, ww = f // pt, h // ph, w // pw

        # 1. patch, timestep and text embeddings
        x, tproj, temb, text = self._embed(hidden_states, timestep, encoder_hidden_states)

        # 2. RoPE of this call's frames, and what the blocks attend over: a mask, or the cache handles
        attn_mask: Any = None
        handles: list[LayerKV | None] = [None] * len(self.blocks)
        if attention_mode == "cached":
            assert kv_cache is not None and frame_offset is not None
            rope_q, handles = self._cache_handles(x, kv_cache, frame_offset, write_cache, pf, hh, ww)
        else:
            rope_q = self._rope(torch.arange(pf, device=x.device), hh, ww)
            if attention_mode == "block_causal":
                attn_mask = self._block_causal_mask(pf, hh * ww, x.device)

        # 3. transformer blocks (each cached block reads and writes its own layer's slots)
        x = self._run_blocks(x, tproj, rope_q, text, attn_mask, handles)
        if write_cache:
            assert kv_cache is not None
            kv_cache.end_write()

        # 4. output norm with per-frame modulation, projection, unpatchify
        out = self._head(x, temb, pf, hh, ww)
        if return_dict is None:
            return out
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)

    @torch.no_grad()
    def recache(
        self, clean_latents: torch.Tensor, encoder_hidden_states: torch.Tensor, kv_cache: KVCache
    ) -> None:
        """Re-encode every held frame under a new prompt (LongLive's KV re-cache).

        One t = 0 forward over the held frames' clean latents with the new text, each frame seeing the
        held frames it saw when it was written (the same block-causal / window / sink rule, restricted to
        the frames still held; RoPE at the absolute frame positions, or, with relative RoPE, at positions
        `0..m-1` in held order, the layout the latest chunk reads). Its self-attention K/V overwrite the
        held ones in place and the cross-attention K/V are rebuilt from the new text. With EMA sinks the
        sinks are re-encoded from their own latents (the folded history is not reproduced).

        `CausalOptions.recache_visibility="all_held"` lets every held frame see every other held frame
        (LongLive); `recache_sinks="keep"` keeps the sinks' stored K/V once the window has rolled: only the
        non-sink frames are re-encoded, attending to those old-prompt sinks (LongLive; the sinks' latents
        are then not used). With `recache_sinks="resink"` (LongLive's interactive config) call
        `kv_cache.prepare_recache()` first and pass the latents of the frames it returns: past the window
        it restarts the cache at the last W frames, the first S of them the new sinks.

        Args:
            clean_latents: `(b c m h w)` clean latents of exactly `kv_cache.held_frames()`, in that order.
            encoder_hidden_states: `(b n text_dim)` embeddings of the new prompt.
            kv_cache: The cache to re-encode (built by this model).
        """
        held = kv_cache.held_frames()
        if not held:
            raise ValueError("recache needs a cache that holds frames (run at least one chunk first)")
        if clean_latents.ndim != 5 or clean_latents.shape[2] != len(held):
            raise ValueError(
                f"recache needs clean latents (b c {len(held)} h w) of the held frames {held}, "
                f"got shape {tuple(clean_latents.shape)}"
            )
        b, _, m, h, w = clean_latents.shape
        t = torch.zeros((b, m), device=clean_latents.device, dtype=torch.float32)
        self._check_inputs(clean_latents, t, encoder_hidden_states, "full", None, None, False)
        kv_cache.check_batch(b)
        _, ph, pw = self.config.patch_size
        hh, ww = h // ph, w // pw
        T = hh * ww
        if kv_cache.tokens_per_frame != T:
            raise ValueError(f"KVCache holds {kv_cache.tokens_per_frame} tokens per frame, got {T}")
        device = clean_latents.device
        o = self._causal
        index = torch.tensor(held, device=device)
        positions = index if o.rope_mode == "absolute" else torch.arange(m, device=device)
        cos, sin = self._rope(positions, hh, ww)
        if o.recache_visibility == "all_held":
            frame_mask = torch.ones((m, m), dtype=torch.bool, device=device)
        else:
            frame_mask = frame_visibility(m, o, device=device, frame_index=index)
        # LongLive's "keep": after the window rolled, only the non-sink frames are re-encoded and they
        # attend to the sinks' stored (old-prompt) K/V
        ns = kv_cache.held_sink_frames() if o.recache_sinks == "keep" and kv_cache.has_rolled() else 0
        rope_sinks = (cos[: ns * T], sin[: ns * T]) if ns and o.rope_mode == "relative" else None
        attn_mask = build_attention_mask(frame_mask[ns:], T, "sdpa")
        kv_cache.reset_cross()
        x, tproj, _, text = self._embed(clean_latents[:, :, ns:], t[:, ns:], encoder_hidden_states)
        handles: list[LayerKV | None] = [
            RecacheKV(kv_cache, li, rotate=apply_rope, keep_sinks=ns > 0, rope_sinks=rope_sinks)
            for li in range(len(self.blocks))
        ]
        self._run_blocks(x, tproj, (cos[ns * T :], sin[ns * T :]), text, attn_mask, handles)

    # ------------------------------------------------------------------ forward pieces
    def _rope(self, frame_pos: torch.Tensor, hh: int, ww: int) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self.rope(frame_pos, hh, ww)
        return cos.to(frame_pos.device), sin.to(frame_pos.device)

    def _cache_handles(
        self,
        x: torch.Tensor,
        kv_cache: KVCache,
        frame_offset: int,
        write_cache: bool,
        pf: int,
        hh: int,
        ww: int,
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], list[LayerKV | None]]:
        """Plan a cached call (make room, start its write) and return its RoPE and one handle per layer."""
        cfg, T = self.config, hh * ww
        like = x.new_empty((x.shape[0], 0, cfg.num_attention_heads, cfg.attention_head_dim))
        plan = kv_cache.plan(frame_offset, pf, T, write=write_cache, like=like)
        n_ctx = plan.context_frames
        rope_ctx = rope_read = None
        if self._causal.rope_mode == "absolute":
            rope_q = self._rope(torch.arange(frame_offset, frame_offset + pf, device=x.device), hh, ww)
        else:
            # context at 0..n_ctx-1 (sinks, then the window contiguously), the chunk after it
            rope_read = self._rope(torch.arange(n_ctx + pf, device=x.device), hh, ww)
            rope_ctx = (rope_read[0][: n_ctx * T], rope_read[1][: n_ctx * T])
            rope_q = (rope_read[0][n_ctx * T :], rope_read[1][n_ctx * T :])
        # under gradient checkpointing the block is recomputed during backward, when the cache may
        # hold other frames: the handle then keeps a copy of the context it saw
        snapshot = torch.is_grad_enabled() and self.gradient_checkpointing
        handles: list[LayerKV | None] = [
            ChunkKV(kv_cache, li, plan, rotate=apply_rope, rope_ctx=rope_ctx, rope_read=rope_read,
                    snapshot=snapshot)
            for li in range(len(self.blocks))
        ]  # fmt: skip
        return rope_q, handles

    def _block_causal_mask(self, num_frames: int, tokens_per_frame: int, device: torch.device) -> Any:
        backend = resolve_backend(self._causal.attention_backend)
        frame_mask = frame_visibility(num_frames, self._causal, device=device)
        return build_attention_mask(frame_mask, tokens_per_frame, backend)

    def _embed(
        self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patch tokens `(b l D)`, timestep projection `(b g 6 D)`, embedding `(b g D)`, text `(b n D)`."""
        x = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()  # (b l D)
        # one timestep per modulation frame g: a scalar timestep is one frame for all
        ts = timestep if timestep.ndim == 2 else timestep[:, None]  # (b g)
        temb, tproj, text = self.condition_embedder(ts, encoder_hidden_states)
        return x, tproj, temb, text

    def _run_blocks(
        self,
        x: torch.Tensor,
        tproj: torch.Tensor,
        rope_q: tuple[torch.Tensor, torch.Tensor],
        text: torch.Tensor,
        attn_mask: Any,
        handles: list[LayerKV | None],
    ) -> torch.Tensor:
        checkpoint = torch.is_grad_enabled() and self.gradient_checkpointing
        for block, kv in zip(self.blocks, handles, strict=True):
            if checkpoint:
                x = self._gradient_checkpointing_func(block, x, tproj, rope_q, text, attn_mask, kv)
            else:
                x = block(x, tproj, rope_q, text, attn_mask, kv)
        return x

    def _head(self, x: torch.Tensor, temb: torch.Tensor, pf: int, hh: int, ww: int) -> torch.Tensor:
        """Output head with per-frame modulation: tokens `(b l D)` -> `(b c f h w)`."""
        b, g = temb.shape[:2]
        pt, ph, pw = self.config.patch_size
        shift, scale = (self.scale_shift_table[None].to(temb.device) + temb[:, :, None]).unbind(2)  # (b g D)
        xo = self.norm_out(x.float()).unflatten(1, (g, -1))
        x = (xo * (1 + scale[:, :, None]) + shift[:, :, None]).flatten(1, 2).type_as(x)
        x = self.proj_out(x)  # (b l pt*ph*pw*c)
        x = x.reshape(b, pf, hh, ww, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
