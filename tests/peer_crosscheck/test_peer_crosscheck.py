"""Side by side: each inference preset against its peer's OWN code, on the same weights and noise.

Opt-in (marker `peers`): set `RFVIDEO_PEERS_DIR` to a folder holding the peers' checkouts, then

    RFVIDEO_PEERS_DIR=/path/to/peers python -m pytest -q -m peers -s tests/peer_crosscheck

The folder holds (a missing one skips its peer, with the reason):

- `Self-Forcing/`   github.com/guandeh17/Self-Forcing (checked at 33593df3)
- `CausVid/`        github.com/tianweiy/CausVid (checked at ca211503)
- `LongLive/`       github.com/NVlabs/LongLive at LongLive 1.0 (7b567128, the last commit before
                    "LongLive 2.0": the code of the released `longlive_base.pt` / `lora.pt`)
- `Reward-Forcing/` github.com/JaydenLyh/Reward-Forcing, Lu et al. (checked at 4317f5a0)

for example

    cd /path/to/peers
    git clone https://github.com/guandeh17/Self-Forcing && git -C Self-Forcing checkout 33593df3
    git clone https://github.com/tianweiy/CausVid && git -C CausVid checkout ca211503
    git clone https://github.com/NVlabs/LongLive && git -C LongLive checkout 7b567128
    git clone https://github.com/JaydenLyh/Reward-Forcing && git -C Reward-Forcing checkout 4317f5a0

The commit each ran at is printed with the numbers (`git rev-parse HEAD` of the checkout, or a
`.peer_commit` file holding the hash for an exported tree).

Per peer the test imports the peer's own causal model and its own inference pipeline from the checkout,
builds a tiny random config (2 layers, width 32, 2 heads, 8x8 latents, 7 text tokens), saves it where the
peer's wrapper loads it from (`from_pretrained`), saves the same weights in the peer's released checkpoint
layout and converts them with rfvideo's converter (`load_peer_checkpoint` + `infer_wan_config`, strict),
then runs both with identical initial noise, re-noising noise and text embeddings and compares every chunk
with the matching preset, printing the max relative error per chunk (max |a - b| / max |b|):

- `self-forcing`: 9 frames, 4 warped steps, global attention.
- `causvid`: 9 frames, 3 unshifted steps, CausVid's sigma table.
- `longlive` / `longlive-interactive`: its interactive pipeline, 21 frames, window 12 with 3 sinks, a
  prompt switch at frame 15 (past the window) or 6 (before it rolls), with its `global_sink` true (the
  sinks keep the old prompt's K/V: `longlive`) and false (its interactive config: the re-cached frames'
  first 3 become the sinks: `longlive-interactive`); base weights, and with a LoRA (rank 4) in its
  `lora.pt` layout, applied by its peft path / merged by ours.
- `reward-forcing-lu`: 18 frames, window 9 with 3 EMA sinks (decay 0.999; 0.9 too, so the folds show).

What the test changes in the peers' runs, and why (none of it is on the compared math):

- Their package `__init__`s (`wan/__init__.py`, CausVid's `wan_base/__init__.py`) import the 14B configs
  (easydict), the T5 / VAE / I2V stacks: the test registers those packages empty, so only the modules the
  tested path imports run.
- `torch.cuda.current_device()` is called at import time (a default argument in `t5.py`, `demo_utils/memory`):
  it returns 0 while their modules import.
- Their `attention` / `flash_attention` need flash_attn on CUDA, and the SDPA fallback casts q/k/v to bf16:
  both are replaced by float32 SDPA with the same arguments, so the comparison is of the math, in float32.
- CausVid builds one step tensor with `device="cuda"`: `torch.ones` maps that device to the CPU.
- Their KV / cross-attention caches are allocated with Wan-1.3B's hard-coded sizes (30 blocks, 1560 tokens
  per frame, 12 heads x 128, 512 text tokens): the test sets `num_transformer_blocks` / `frame_seq_length`
  to the tiny model's and allocates the same dicts with the tiny head shape (the peer's size rule kept).
- Their re-noising draws `torch.randn_like` from the global RNG on `(b f) c h w`: it draws from the
  generator rfvideo uses, in rfvideo's `b c f h w` order, so both runs add the same noise.
- The text encoder and the VAE are stubs (embeddings given; the VAE returns the latents).

Shapes: `b` batch, `c` latent channels, `f` latent frames, `k` frames per chunk, `h w` latent size,
`n d` text tokens / width.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from rfvideo.models import CausalOptions, CausalWanTransformer
from rfvideo.models.convert import (
    diffusers_to_wan,
    infer_wan_config,
    load_peer_checkpoint,
    merge_lora_weights,
)
from rfvideo.pipeline.presets import get_preset
from rfvideo.sampling import sample_chunkwise

PEERS_DIR = os.environ.get("RFVIDEO_PEERS_DIR")

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(
        not PEERS_DIR,
        reason="set RFVIDEO_PEERS_DIR to a folder with the Self-Forcing/, CausVid/, LongLive/ and "
        "Reward-Forcing/ checkouts (see this file's docstring)",
    ),
]

K = 3  # frames per chunk of every peer
C, H, W = 4, 8, 8  # latent channels and size
N_TEXT, TEXT_DIM = 7, 4096  # umT5 width: their config drops text_dim (ignore_for_config), 4096 is its default
HEADS, HEAD_DIM = 2, 16
TOKENS_PER_FRAME = (H // 2) * (W // 2)  # patch (1, 2, 2)
PEER_CONFIG = dict(
    model_type="t2v", patch_size=(1, 2, 2), text_len=N_TEXT, in_dim=C, dim=HEADS * HEAD_DIM, ffn_dim=64,
    freq_dim=32, text_dim=TEXT_DIM, out_dim=C, num_heads=HEADS, num_layers=2, qk_norm=True,
    cross_attn_norm=True, eps=1e-6,
)  # fmt: skip

# top-level packages of the peers' checkouts (they share names: each peer is imported on its own)
_PEER_PACKAGES = ("wan", "utils", "pipeline", "model", "demo_utils", "trainer", "causvid")


def _peer_root(name: str) -> Path:
    root = Path(PEERS_DIR or "") / name
    if not root.is_dir():
        pytest.skip(f"{root} is not there: clone the peer's repository into it (see the docstring)")
    return root


def _commit(root: Path) -> str:
    f = root / ".peer_commit"
    if f.is_file():
        return f.read_text().strip()
    if (root / ".git").exists():
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.strip()
    return "unknown commit (no .git, no .peer_commit)"


def _sdpa(q, k, v, q_lens=None, k_lens=None, dropout_p=0.0, softmax_scale=None, q_scale=None, causal=False,
          window_size=(-1, -1), deterministic=False, dtype=None, version=None, fa_version=None):  # fmt: skip
    """Their `attention(q, k, v)` on `[B, L, heads, head_dim]`, in float32 (no padding masks in this path)."""
    assert q_lens is None and k_lens is None and window_size == (-1, -1) and q_scale is None
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal, scale=softmax_scale
    )
    return out.transpose(1, 2).contiguous()


@contextlib.contextmanager
def peer_imports(root: Path, stub_packages: tuple[str, ...]) -> Iterator[None]:
    """Import from `root` alone: the peers' shared top-level names are taken out of `sys.modules` and put
    back afterwards; `stub_packages` are registered empty (their `__init__` imports what the path does not
    use); `torch.cuda.current_device` returns 0 while their modules import."""
    saved = {k: m for k, m in sys.modules.items() if k.split(".")[0] in _PEER_PACKAGES}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(root))
    for pkg in stub_packages:
        module = types.ModuleType(pkg)
        module.__path__ = [str(root.joinpath(*pkg.split(".")))]
        sys.modules[pkg] = module
    current_device = torch.cuda.current_device
    torch.cuda.current_device = lambda: 0
    try:
        yield
    finally:
        torch.cuda.current_device = current_device
        sys.path.remove(str(root))
        for k in [k for k in sys.modules if k.split(".")[0] in _PEER_PACKAGES]:
            del sys.modules[k]
        sys.modules.update(saved)


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Every parameter random (Wan's own init zeroes the head: the outputs would be trivial)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name:
                p.copy_(1 + 0.1 * noise)
            elif p.ndim == 1:
                p.copy_(0.1 * noise)
            else:
                fan_in = p.shape[-1] if p.ndim == 2 else math.prod(p.shape[1:])
                p.copy_(noise / math.sqrt(max(fan_in, 1)) * (1.0 if "modulation" not in name else 0.3))


def _save_peer_model(model_cls, tmp_path: Path, sub: str, seed: int) -> dict[str, torch.Tensor]:
    """A tiny random peer model saved where its wrapper loads it; returns its state dict."""
    model = model_cls(**PEER_CONFIG)
    _randomize(model, seed)
    model.save_pretrained(str(tmp_path / sub))
    return {k: v.clone() for k, v in model.state_dict().items() if k != "freqs"}


def _convert(
    peer: str,
    sd: dict[str, torch.Tensor],
    tmp_path: Path,
    layout: str,
    lora: Path | None = None,
    preset: str | None = None,
) -> CausalWanTransformer:
    """The same weights through rfvideo's converter, from the peer's released file layout (`lora`: LongLive's
    `lora.pt`, merged as `rfvideo convert --lora` does), with the preset `preset` (default: the peer's)."""
    wan_keys = {f"model.{k}": v for k, v in sd.items()}
    path = tmp_path / f"{peer}.pt"
    torch.save({"generator_ema": wan_keys} if layout == "generator_ema" else
               {"generator": wan_keys} if layout == "generator" else wan_keys, path)  # fmt: skip
    converted, adapters = load_peer_checkpoint(path, peer, lora=lora)
    config = infer_wan_config(converted, attention_head_dim=HEAD_DIM)
    preset = get_preset(preset or peer)
    model = CausalWanTransformer.from_options(
        preset.causal_options(CausalOptions(num_frames_per_chunk=K)), **config
    )
    model.load_state_dict(converted, strict=True)
    # the mapping is a bijection: back to the peer's names, every key and value
    back = diffusers_to_wan(converted)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    if adapters is not None:
        rank = next(iter(adapters.values()))[0].shape[0]
        model.load_state_dict(merge_lora_weights(converted, adapters, alpha=float(rank)), strict=True)
    return model.eval()


@contextlib.contextmanager
def _their_noise(generator: torch.Generator, b: int) -> Iterator[None]:
    """Their `torch.randn_like(x0.flatten(0, 1))` draws rfvideo's `(b c k h w)` noise from `generator`."""
    randn_like = torch.randn_like

    def draw(x: torch.Tensor, **_: object) -> torch.Tensor:
        f = x.shape[0] // b
        eps = torch.randn((b, x.shape[1], f, *x.shape[2:]), generator=generator)
        return eps.permute(0, 2, 1, 3, 4).reshape(x.shape).to(x.dtype)

    torch.randn_like = draw
    try:
        yield
    finally:
        torch.randn_like = randn_like


def _caches(n_blocks: int, b: int, kv_tokens: int) -> tuple[list[dict], list[dict]]:
    """Their cache dicts (`_initialize_kv_cache` / `_initialize_crossattn_cache`) at the tiny head shape."""
    kv = [
        {
            "k": torch.zeros(b, kv_tokens, HEADS, HEAD_DIM),
            "v": torch.zeros(b, kv_tokens, HEADS, HEAD_DIM),
            "global_end_index": torch.tensor([0], dtype=torch.long),
            "local_end_index": torch.tensor([0], dtype=torch.long),
        }
        for _ in range(n_blocks)
    ]
    cross = [
        {
            "k": torch.zeros(b, N_TEXT, HEADS, HEAD_DIM),
            "v": torch.zeros(b, N_TEXT, HEADS, HEAD_DIM),
            "is_init": False,
        }
        for _ in range(n_blocks)
    ]
    return kv, cross


class _Text:
    """Their text encoder: `text_encoder(text_prompts=[...]) -> {"prompt_embeds": (b n d)}`."""

    def __init__(self, embeds: dict[str, torch.Tensor]):
        self.embeds = embeds

    def __call__(self, text_prompts):
        return {"prompt_embeds": torch.cat([self.embeds[p] for p in text_prompts])}


class _Vae(torch.nn.Module):
    """Their VAE wrapper, returning the latents (the comparison is of the latents)."""

    def decode_to_pixel(self, latents, use_cache=False):
        return latents


def _inputs(f: int, seed: int = 11) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, C, f, H, W, generator=g)  # (b c f h w)
    text_a = torch.randn(1, N_TEXT, TEXT_DIM, generator=g)  # (b n d)
    text_b = torch.randn(1, N_TEXT, TEXT_DIM, generator=g)
    return noise, text_a, text_b


def _per_chunk(ours: torch.Tensor, theirs: torch.Tensor) -> list[float]:
    """Max relative error of each chunk, `(b c f h w)` both."""
    out = []
    for s in range(0, theirs.shape[2], K):
        a, b = ours[:, :, s : s + K].double(), theirs[:, :, s : s + K].double()
        out.append(float((a - b).abs().max() / b.abs().max()))
    return out


def _report(name: str, root: Path, errors: list[float]) -> None:
    print(
        f"\n[peers] {name} @ {_commit(root)}: max rel error per chunk "
        + ", ".join(f"{e:.1e}" for e in errors)
    )


# ---------------------------------------------------------------- the Self-Forcing family (SF, RF)
def _run_self_forcing_family(root: Path, tmp_path: Path, monkeypatch, *, f: int, model_kwargs: dict,
                             wrapper_kwargs: dict, seed: int, patch=None):  # fmt: skip
    """Their `CausalInferencePipeline.inference` on the tiny model; returns (latents (b c f h w), sd)."""
    monkeypatch.chdir(tmp_path)
    noise, text, _ = _inputs(f)
    with peer_imports(root, ("wan",)):
        causal_model = importlib.import_module("wan.modules.causal_model")
        wan_model = importlib.import_module("wan.modules.model")
        monkeypatch.setattr(causal_model, "attention", _sdpa)
        monkeypatch.setattr(wan_model, "flash_attention", _sdpa)
        if patch is not None:
            patch(causal_model)
        pipeline_mod = importlib.import_module("pipeline.causal_inference")
        wrapper_mod = importlib.import_module("utils.wan_wrapper")
        sd = _save_peer_model(causal_model.CausalWanModel, tmp_path, "wan_models/tiny", seed)
        generator = wrapper_mod.WanDiffusionWrapper(
            model_name="tiny", timestep_shift=5.0, is_causal=True, **model_kwargs, **wrapper_kwargs
        )
        args = SimpleNamespace(
            denoising_step_list=[1000, 750, 500, 250], warp_denoising_step=True, num_frame_per_block=K,
            independent_first_frame=False, context_noise=0, model_kwargs=SimpleNamespace(**model_kwargs),
            checkpoint_path=str(tmp_path / "wan_models"),
        )  # fmt: skip
        pipe = pipeline_mod.CausalInferencePipeline(
            args, "cpu", generator=generator, text_encoder=_Text({"a": text}), vae=_Vae()
        )
        pipe.num_transformer_blocks, pipe.frame_seq_length = PEER_CONFIG["num_layers"], TOKENS_PER_FRAME
        window = model_kwargs.get("local_attn_size", -1)
        kv_tokens = 32760 if window == -1 else window * TOKENS_PER_FRAME  # their `_initialize_kv_cache` rule
        pipe.kv_cache1, pipe.crossattn_cache = _caches(PEER_CONFIG["num_layers"], 1, kv_tokens)
        with torch.no_grad(), _their_noise(torch.Generator().manual_seed(5), b=1):
            _, latents = pipe.inference(noise.permute(0, 2, 1, 3, 4), ["a"], return_latents=True)
    return latents.permute(0, 2, 1, 3, 4), sd, noise, text


def _ours(model: CausalWanTransformer, preset: str, noise, text) -> torch.Tensor:
    with torch.no_grad():
        return sample_chunkwise(
            model, noise, text, schedule=get_preset(preset).flow_schedule(),
            generator=torch.Generator().manual_seed(5),
        )  # fmt: skip


def test_self_forcing_side_by_side(tmp_path, monkeypatch):
    root = _peer_root("Self-Forcing")
    theirs, sd, noise, text = _run_self_forcing_family(
        root, tmp_path, monkeypatch, f=9, model_kwargs={}, wrapper_kwargs={}, seed=1
    )
    model = _convert("self-forcing", sd, tmp_path, "generator_ema")
    errors = _per_chunk(_ours(model, "self-forcing", noise, text), theirs)
    _report("self-forcing", root, errors)
    assert max(errors) < 1e-4, errors


@pytest.mark.parametrize("decay", [0.999, 0.9])
def test_reward_forcing_lu_side_by_side(tmp_path, monkeypatch, decay):
    root = _peer_root("Reward-Forcing")

    def set_decay(causal_model) -> None:
        # their decay is the attention's `compression_alpha` default (0.999, no config key): 0.9 too, so
        # that the folds move the output visibly
        init = causal_model.CausalWanSelfAttention.__init__
        init.__defaults__ = (*init.__defaults__[:-1], decay)

    theirs, sd, noise, text = _run_self_forcing_family(
        root, tmp_path, monkeypatch, f=18, model_kwargs={"local_attn_size": 9, "sink_size": 3},
        wrapper_kwargs={"checkpoint_path": str(tmp_path / "wan_models")}, seed=2, patch=set_decay,
    )  # fmt: skip
    model = _convert("reward-forcing-lu", sd, tmp_path, "flat")
    preset_run = _ours(model, "reward-forcing-lu", noise, text)
    model.set_causal_options(dataclasses.replace(model.causal_options, sink_ema_decay=decay))
    errors = _per_chunk(_ours(model, "reward-forcing-lu", noise, text), theirs)
    _report(f"reward-forcing-lu (decay {decay})", root, errors)
    assert max(errors) < 1e-4, errors
    if decay != 0.999:  # their run did take the other decay: the preset's 0.999 is off it from the first fold
        moved = _per_chunk(preset_run, theirs)
        print(
            f"[peers]   the preset's decay 0.999 against their decay-{decay} run: "
            + ", ".join(f"{e:.1e}" for e in moved)
        )
        assert max(moved[:3]) < 1e-4 < min(moved[3:]), moved


# ---------------------------------------------------------------- CausVid
@contextlib.contextmanager
def _cuda_to_cpu_ones() -> Iterator[None]:
    """CausVid's `add_noise` step tensor is `torch.ones(..., device="cuda")`: build it on the CPU."""
    ones = torch.ones

    def cpu_ones(*size, device=None, **kwargs):
        return ones(*size, device="cpu" if str(device).startswith("cuda") else device, **kwargs)

    torch.ones = cpu_ones
    try:
        yield
    finally:
        torch.ones = ones


def test_causvid_side_by_side(tmp_path, monkeypatch):
    root = _peer_root("CausVid")
    monkeypatch.chdir(tmp_path)
    noise, text, _ = _inputs(9)
    base = "causvid.models.wan.wan_base"
    with peer_imports(root, (base,)):
        causal_model = importlib.import_module("causvid.models.wan.causal_model")
        monkeypatch.setattr(causal_model, "attention", _sdpa)
        monkeypatch.setattr(importlib.import_module(f"{base}.modules.model"), "flash_attention", _sdpa)
        inference = importlib.import_module("causvid.models.wan.causal_inference")
        # its wrapper loads wan_models/Wan2.1-T2V-1.3B/ (the bidirectional WanModel, then the causal one)
        sd = _save_peer_model(causal_model.CausalWanModel, tmp_path, "wan_models/Wan2.1-T2V-1.3B", seed=3)
        monkeypatch.setattr(
            inference, "get_text_encoder_wrapper", lambda model_name: lambda: _Text({"a": text})
        )
        monkeypatch.setattr(inference, "get_vae_wrapper", lambda model_name: _Vae)
        # configs/wan_causal_dmd.yaml (the released autoregressive checkpoint's inference settings)
        args = SimpleNamespace(
            model_name="causal_wan", generator_name="causal_wan", denoising_step_list=[1000, 757, 522, 0],
            warp_denoising_step=False, num_frame_per_block=K,
        )  # fmt: skip
        pipe = inference.InferencePipeline(args, "cpu")
        pipe.num_transformer_blocks, pipe.frame_seq_length = PEER_CONFIG["num_layers"], TOKENS_PER_FRAME
        kv, pipe.crossattn_cache = _caches(PEER_CONFIG["num_layers"], 1, 32760)
        pipe.kv_cache1 = [{"k": c["k"], "v": c["v"]} for c in kv]  # CausVid's cache: absolute positions
        with torch.no_grad(), _their_noise(torch.Generator().manual_seed(5), b=1), _cuda_to_cpu_ones():
            _, latents = pipe.inference(noise.permute(0, 2, 1, 3, 4), ["a"], return_latents=True)
    theirs = latents.permute(0, 2, 1, 3, 4)
    model = _convert("causvid", sd, tmp_path, "generator")
    errors = _per_chunk(_ours(model, "causvid", noise, text), theirs)
    _report("causvid", root, errors)
    assert max(errors) < 1e-4, errors
    # the same preset with the continuous t / 1000 (before `sigma_lookup="table"`): off from chunk 0
    continuous = dataclasses.replace(get_preset("causvid").flow_schedule(), sigma_lookup="continuous")
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        off = _per_chunk(sample_chunkwise(model, noise, text, schedule=continuous, generator=g), theirs)
    print("[peers]   causvid with the continuous sigma t / 1000: " + ", ".join(f"{e:.1e}" for e in off))
    assert min(off) > 1e-4, off


# ---------------------------------------------------------------- LongLive
class _StreamVae(torch.nn.Module):
    """rfvideo's decoder slot returning the latents: `stream_decoder()(x0, frame_offset) -> x0`."""

    def stream_decoder(self):
        return _Identity()


class _Identity:
    def reset(self) -> None:
        pass

    def __call__(self, x0: torch.Tensor, frame_offset: int) -> torch.Tensor:
        return x0


@pytest.mark.parametrize("switch_frame, global_sink", [(15, False), (15, True), (6, False), (6, True)])
@pytest.mark.parametrize("lora", [False, True], ids=["base", "lora"])
def test_longlive_side_by_side(tmp_path, monkeypatch, switch_frame, global_sink, lora):
    """Prompt "a", then "b" from `switch_frame` on: 15 is past the 12-frame window (frames were evicted),
    6 is before it rolls. `global_sink` is LongLive's switch: true keeps the cache (the sinks keep the old
    prompt's K/V: the `longlive` preset, `recache_sinks="keep"`), false is its interactive config's (the
    cache restarts from the last 12 frames, whose first 3 become the sinks: `longlive-interactive`,
    `recache_sinks="resink"`)."""
    from rfvideo.streaming.generator import StreamingGenerator

    root = _peer_root("LongLive")
    if not (root / "pipeline" / "interactive_causal_inference.py").is_file():
        pytest.skip(
            f"{root} is not LongLive 1.0 (no pipeline/interactive_causal_inference.py): check out 7b567128"
        )
    monkeypatch.chdir(tmp_path)
    f = 21
    _, text_a, text_b = _inputs(f)
    g = torch.Generator().manual_seed(7)
    noise = torch.randn(1, C, f, H, W, generator=g)  # the stream's rule: the whole initial noise first
    model_kwargs = {"local_attn_size": 12, "sink_size": 3}
    with peer_imports(root, ("wan",)):
        causal_model = importlib.import_module("wan.modules.causal_model")
        monkeypatch.setattr(causal_model, "attention", _sdpa)
        monkeypatch.setattr(importlib.import_module("wan.modules.model"), "flash_attention", _sdpa)
        wrapper_mod = importlib.import_module("utils.wan_wrapper")
        interactive = importlib.import_module("pipeline.interactive_causal_inference")
        sd = _save_peer_model(causal_model.CausalWanModel, tmp_path, "wan_models/tiny", seed=4)
        generator = wrapper_mod.WanDiffusionWrapper(
            model_name="tiny", timestep_shift=5.0, is_causal=True, **model_kwargs
        )

        class TinyCaches(interactive.InteractiveCausalInferencePipeline):
            # their allocation at Wan-1.3B's head shape (12 x 128, 512 text tokens), with their size rule
            def _initialize_kv_cache(self, batch_size, dtype, device, kv_cache_size_override=None):
                self.kv_cache1, _ = _caches(self.num_transformer_blocks, batch_size, kv_cache_size_override)

            def _initialize_crossattn_cache(self, batch_size, dtype, device):
                _, self.crossattn_cache = _caches(self.num_transformer_blocks, batch_size, 0)

        # configs/longlive_interactive_inference.yaml
        args = SimpleNamespace(
            denoising_step_list=[1000, 750, 500, 250], warp_denoising_step=True, num_frame_per_block=K,
            context_noise=0, model_kwargs=SimpleNamespace(**model_kwargs), global_sink=global_sink,
        )  # fmt: skip
        text = _Text({"a": text_a, "b": text_b})
        pipe = TinyCaches(args, "cpu", generator=generator, text_encoder=text, vae=_Vae())
        pipe.num_transformer_blocks, pipe.frame_seq_length = PEER_CONFIG["num_layers"], TOKENS_PER_FRAME
        lora_path = None
        if lora:  # interactive_inference.py: configure_lora_for_model, then peft's set_peft_model_state_dict
            import peft

            lora_utils = importlib.import_module("utils.lora_utils")
            adapter = {"type": "lora", "rank": 4, "alpha": 4, "dropout": 0.0}  # theirs: rank = alpha = 256
            pipe.generator.model = lora_utils.configure_lora_for_model(
                pipe.generator.model, model_name="generator", lora_config=adapter, is_main_process=False
            )
            gl = torch.Generator().manual_seed(8)  # peft starts lora_B at zero: random adapters
            lora_sd = {
                k: torch.randn(v.shape, generator=gl) * 0.3
                for k, v in sorted(peft.get_peft_model_state_dict(pipe.generator.model).items())
            }
            peft.set_peft_model_state_dict(pipe.generator.model, lora_sd)
            lora_path = tmp_path / "lora.pt"
            torch.save({"generator_lora": lora_sd, "step": 0}, lora_path)
        with torch.no_grad(), _their_noise(g, b=1):
            _, latents = pipe.inference(
                noise.permute(0, 2, 1, 3, 4), text_prompts_list=[["a"], ["b"]],
                switch_frame_indices=[switch_frame], return_latents=True,
            )  # fmt: skip
    theirs = latents.permute(0, 2, 1, 3, 4)

    preset = "longlive" if global_sink else "longlive-interactive"
    model = _convert("longlive", sd, tmp_path, "generator", lora=lora_path, preset=preset)
    stream = StreamingGenerator(
        model, _StreamVae(), lambda prompts: {"a": text_a, "b": text_b}[prompts[0]],
        schedule=get_preset(preset).flow_schedule(), latent_size=(H, W), seed=7, max_chunks=f // K,
    )  # fmt: skip
    ours = _switched_stream(stream, f, switch_frame)
    assert torch.equal(stream._noise, noise)  # same initial noise, drawn by the same rule
    errors = _per_chunk(ours, theirs)
    what = f"switch at frame {switch_frame}, global_sink {global_sink}" + (", LoRA merged" if lora else "")
    _report(f"{preset} ({what})", root, errors)
    assert max(errors) < 1e-4, errors
    if not global_sink and switch_frame == 15:
        # the other preset's re-cache (old sinks kept) against the interactive config: off after the switch
        get_preset("longlive").apply(model)
        kept = StreamingGenerator(
            model, _StreamVae(), lambda prompts: {"a": text_a, "b": text_b}[prompts[0]],
            schedule=get_preset("longlive").flow_schedule(), latent_size=(H, W), seed=7, max_chunks=f // K,
        )  # fmt: skip
        off = _per_chunk(_switched_stream(kept, f, switch_frame), theirs)
        print("[peers]   longlive (global_sink true's rule) vs it: " + ", ".join(f"{e:.1e}" for e in off))
        assert max(off[: switch_frame // K]) < 1e-4 < min(off[switch_frame // K :]), off


def _switched_stream(stream, f: int, switch_frame: int) -> torch.Tensor:
    """The stream's chunks `(b c f h w)`: prompt "a", then "b" from `switch_frame` on."""
    stream.set_prompt("a")
    chunks = []
    for i in range(f // K):
        if i * K == switch_frame:
            stream.set_prompt("b")
        chunks.append(stream.next_chunk())
    return torch.cat(chunks, dim=2)
