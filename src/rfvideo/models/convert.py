"""Map original Wan2.1 / Self-Forcing / CausVid generator weights onto diffusers' `WanTransformer3DModel`
names (which `CausalWanTransformer` shares) and back.

Original Wan names (wan/modules/model.py) -> diffusers names:
    patch_embedding.*                      -> patch_embedding.*
    text_embedding.{0,2}.*                 -> condition_embedder.text_embedder.linear_{1,2}.*
    time_embedding.{0,2}.*                 -> condition_embedder.time_embedder.linear_{1,2}.*
    time_projection.1.*                    -> condition_embedder.time_proj.*
    blocks.i.self_attn.{q,k,v,o}.*         -> blocks.i.attn1.{to_q,to_k,to_v,to_out.0}.*
    blocks.i.self_attn.norm_{q,k}.weight   -> blocks.i.attn1.norm_{q,k}.weight
    blocks.i.cross_attn.*                  -> blocks.i.attn2.* (same sub-names)
    blocks.i.norm3.*                       -> blocks.i.norm2.*   (Wan's cross-attn norm is its norm3)
    blocks.i.ffn.{0,2}.*                   -> blocks.i.ffn.net.0.proj.* / blocks.i.ffn.net.2.*
    blocks.i.modulation                    -> blocks.i.scale_shift_table
    head.head.*                            -> proj_out.*
    head.modulation                        -> scale_shift_table
Wan's norm1/norm2 have no affine parameters, so they have no keys. Self-Forcing / CausVid checkpoints
hold these names under a `model.` prefix inside `generator` / `generator_ema` dicts.

Peers' released files (`load_peer_checkpoint`): Self-Forcing `self_forcing_dmd.pt` {"generator",
"generator_ema"}; CausVid `model.pt` {"generator"}; LongLive `longlive_base.pt` {"generator", ...} plus
`lora.pt` {"generator_lora": peft keys `base_model.model.blocks.<i>.<linear>.lora_{A,B}.weight`}; Reward
Forcing (Lu) `rewardforcing.pt`, the generator's `model.*` state dict itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rfvideo.utils.checkpoint import load_checkpoint

# (original pattern, diffusers template); each rule is a bijection on full keys.
_ATTN = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "norm_q": "norm_q", "norm_k": "norm_k"}
_TOP = {
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "patch_embedding": "patch_embedding",
}
_BLOCK = {
    **{f"self_attn.{a}": f"attn1.{b}" for a, b in _ATTN.items()},
    **{f"cross_attn.{a}": f"attn2.{b}" for a, b in _ATTN.items()},
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
_PARAM = r"(weight|bias)"


def _rename(key: str, forward: bool) -> str | None:
    """New name of `key`, or None when no rule applies."""
    top = _TOP if forward else {v: k for k, v in _TOP.items()}
    block = _BLOCK if forward else {v: k for k, v in _BLOCK.items()}
    if forward:
        if key == "head.modulation":
            return "scale_shift_table"
        m = re.fullmatch(r"blocks\.(\d+)\.modulation", key)
        if m:
            return f"blocks.{m.group(1)}.scale_shift_table"
    else:
        if key == "scale_shift_table":
            return "head.modulation"
        m = re.fullmatch(r"blocks\.(\d+)\.scale_shift_table", key)
        if m:
            return f"blocks.{m.group(1)}.modulation"
    m = re.fullmatch(rf"(.+)\.{_PARAM}", key)
    if m is None:
        return None
    stem, param = m.groups()
    if stem in top:
        return f"{top[stem]}.{param}"
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", stem)
    if m and m.group(2) in block:
        return f"blocks.{m.group(1)}.{block[m.group(2)]}.{param}"
    return None


def _convert(sd: Mapping[str, torch.Tensor], forward: bool) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in sd.items():
        new = _rename(key, forward)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        kind = "original Wan" if forward else "diffusers Wan"
        raise ValueError(f"{len(unknown)} keys are not {kind} T2V generator keys: {sorted(unknown)[:20]}")
    return out


def wan_to_diffusers(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an original Wan2.1 (or Self-Forcing / CausVid, prefix stripped) state dict to diffusers names.

    Raises:
        ValueError: listing keys that match no rule (e.g. I2V `img_emb.*`, `k_img`).
    """
    return _convert(sd, forward=True)


def diffusers_to_wan(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `wan_to_diffusers`."""
    return _convert(sd, forward=False)


def _strip_prefix(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes (`model.` of Self-Forcing/CausVid, `_orig_mod.`, FSDP's wrapper names)."""
    out = {}
    for key, value in sd.items():
        k = key.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")
        stripped = True
        while stripped:
            stripped = False
            for prefix in ("module.", "model.", "_orig_mod."):
                if k.startswith(prefix):
                    k, stripped = k[len(prefix) :], True
        out[k] = value
    return out


def check_keys(sd: Mapping[str, torch.Tensor], model: torch.nn.Module) -> None:
    """Raise ValueError listing the keys `sd` lacks or has in excess w.r.t. `model`'s state dict."""
    expected = set(model.state_dict().keys())
    missing = sorted(expected - set(sd))
    unexpected = sorted(set(sd) - expected)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint does not match the model: missing {len(missing)} {missing[:20]}, "
            f"unexpected {len(unexpected)} {unexpected[:20]}"
        )


def load_original_checkpoint(
    path: str | Path,
    *,
    key: str | None = "generator_ema",
    strict: bool = True,
    model: torch.nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """Load an original Wan / Self-Forcing / CausVid generator checkpoint as a diffusers-named state dict.

    Args:
        path: `.safetensors` file, or a torch file read with `torch.load(weights_only=True)`.
        key: Sub-dict to take when the file holds several (Self-Forcing: "generator" / "generator_ema");
            ignored when the file is already a flat tensor dict. Falls back to "generator" when
            "generator_ema" is absent.
        strict: Raise on keys that no rule maps (otherwise they are dropped).
        model: When given, the converted weights are checked against its keys and loaded into it
            (ValueError listing missing / unexpected keys).

    Returns:
        State dict loadable with `CausalWanTransformer.load_state_dict(..., strict=True)`.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw: Mapping = load_file(str(path))
    else:
        raw = load_checkpoint(path)
    if not all(isinstance(v, torch.Tensor) for v in raw.values()):
        candidates = [k for k in (key, "generator", "state_dict", "model") if k is not None]
        found = next((k for k in candidates if isinstance(raw.get(k), Mapping)), None)
        if found is None:
            raise ValueError(
                f"{str(path)!r} holds {sorted(raw.keys())[:10]}, none of which is the generator dict {key!r}"
            )
        raw = raw[found]
    sd = _strip_prefix(raw)
    if not strict:
        sd = {k: v for k, v in sd.items() if _rename(k, True) is not None}
    out = wan_to_diffusers(sd)
    if model is not None:
        check_keys(out, model)
        model.load_state_dict(out, strict=True)
    return out


# ------------------------------------------------------------------------------------------ peers' files
PEERS = ("self-forcing", "causvid", "longlive", "reward-forcing-lu")
"""Released chunk-wise Wan2.1 generators whose files `load_peer_checkpoint` reads."""

_PEER_KEY: dict[str, str | None] = {
    # self_forcing_dmd.pt: {"generator", "generator_ema"}; the released samples use the EMA weights
    "self-forcing": "generator_ema",
    # autoregressive_checkpoint/model.pt: {"generator"}
    "causvid": "generator",
    # longlive_base.pt: {"generator", ...}; its inference configs set use_ema: false
    "longlive": "generator",
    # rewardforcing.pt: the generator's state dict itself (inference.py loads it whole)
    "reward-forcing-lu": None,
}

# LongLive's LoRA file (lora.pt: {"generator_lora": ..., "critic_lora": ..., "step": ...}) holds peft's
# adapter keys of the generator's CausalWanModel: `base_model.model.blocks.<i>.<linear>.lora_{A,B}.weight`,
# one pair for every nn.Linear of every attention block (configure_lora_for_model, rank 256, alpha 256).
_LORA_KEY = re.compile(r"blocks\.(\d+)\.(.+)\.lora_([AB])\.weight")


def longlive_lora_to_diffusers(
    sd: Mapping[str, torch.Tensor],
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """LongLive's LoRA state dict -> `{diffusers linear name: (A (r in), B (out r))}`.

    Every key must be a `lora_A` / `lora_B` weight of a Wan block linear (after dropping peft's
    `base_model.model.` and FSDP prefixes), each linear must have both, and every rank must agree.

    Raises:
        ValueError: naming unknown keys, a linear with only one of A / B, or mixed ranks.
    """
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in _strip_prefix(
        {k.replace("base_model.model.", "", 1): v for k, v in sd.items()}
    ).items():
        m = _LORA_KEY.fullmatch(key)
        new = None if m is None else _rename(f"blocks.{m.group(1)}.{m.group(2)}.weight", True)
        if m is None or new is None:
            unknown.append(key)
            continue
        pairs.setdefault(new.removesuffix(".weight"), {})[m.group(3)] = value
    if unknown:
        raise ValueError(
            f"{len(unknown)} keys are not LongLive LoRA keys of the generator: {sorted(unknown)[:10]}"
        )
    if not pairs:
        raise ValueError("the LoRA state dict holds no adapter weights")
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    ranks = set()
    for name, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise ValueError(f"LoRA linear {name!r} has lora_{'A' if 'A' in ab else 'B'} only")
        a, b = ab["A"], ab["B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise ValueError(f"LoRA linear {name!r}: A {tuple(a.shape)} and B {tuple(b.shape)} do not chain")
        ranks.add(a.shape[0])
        out[name] = (a, b)
    if len(ranks) != 1:
        raise ValueError(f"LoRA ranks differ across linears: {sorted(ranks)}")
    return out


def load_longlive_lora(path: str | Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Read LongLive's `lora.pt` (its `generator_lora` dict, or a bare adapter state dict) as
    `{diffusers linear name: (A, B)}` (see `longlive_lora_to_diffusers`)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"LoRA file {str(path)!r} does not exist")
    raw = load_checkpoint(path)
    if isinstance(raw, Mapping) and isinstance(raw.get("generator_lora"), Mapping):
        raw = raw["generator_lora"]
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ValueError(f"{str(path)!r} is neither {{'generator_lora': ...}} nor a LoRA state dict")
    return longlive_lora_to_diffusers(raw)


def merge_lora_weights(
    sd: Mapping[str, torch.Tensor], lora: Mapping[str, tuple[torch.Tensor, torch.Tensor]], *, alpha: float
) -> dict[str, torch.Tensor]:
    """`W + (alpha / r) B A` for every adapted linear (in float32, cast back to W's dtype); peft's LoRA."""
    out = dict(sd)
    for name, (a, b) in lora.items():
        key = f"{name}.weight"
        if key not in out:
            raise ValueError(f"LoRA linear {name!r} is not in the generator")
        w = out[key]
        if (b.shape[0], a.shape[1]) != tuple(w.shape):
            raise ValueError(
                f"LoRA linear {name!r}: B A is {(b.shape[0], a.shape[1])}, weight {tuple(w.shape)}"
            )
        scale = float(alpha) / a.shape[0]
        out[key] = (w.float() + scale * (b.float() @ a.float())).to(w.dtype)
    return out


def infer_wan_config(sd: Mapping[str, torch.Tensor], *, attention_head_dim: int = 128) -> dict[str, Any]:
    """diffusers `WanTransformer3DModel` config keys of a diffusers-named T2V state dict.

    Shapes give every size but the head count (the Q/K norms span all heads): Wan2.1's heads are 128 wide
    (1.3B: 12 heads, 14B: 40), so `attention_head_dim` defaults to 128.
    """
    if "patch_embedding.weight" not in sd:
        raise ValueError("state dict has no patch_embedding.weight: not a Wan generator")
    inner, in_channels, *patch = sd["patch_embedding.weight"].shape
    if inner % attention_head_dim:
        raise ValueError(f"model width {inner} is not a multiple of attention_head_dim={attention_head_dim}")
    num_layers = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    return dict(
        patch_size=tuple(int(p) for p in patch),
        num_attention_heads=inner // attention_head_dim,
        attention_head_dim=attention_head_dim,
        in_channels=int(in_channels),
        out_channels=int(sd["proj_out.weight"].shape[0]) // math.prod(patch),
        text_dim=int(sd["condition_embedder.text_embedder.linear_1.weight"].shape[1]),
        freq_dim=int(sd["condition_embedder.time_embedder.linear_1.weight"].shape[1]),
        ffn_dim=int(sd["blocks.0.ffn.net.0.proj.weight"].shape[0]),
        num_layers=num_layers,
        cross_attn_norm="blocks.0.norm2.weight" in sd,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        rope_max_seq_len=1024,
    )


def load_peer_checkpoint(
    path: str | Path,
    peer: str,
    *,
    key: str | None = None,
    lora: str | Path | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]] | None]:
    """A peer's released generator as a diffusers-named state dict, and its LoRA adapters (LongLive).

    Args:
        path: The peer's generator file (layouts in this module's docstring).
        peer: One of `PEERS`.
        key: Sub-dict to read (default: the peer's own choice: Self-Forcing's EMA, the others' generator).
        lora: LongLive only: its `lora.pt`, returned unmerged (merge with `merge_lora_weights`).

    Returns:
        `(state_dict, lora)`: every generator key mapped (strict), `lora` None without a LoRA file.
    """
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; expected one of {PEERS}")
    if lora is not None and peer != "longlive":
        raise ValueError(f"a LoRA file is only part of LongLive's release, not of {peer!r}")
    sd = load_original_checkpoint(path, key=key if key is not None else _PEER_KEY[peer], strict=True)
    adapters = load_longlive_lora(lora) if lora is not None else None
    if adapters is not None:
        missing = sorted(f"{n}.weight" for n in adapters if f"{n}.weight" not in sd)
        if missing:
            raise ValueError(f"LoRA adapts linears the generator lacks: {missing[:10]}")
    return sd, adapters
