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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

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
