"""One stage-2 training step, two ways (issue 5 §3), memory held for backward and time:

  (a) naive: rollout with grad through every chunk's exit step, full decode of all frames, reward on the
      last frame;
  (b) ours:  rollout with grad only from the last chunk (`grad_from_chunk`), `decode_last(1, checkpoint)`.

Memory is the peak of bytes saved for backward (autograd saved-tensor hooks, storage-deduplicated), which is
what differs between the two and is device-independent; on CUDA the allocator's peak is reported too.
Then (issue 13 §4), at a mid size, side by side in the same run: the whole stage-2 step (rollout with grad in
the last chunk, `decode_last`, reward, backward, AdamW) for full fine-tuning vs LoRA rank 16 and 64, with and
without activation checkpointing, and exact vs truncated decode (`decode_last(context=K)`). Peak =
MemTracker's peak live bytes over the step on real tensors (CPU: every storage from allocation to free);
time = the median of untracked steps; ratios against full fine-tuning with checkpointing and exact decode.

Writes delimited sections of bench/RESULTS.md. Run: `python bench/train_step.py [--device cuda]`.
Legend: `b` batch, `c` channels, `f` latent frames, `h w` latent size.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time

import torch

from common import load_average, timed, write_section
from rfvideo.demo.world.prompt_color import PromptColorReward
from rfvideo.models.tiny import tiny_causal_wan, tiny_wan_vae
from rfvideo.sampling import FlowMatchSchedule, rollout

MID = dict(num_layers=4, num_attention_heads=4, attention_head_dim=32, ffn_dim=512, num_frames_per_chunk=3,
           text_dim=24)  # fmt: skip
"""The mid size of the variant table: 4 blocks of width 128, FFN 512."""


class SavedBytes:
    """Counts unique storages saved for backward while active."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            st = t.untyped_storage()
            self.seen[st.data_ptr()] = st.nbytes()
        except Exception:  # noqa: BLE001 (sparse or meta tensors: not counted)
            pass
        return t

    @property
    def total(self) -> int:
        return sum(self.seen.values())


def step(mode: str, gen, vae, reward, noise, emb, sched, device) -> tuple[float, int, int]:
    gen.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    counter = SavedBytes()
    t0 = time.perf_counter()
    k = gen.num_frames_per_chunk
    m = noise.shape[2] // k
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
        out = rollout(gen, noise, emb, schedule=sched, exit_step=sched.num_steps - 1,
                      grad_from_chunk=0 if mode == "a" else m - 1)  # fmt: skip
        lat = out.latents  # (b c f h w), the VAE's layout too
        video = vae.decode(lat)[:, -1:] if mode == "a" else vae.decode_last(lat, 1, checkpoint=True)
        loss = -reward(video, ["a red square"] * video.shape[0]).mean()
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    return dt, counter.total, peak


def stage2_step(gen, opt, vae, reward, noise, emb, sched, context: int | None) -> None:
    """One whole stage-2 step: rollout (grad in the last chunk), decode_last, reward, backward, AdamW."""
    m = noise.shape[2] // gen.num_frames_per_chunk
    out = rollout(gen, noise, emb, schedule=sched, exit_step=sched.num_steps - 1, grad_from_chunk=m - 1)
    lat = out.latents
    kw = {} if context is None else {"context": context}
    video = vae.decode_last(lat, 1, checkpoint=True, **kw)
    loss = -reward(video, ["a red square"] * video.shape[0]).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def variants(device: torch.device, latent_frames: int, repeats: int, context: int) -> list[str]:
    """Markdown lines of the full / LoRA x checkpointing x decode table at the mid size."""
    from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker

    from rfvideo.memory import add_lora

    class WholeStepPeak(MemTracker):
        """Global peak only, no per-module stats: the rollout calls the generator many times in one step,
        which MemTracker's per-module accounting refuses. Tracked: the generator's parameters and AdamW state
        (`track_external`) and every tensor the step creates; the frozen VAE / reward weights (the same in
        every row) are not."""

        def _pre_fw_hook(self, module: torch.nn.Module, inputs: object) -> None:
            pass

        def _post_fw_hook(self, module: torch.nn.Module, inputs: object, outputs: object) -> None:
            pass

        def _pre_bw_hook(self, module: torch.nn.Module, args: object) -> None:
            pass

        def _post_bw_hook(self, module: torch.nn.Module, args: object) -> None:
            pass

        def _update_peak_stats(self, peak_state: object) -> None:
            for dev, snap in self._curr_mem_snap.items():
                if self._peak_mem.get(dev, 0) < snap[_TOTAL_KEY]:
                    self._peak_mem[dev] = snap[_TOTAL_KEY]
                    self._peak_mem_snap[dev] = dict(snap)

    truncated = "context" in inspect.signature(type(tiny_wan_vae()).decode_last).parameters
    vae = tiny_wan_vae(base_dim=4).to(device)
    reward = PromptColorReward().to(device)
    sched = FlowMatchSchedule()
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 4, latent_frames, 16, 16, generator=g).to(device)
    emb = torch.randn(1, 16, 24, generator=g).to(device)
    cases = [(None, ck, None) for ck in (True, False)]
    cases += [(r, ck, None) for r in (16, 64) for ck in (True, False)]
    cases += [(None, True, context), (16, True, context)] if truncated else []
    rows = []
    for rank, ck, ctx in cases:
        gen = tiny_causal_wan(**MID).to(device)
        if rank is not None:
            gen = add_lora(gen, rank)
        if ck:
            gen.enable_gradient_checkpointing()
        gen.train()
        params = [p for p in gen.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5, foreach=False)
        stage2_step(gen, opt, vae, reward, noise, emb, sched, ctx)  # warm-up; creates AdamW's state
        times = [
            timed(lambda g=gen, o=opt, c=ctx: stage2_step(g, o, vae, reward, noise, emb, sched, c), device)[0]
            for _ in range(repeats)
        ]
        tracker = WholeStepPeak()
        tracker.track_external(gen, opt)
        with tracker:
            stage2_step(gen, opt, vae, reward, noise, emb, sched, ctx)
        peak = max(int(s["Total"] if "Total" in s else 0) for s in (
            {str(getattr(k, "value", k)): v for k, v in d.items()}
            for d in tracker.get_tracker_snapshot("peak").values()
        ))  # fmt: skip
        trainable = sum(p.numel() for p in params)
        rows.append((rank, ck, ctx, trainable, peak, statistics.median(times)))
        print(rows[-1], flush=True)
    base = rows[0]
    lines = [
        "| generator | trainable params | checkpointing | decode | peak (MiB) | peak / base | step (s) | "
        "time / base |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for rank, ck, ctx, trainable, peak, t in rows:
        what = "full fine-tune" if rank is None else f"LoRA r{rank}"
        dec = "exact" if ctx is None else f"truncated K={ctx}"
        lines.append(
            f"| {what} | {trainable:,} | {'yes' if ck else 'no'} | {dec} | {peak / 2**20:.1f} | "
            f"{peak / base[4]:.2f} | {t:.3f} | {t / base[5]:.2f} |"
        )
    if not truncated:
        lines += ["", "(truncated decode rows: `WanVAE.decode_last(context=K)` is not on this checkout)"]
    return lines


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--latent-frames", type=int, default=12)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--mid-latent-frames", type=int, default=9)
    p.add_argument("--mid-repeats", type=int, default=1)
    p.add_argument("--context", type=int, default=2, help="K of the truncated-decode rows")
    p.add_argument("--skip-variants", action="store_true")
    a = p.parse_args()
    device = torch.device(a.device)
    torch.manual_seed(0)
    gen = tiny_causal_wan(num_layers=4, num_attention_heads=4, attention_head_dim=16, ffn_dim=256,
                          num_frames_per_chunk=3, text_dim=24).to(device)  # fmt: skip
    vae = tiny_wan_vae(base_dim=4).to(device)
    reward = PromptColorReward().to(device)
    sched = FlowMatchSchedule()
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 4, a.latent_frames, 8, 8, generator=g).to(device)
    emb = torch.randn(1, 16, 24, generator=g).to(device)
    rows = {}
    for mode in ("a", "b"):
        step(mode, gen, vae, reward, noise, emb, sched, device)  # warm-up
        res = [step(mode, gen, vae, reward, noise, emb, sched, device) for _ in range(a.repeats)]
        rows[mode] = (min(r[0] for r in res), res[-1][1], res[-1][2])
    ratio = rows["b"][1] / rows["a"][1]
    lines = [
        "## One reward-stage training step (bench/train_step.py)",
        f"device: {device.type}; tiny generator (4 blocks, width 64), {a.latent_frames} latent frames "
        "of 8x8, "
        "chunks of 3, 4-step schedule, tiny Wan VAE, last-frame reward.",
        "",
        "| variant | time (s) | saved for backward (MiB) | CUDA peak (MiB) |",
        "| --- | --- | --- | --- |",
        f"| (a) grad through every chunk + full decode | {rows['a'][0]:.3f} | {rows['a'][1] / 2**20:.2f} "
        f"| {rows['a'][2] / 2**20:.1f} |",
        f"| (b) grad only in the last chunk + decode_last(1, checkpoint) | {rows['b'][0]:.3f} | "
        f"{rows['b'][1] / 2**20:.2f} | {rows['b'][2] / 2**20:.1f} |",
        "",
        f"memory ratio (b)/(a): {ratio:.3f} (target <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'})",
    ]
    if not a.skip_variants:
        load0 = f"load average {load_average()}"
        table = variants(device, a.mid_latent_frames, a.mid_repeats, a.context)
        load1 = f"load average {load_average()}"
        lines += [
            "",
            "### Full fine-tune vs LoRA, checkpointing, exact vs truncated decode (one run)",
            f"device: {device.type}; mid size: generator 4 blocks of width 128 (FFN 512), "
            f"{a.mid_latent_frames} latent frames of 16x16 (64 tokens/frame), chunks of 3, 4-step schedule, "
            "tiny Wan VAE (base_dim 4, 128x128 pixels), last-frame reward; whole stage-2 step (rollout with "
            "grad in the last chunk, `decode_last(1, checkpoint=True)`, reward, backward, AdamW). Peak: "
            f"MemTracker's peak live bytes over the step (real tensors); step: median of {a.mid_repeats} "
            f"untracked steps after a warm-up. Base: the first row. Load before: `{load0}`; "
            f"after: `{load1}`.",
            "",
            *table,
        ]
    print(write_section("train_step.py", "\n".join(lines)))


if __name__ == "__main__":
    main()
