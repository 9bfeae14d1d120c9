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
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.embeddings import (
    PixArtAlphaTextProjection,
    TimestepEmbedding,
    Timesteps,
    get_1d_rotary_pos_embed,
)
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import FP32LayerNorm

from rfvideo.models.kv_cache import KVCache, validate_cache_options

ATTENTION_MODES = ("full", "block_causal", "cached")
ATTENTION_BACKENDS = ("auto", "sdpa", "flex")


# ---------------------------------------------------------------------------------------- RoPE
class WanRope(nn.Module):
    """3-D RoPE tables of Wan: the head dim splits into t/h/w parts (h = w = 2 * (d // 6)), each a
    1-D table over `max_seq_len` positions; pairs (2i, 2i+1) rotate together (interleaved)."""

    def __init__(self, attention_head_dim: int, max_seq_len: int, theta: float = 10000.0) -> None:
        super().__init__()
        self.h_dim = self.w_dim = 2 * (attention_head_dim // 6)
        self.t_dim = attention_head_dim - 2 * self.h_dim
        self.max_seq_len = max_seq_len
        cos, sin = [], []
        for dim in (self.t_dim, self.h_dim, self.w_dim):
            c, s = get_1d_rotary_pos_embed(
                dim, max_seq_len, theta, use_real=True, repeat_interleave_real=True, freqs_dtype=torch.float64
            )
            cos.append(c)
            sin.append(s)
        # Non-persistent: no state-dict keys, exactly like diffusers' `rope`.
        self.register_buffer("freqs_cos", torch.cat(cos, dim=1), persistent=False)
        self.register_buffer("freqs_sin", torch.cat(sin, dim=1), persistent=False)

    def forward(self, frame_pos: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin `(l d)` for tokens ordered (frame, row, col) with frames at positions `frame_pos`."""
        if int(frame_pos.max()) >= self.max_seq_len:
            raise ValueError(
                f"latent frame position {int(frame_pos.max())} is past the RoPE table (rope_max_seq_len="
                f"{self.max_seq_len}); use rope_mode='relative' with a rolling window for longer videos"
            )
        split = [self.t_dim, self.h_dim, self.w_dim]
        f = frame_pos.numel()
        out = []
        for table in (self.freqs_cos, self.freqs_sin):
            t_tab, h_tab, w_tab = table.split(split, dim=1)
            tt = t_tab[frame_pos.to(table.device)].view(f, 1, 1, -1).expand(f, height, width, -1)
            hh = h_tab[:height].view(1, height, 1, -1).expand(f, height, width, -1)
            ww = w_tab[:width].view(1, 1, width, -1).expand(f, height, width, -1)
            out.append(torch.cat([tt, hh, ww], dim=-1).reshape(f * height * width, -1))
        return out[0], out[1]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of `x (b l H d)` by the angles in `cos, sin (l d)`."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    c = cos[:, None, 0::2].float()
    s = sin[:, None, 1::2].float()
    return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2).type_as(x)


# ---------------------------------------------------------------------------------------- masks
def frame_visibility(
    num_frames: int,
    *,
    num_frames_per_chunk: int,
    local_attn_size: int,
    sink_size: int,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Block-causal frame mask `(f f)`, True = query frame i may attend key frame j.

    Frame i in the chunk ending at e sees j < e, restricted (when local_attn_size != -1) to the sinks
    j < sink_size and the last local_attn_size - sink_size frames j >= e - (local_attn_size - sink_size).
    """
    i = torch.arange(num_frames, device=device)
    end = (i // num_frames_per_chunk + 1) * num_frames_per_chunk
    j = torch.arange(num_frames, device=device)
    vis = j[None, :] < end[:, None]
    if local_attn_size != -1:
        win = local_attn_size - sink_size
        vis = vis & ((j[None, :] < sink_size) | (j[None, :] >= end[:, None] - win))
    return vis


_compiled_flex: Any = None


def build_attention_mask(frame_mask: torch.Tensor, tokens_per_frame: int, backend: str) -> Any:
    """Token-level mask from a frame mask `(f f')`, built once per forward and shared by every layer:
    a dense boolean `(l l')` for SDPA, or a flex-attention `BlockMask`."""
    T = tokens_per_frame
    if backend == "flex":
        from torch.nn.attention.flex_attention import create_block_mask

        fm = frame_mask

        def mask_mod(b, h, qi, ki):  # noqa: ANN001, ANN202 - flex signature
            return fm[qi // T, ki // T]

        lq, lk = fm.shape[0] * T, fm.shape[1] * T
        return create_block_mask(mask_mod, None, None, lq, lk, device=str(fm.device))
    return frame_mask.repeat_interleave(T, 0).repeat_interleave(T, 1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any = None) -> torch.Tensor:
    """Softmax attention of `q (b l H d)` over `k, v (b l' H d)`.

    `mask`: None, a dense boolean `(l l')` (True = attend; SDPA) or a flex-attention `BlockMask`.
    """
    global _compiled_flex
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
    if mask is not None and not isinstance(mask, torch.Tensor):
        from torch.nn.attention.flex_attention import flex_attention

        fn = flex_attention
        if qh.is_cuda:
            # flex attention is only fused (memory-efficient) when compiled
            if _compiled_flex is None:
                _compiled_flex = torch.compile(flex_attention, dynamic=False)
            fn = _compiled_flex
        out = fn(qh, kh, vh, block_mask=mask)
    else:
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
    return out.transpose(1, 2)


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
    """Wan DiT block (diffusers' `WanTransformerBlock` names) with per-frame adaLN and cached context."""

    def __init__(self, dim: int, ffn_dim: int, heads: int, cross_attn_norm: bool, eps: float) -> None:
        super().__init__()
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = WanAttention(dim, heads, eps)
        self.attn2 = WanAttention(dim, heads, eps)
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        self.ffn = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(
        self,
        x: torch.Tensor,
        temb: torch.Tensor,
        rope_q: tuple[torch.Tensor, torch.Tensor],
        text: torch.Tensor | None,
        cross_kv: tuple[torch.Tensor, torch.Tensor] | None,
        ctx_k: torch.Tensor | None,
        ctx_v: torch.Tensor | None,
        attn_mask: Any,
    ) -> tuple[torch.Tensor, ...]:
        """One block.

        Args:
            x: `(b l D)` tokens.
            temb: `(b g 6 D)` timestep projection; `g` divides the frames, modulation is per frame.
            rope_q: cos, sin `(l d)` for this call's tokens (queries and their own keys).
            text: `(b n D)` projected text, used when `cross_kv` is None.
            cross_kv: precomputed cross-attention K, V `(b n H d)`.
            ctx_k, ctx_v: cached context K (already rotated) and V `(b l' H d)`, prepended to this call's.
            attn_mask: self-attention mask from `build_attention_mask`, None = all keys visible.

        Returns:
            x `(b l D)`; this call's keys rotated by `rope_q` and unrotated, and values `(b l H d)`; the
            cross-attention K, V `(b n H d)` it used (projected here when `cross_kv` is None, so that the
            caller can cache them: every parameter use stays inside the block's forward, which FSDP needs).
        """
        g = temb.shape[1]
        mod = (self.scale_shift_table[None] + temb.float()).unsqueeze(3)  # (b g 6 1 D)
        shift, scale, gate, c_shift, c_scale, c_gate = mod.unbind(2)  # each (b g 1 D)

        def modulate(norm: nn.Module, h: torch.Tensor, sc: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
            hv = norm(h.float()).unflatten(1, (g, -1))  # (b g l/g D)
            return (hv * (1 + sc) + sh).flatten(1, 2).type_as(h)

        def gated(h: torch.Tensor, y: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
            return (h.float() + (y.float().unflatten(1, (g, -1)) * gt).flatten(1, 2)).type_as(h)

        # 1. self-attention
        a = self.attn1
        nx = modulate(self.norm1, x, scale, shift)
        q = a.norm_q(a.to_q(nx)).unflatten(2, (a.heads, -1))
        k, v = a.project_kv(nx)
        q_r = apply_rope(q, *rope_q)
        k_r = apply_rope(k, *rope_q)
        keys, values = k_r, v
        if ctx_k is not None:
            keys = torch.cat([ctx_k.to(k_r.dtype), k_r], dim=1)
            values = torch.cat([ctx_v.to(v.dtype), v], dim=1)
        y = attention(q_r, keys, values, attn_mask).type_as(q)
        x = gated(x, a.out(y), gate)

        # 2. cross-attention
        c = self.attn2
        nx = self.norm2(x.float()).type_as(x)
        cq = c.norm_q(c.to_q(nx)).unflatten(2, (c.heads, -1))
        ck, cv = cross_kv if cross_kv is not None else c.project_kv(text)
        y = attention(cq, ck.to(cq.dtype), cv.to(cq.dtype)).type_as(cq)
        x = x + c.out(y)

        # 3. feed-forward
        nx = modulate(self.norm3, x, c_scale, c_shift)
        x = gated(x, self.ffn(nx), c_gate)

        return x, k_r, k, v, ck, cv


# ---------------------------------------------------------------------------------------- model
class CausalWanTransformer(ModelMixin, ConfigMixin):
    """Wan2.1 T2V DiT, chunk-wise causal, with diffusers' `WanTransformer3DModel` parameter names.

    Config keys: every key of `WanTransformer3DModel`, plus the causal options
    `num_frames_per_chunk`, `local_attn_size` (frames visible incl. the current chunk and sinks,
    -1 = global), `sink_size` (frames), `rope_mode` ("absolute" | "relative"), `sink_eviction`
    ("drop" | "ema"), `sink_ema_decay`, `attention_backend` ("auto" | "sdpa" | "flex"; "auto" is SDPA
    with a dense boolean mask; "flex" uses torch's flex attention with a block mask for "block_causal").
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
        num_frames_per_chunk: int = 3,
        local_attn_size: int = -1,
        sink_size: int = 0,
        rope_mode: str = "absolute",
        sink_eviction: str = "drop",
        sink_ema_decay: float = 0.99,
        attention_backend: str = "auto",
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
        validate_cache_options(
            num_frames_per_chunk=num_frames_per_chunk,
            local_attn_size=local_attn_size,
            sink_size=sink_size,
            rope_mode=rope_mode,
            sink_eviction=sink_eviction,
            sink_ema_decay=sink_ema_decay,
        )
        if attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(
                f"attention_backend must be one of {ATTENTION_BACKENDS}, got {attention_backend!r}"
            )
        inner_dim = num_attention_heads * attention_head_dim
        out_channels = out_channels or in_channels
        patch_size = tuple(patch_size)

        self.rope = WanRope(attention_head_dim, rope_max_seq_len)
        self.patch_embedding = nn.Conv3d(in_channels, inner_dim, kernel_size=patch_size, stride=patch_size)
        self.condition_embedder = nn.Module()
        ce = self.condition_embedder
        ce.timesteps_proj = Timesteps(num_channels=freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        ce.time_embedder = TimestepEmbedding(in_channels=freq_dim, time_embed_dim=inner_dim)
        ce.act_fn = nn.SiLU()
        ce.time_proj = nn.Linear(inner_dim, inner_dim * 6)
        ce.text_embedder = PixArtAlphaTextProjection(text_dim, inner_dim, act_fn="gelu_tanh")
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

    @property
    def num_frames_per_chunk(self) -> int:
        return int(self.config.num_frames_per_chunk)

    def new_kv_cache(
        self, batch_size: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty `KVCache` with this model's window, sink and RoPE options."""
        cfg = self.config
        return KVCache(
            cfg.num_layers,
            batch_size=batch_size,
            num_frames_per_chunk=cfg.num_frames_per_chunk,
            local_attn_size=cfg.local_attn_size,
            sink_size=cfg.sink_size,
            rope_mode=cfg.rope_mode,
            sink_eviction=cfg.sink_eviction,
            sink_ema_decay=cfg.sink_ema_decay,
            device=device,
            dtype=dtype,
        )

    def _backend(self, device: torch.device) -> str:
        b = self.config.attention_backend
        if b == "auto":
            # flex attention is opt-in until it is benchmarked against SDPA on the target GPU
            return "sdpa"
        return b

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
        cfg = self.config
        if attention_mode not in ATTENTION_MODES:
            raise ValueError(f"attention_mode must be one of {ATTENTION_MODES}, got {attention_mode!r}")
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
        nfc = cfg.num_frames_per_chunk
        if attention_mode == "block_causal" and f % nfc:
            raise ValueError(f"block_causal needs f ({f}) divisible by num_frames_per_chunk ({nfc})")
        if attention_mode == "cached":
            if kv_cache is None:
                raise ValueError("attention_mode='cached' needs kv_cache (model.new_kv_cache(batch_size))")
            if frame_offset is None or frame_offset < 0:
                raise ValueError(f"attention_mode='cached' needs frame_offset >= 0, got {frame_offset}")
            kv_cache.check_batch(b)
            if kv_cache.num_layers != cfg.num_layers:
                raise ValueError(f"KVCache has {kv_cache.num_layers} layers, the model {cfg.num_layers}")
        elif write_cache or kv_cache is not None:
            raise ValueError(
                f"kv_cache / write_cache are only used with attention_mode='cached', got {attention_mode!r}"
            )

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
        return_dict: bool = False,
        encoder_hidden_states_image: torch.Tensor | None = None,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor | Transformer2DModelOutput:
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
            return_dict: Return diffusers' `Transformer2DModelOutput` instead of a tensor.
            encoder_hidden_states_image: Accepted for diffusers compatibility; must be None (no I2V).
            attention_kwargs: Accepted for diffusers compatibility; ignored (no LoRA scaling here).

        Returns:
            `(b c f h w)` flow prediction.
        """
        if encoder_hidden_states_image is not None:
            raise ValueError("encoder_hidden_states_image given: I2V is not supported")
        self._check_inputs(
            hidden_states,
            timestep,
            encoder_hidden_states,
            attention_mode,
            kv_cache,
            frame_offset,
            write_cache,
        )
        cfg = self.config
        b, _, f, h, w = hidden_states.shape
        pt, ph, pw = cfg.patch_size
        pf, hh, ww = f // pt, h // ph, w // pw
        T = hh * ww
        device = hidden_states.device
        backend = self._backend(device)

        x = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()  # (b l D)

        # timestep embedding, one per modulation frame g (diffusers' WanTimeTextImageEmbedding math)
        ts = timestep if timestep.ndim == 2 else timestep[:, None]  # (b g)
        g = ts.shape[1]
        ce = self.condition_embedder
        tp = ce.timesteps_proj(ts.flatten())
        te_dtype = next(iter(ce.time_embedder.parameters())).dtype
        if tp.dtype != te_dtype and te_dtype != torch.int8:
            tp = tp.to(te_dtype)
        temb = ce.time_embedder(tp).type_as(encoder_hidden_states)  # (b*g D)
        tproj = ce.time_proj(ce.act_fn(temb)).unflatten(1, (6, -1)).unflatten(0, (b, g))  # (b g 6 D)
        temb = temb.unflatten(0, (b, g))  # (b g D)
        text = ce.text_embedder(encoder_hidden_states)  # (b n D)

        # RoPE positions, context and masks per mode
        attn_mask: Any = None
        ctx_rope: tuple[torch.Tensor, torch.Tensor] | None = None
        rope_store: str | None = None  # "query" (absolute) | "raw" (relative) | None (no write)
        use_cache_read = attention_mode == "cached"
        if attention_mode == "cached":
            assert kv_cache is not None and frame_offset is not None
            sinks, window = kv_cache.visible_frames(frame_offset, pf)
            n_ctx = len(sinks) + len(window)
            if cfg.rope_mode == "absolute":
                q_pos = torch.arange(frame_offset, frame_offset + pf, device=device)
            else:
                q_pos = torch.arange(n_ctx, n_ctx + pf, device=device)
                if n_ctx:
                    ctx_rope = self.rope(torch.arange(n_ctx, device=device), hh, ww)
            rope_q = self.rope(q_pos, hh, ww)
            if write_cache:
                kv_cache.begin_write(frame_offset, pf, T)
                rope_store = "query" if cfg.rope_mode == "absolute" else "raw"
        else:
            rope_q = self.rope(torch.arange(pf, device=device), hh, ww)
            if attention_mode == "block_causal":
                frame_mask = frame_visibility(
                    pf,
                    num_frames_per_chunk=cfg.num_frames_per_chunk,
                    local_attn_size=cfg.local_attn_size,
                    sink_size=cfg.sink_size,
                    device=device,
                )
                attn_mask = build_attention_mask(frame_mask, T, backend)
        rope_q = (rope_q[0].to(device), rope_q[1].to(device))
        if ctx_rope is not None:
            ctx_rope = (ctx_rope[0].to(device), ctx_rope[1].to(device))

        # Cross-attention K/V come from the cache only when no gradient could flow into them.
        grad_on = torch.is_grad_enabled()
        checkpoint = grad_on and self.gradient_checkpointing
        for li, block in enumerate(self.blocks):
            ctx_k = ctx_v = None
            cross_kv = None
            if use_cache_read:
                ctx = kv_cache.read(li, frame_offset, pf)
                if ctx is not None:
                    ctx_k, ctx_v = ctx
                    if ctx_rope is not None:
                        ctx_k = apply_rope(ctx_k, *ctx_rope)
                # Under grad, recompute (same values) so the text embedder and attn2 get gradients.
                cross_kv = None if grad_on else kv_cache.get_cross(li)
            args = (x, tproj, rope_q, text, cross_kv, ctx_k, ctx_v, attn_mask)
            if checkpoint:
                x, k_rot, k_raw, v_new, ck, cv = self._gradient_checkpointing_func(block, *args)
            else:
                x, k_rot, k_raw, v_new, ck, cv = block(*args)
            if use_cache_read and kv_cache.get_cross(li) is None:
                kv_cache.set_cross(li, ck, cv)  # detached by the cache
            if rope_store is not None:
                # detached inside; outside any checkpoint, so recomputation never writes twice
                kv_cache.write(li, k_rot if rope_store == "query" else k_raw, v_new)
        if rope_store is not None:
            kv_cache.end_write()

        # output head, per-frame modulation
        shift, scale = (self.scale_shift_table[None].to(temb.device) + temb[:, :, None]).unbind(2)  # (b g D)
        xo = self.norm_out(x.float()).unflatten(1, (g, -1))
        x = (xo * (1 + scale[:, :, None]) + shift[:, :, None]).flatten(1, 2).type_as(x)
        x = self.proj_out(x)  # (b l pt*ph*pw*c)
        x = x.reshape(b, pf, hh, ww, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        out = x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
        if return_dict:
            return Transformer2DModelOutput(sample=out)
        return out
