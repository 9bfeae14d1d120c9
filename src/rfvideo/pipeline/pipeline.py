"""`RFVideoPipeline`: a trained causal generator -> video, in diffusers' conventions, and as a live stream.

    pipe = RFVideoPipeline.from_pretrained("outputs/demo/pipeline")        # or a hub id; or .from_module(m)
    video = pipe("a red square moving left", num_frames=9, generator=torch.Generator().manual_seed(0)).frames
    for frames in pipe.stream("a red square moving left", generator=g, num_frames=9): show(frames)

Components (diffusers' names): `transformer` (a `CausalWanTransformer` or a subclass, its causal options in
its config), `vae` (the decoder slot: anything with `decode`, `decode_last`, `stream_decoder`,
`temporal_factor`, `spatial_factor`, in the generator's `(b c f h w)` layout), `text_encoder` (an rfvideo
`TextEncoder`, which holds its `tokenizer`), `scheduler` (`FewStepFlowScheduler`, the few-step schedule).

`__call__` runs the one chunk loop (`rfvideo.sampling.chunk_loop`, shared with training's rollout) and
decodes the whole video at the end, as `VideoGeneratorModule.generate` always did: for the same generator
the frames are bit-identical to that path. `stream` returns a `StreamingGenerator` (prompt switching,
endless with a rolling window and relative RoPE) whose chunks are decoded as they are made; for the same
generator and length its frames equal `__call__`'s (to the streamed decoder's <= 1e-5).

Randomness: only the given `torch.Generator`s are used (the global RNG is never read or seeded). One
generator draws the whole initial noise `(b c f h w)` first, then every re-noising draw; a list gives each
video its own generator (and its own run, so a video does not depend on its batch).

Legend: `b` videos, `c` latent channels, `f` latent frames, `k` frames per chunk, `h w` latent size, `F`
pixel frames, `H W` pixel size, `n d` text tokens / width.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from diffusers import DiffusionPipeline

from rfvideo.models.vae import num_latent_frames, num_pixel_frames
from rfvideo.pipeline.output import OUTPUT_TYPES, RFVideoPipelineOutput
from rfvideo.pipeline.scheduler import FewStepFlowScheduler
from rfvideo.sampling.chunkwise import chunk_loop
from rfvideo.streaming.generator import StreamingGenerator, check_stream_length
from rfvideo.streaming.video import vae_dtype
from rfvideo.utils.timings import GenerationTimings, sync_device

__all__ = ["RFVideoPipeline", "vae_factors"]

WAN_FPS = 16.0


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run in eval mode and give the model back in the mode it came in (a training module's generator)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class RFVideoPipeline(DiffusionPipeline):
    """Text -> video with a chunk-wise causal few-step generator (see the module docstring).

    Args:
        transformer: The causal generator (`CausalWanTransformer` or a subclass).
        vae: The decoder slot (`WanVAE`, or any decoder with the same methods and layout).
        scheduler: The few-step schedule.
        text_encoder: An rfvideo `TextEncoder` (None: pass `prompt_embeds` to every call).
        tokenizer: The text encoder's tokenizer (default: `text_encoder.tokenizer`).
        num_frames: Default pixel frames of a video (1 + 4k; Wan2.1: 81).
        height: Default pixel height (Wan2.1: 480).
        width: Default pixel width (Wan2.1: 832).
        fps: Frames per second of the video (Wan2.1: 16).
    """

    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _optional_components = ["text_encoder", "tokenizer"]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        transformer: Any,
        vae: Any,
        scheduler: FewStepFlowScheduler,
        text_encoder: Any = None,
        tokenizer: Any = None,
        *,
        num_frames: int = 81,
        height: int = 480,
        width: int = 832,
        fps: float = WAN_FPS,
    ) -> None:
        super().__init__()
        if not isinstance(scheduler, FewStepFlowScheduler):
            raise ValueError(f"scheduler must be a FewStepFlowScheduler, got {type(scheduler).__name__}")
        if tokenizer is None and text_encoder is not None:
            tokenizer = getattr(text_encoder, "tokenizer", None)
        self.register_modules(
            transformer=transformer,
            vae=vae,
            scheduler=scheduler,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
        )
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self.register_to_config(num_frames=num_frames, height=height, width=width, fps=float(fps))
        self._check_size(num_frames, height, width)  # the defaults must be valid requests themselves
        self.load_seconds: float | None = None
        """Seconds the loader took to build the pipeline (None: built from objects in memory)."""
        self._current_chunk = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_module(cls, module: Any, *, use_ema: bool = True) -> RFVideoPipeline:
        """The pipeline of a trained recipe in memory (`ODEInitModule` / `RewardForcingModule`), sharing its
        modules (nothing is copied): its generator (the EMA copy by default, what the paper evaluates), VAE,
        text encoder, schedule, and its training length and size as the defaults."""
        ema = getattr(module, "generator_ema", None)
        transformer = ema if use_ema and ema is not None else module.generator
        vae = module.vae
        h, w = module.latent_size
        return cls(
            transformer=transformer,
            vae=vae,
            scheduler=FewStepFlowScheduler.from_schedule(module.schedule),
            text_encoder=module.text_encoder,
            num_frames=num_pixel_frames(int(module.num_latent_frames), _temporal(vae)),
            height=int(h) * _spatial(vae),
            width=int(w) * _spatial(vae),
        )

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str],
        *,
        torch_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        device_map: str | None = None,
        allow_classes: Sequence[str] = (),
        preset: str | None = None,
    ) -> RFVideoPipeline:
        """Load a pipeline folder (`model_index.json` + one subfolder per component) or a hub id.

        Every component's class is read from `model_index.json` and checked against the allow-list
        (`rfvideo.pipeline.folder.ALLOWED_CLASSES` plus `allow_classes`, "module.Class") before anything is
        imported; a folder that cannot be restored exactly (an unknown class, a missing or extra weight, a
        digest that does not match) is refused with one line naming the problem.

        Args:
            pretrained_model_name_or_path: A local folder or a hub id.
            torch_dtype: Dtype of the transformer's and text encoder's weights (the VAE keeps its own).
            device: Where to put the pipeline (same as `.to(device)` after loading).
            device_map: diffusers' "cuda" / "cpu" shorthand for `device` (no sharding).
            allow_classes: Further component classes this folder may name, as "module.Class".
            preset: An inference preset to apply (`rfvideo.pipeline.presets`), e.g. "self-forcing".
        """
        from rfvideo.pipeline.folder import load_pipeline

        if device_map is not None:
            if device is not None or not isinstance(device_map, str):
                raise ValueError(f"device_map must be a device name and excludes device, got {device_map!r}")
            device = device_map
        t0 = time.perf_counter()
        pipe = load_pipeline(
            cls, pretrained_model_name_or_path, torch_dtype=torch_dtype, allow_classes=allow_classes
        )
        if preset is not None:
            pipe.apply_preset(preset)
        if device is not None:
            pipe.to(device)
        sync_device(pipe.device)
        pipe.load_seconds = time.perf_counter() - t0
        return pipe

    @classmethod
    def from_training_config(
        cls,
        config_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        ckpt: str | os.PathLike[str] | None = None,
        *,
        use_ema: bool = True,
        allow_classes: Sequence[str] = (),
        device: torch.device | str | None = None,
    ) -> RFVideoPipeline:
        """A training YAML (+ its checkpoint): builds the generator, VAE and text encoder only (no rewards,
        no data, no Trainer), loads the checkpoint's EMA (or raw) generator weights strictly.

        See `rfvideo.pipeline.training_config` for what is read and checked.
        """
        from rfvideo.pipeline.training_config import build_from_training_config

        t0 = time.perf_counter()
        pipe = build_from_training_config(
            cls, config_paths, ckpt, use_ema=use_ema, allow_classes=allow_classes
        )
        if device is not None:
            pipe.to(device)
        sync_device(pipe.device)
        pipe.load_seconds = time.perf_counter() - t0
        return pipe

    def save_pretrained(  # type: ignore[override]
        self,
        save_directory: str | os.PathLike[str],
        *,
        references: dict[str, tuple[str, str | None]] | None = None,
        **kwargs: Any,
    ) -> None:
        """Write the pipeline folder: `model_index.json`, and per component a subfolder (safetensors).

        Args:
            save_directory: A new or empty folder.
            references: Components written as a reference instead of a copy, `{name: (path_or_hub_id,
                subfolder)}`, e.g. `{"text_encoder": (WAN, "text_encoder"), "tokenizer": (WAN, "tokenizer")}`
                keeps the 11 GB umT5 where it is.
        """
        from rfvideo.pipeline.folder import save_pipeline

        if kwargs:
            raise ValueError(f"unsupported save_pretrained arguments: {sorted(kwargs)}")
        save_pipeline(self, save_directory, references=references or {})

    def set_decoder(self, vae: Any) -> None:
        """Put another decoder in the VAE slot (`rfvideo.decoders.build_decoder`: wan, tae, lighttae,
        lightvae); it must take the transformer's latent channels."""
        want = int(self.transformer.config.in_channels)
        got = getattr(vae, "latent_channels", None)
        if got is not None and int(got) != want:
            raise ValueError(
                f"decoder {type(vae).__name__} takes {got} latent channels; the transformer makes {want}"
            )
        self.register_modules(vae=vae)

    def apply_preset(self, name: str) -> None:
        """Set the transformer's causal options and the schedule to a named inference preset."""
        from rfvideo.pipeline.presets import apply_preset

        apply_preset(self, name)

    def to(self, *args: Any, **kwargs: Any) -> RFVideoPipeline:  # type: ignore[override]
        """`module.to(...)` of every torch component (device and/or dtype, as `nn.Module.to` takes them);
        the rfvideo wrappers (`WanVAE`, `TextEncoder`) are plain modules, which diffusers' own `to` skips."""
        for m in (self.transformer, self.vae, self.text_encoder):
            if isinstance(m, torch.nn.Module):
                m.to(*args, **kwargs)
        return self

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @property
    def num_frames_per_chunk(self) -> int:
        return int(self.transformer.num_frames_per_chunk)

    @property
    def current_chunk(self) -> int:
        """The chunk being denoised (read it in a `callback_on_step_end`)."""
        return self._current_chunk

    # ------------------------------------------------------------------ checks
    def _check_size(self, num_frames: Any, height: Any, width: Any) -> tuple[int, int, int]:
        """`(f, h, w)` latent frames and size of a request, or one-line `ValueError`s naming the value."""
        tf, sf = _temporal(self.vae), _spatial(self.vae)
        k = self.num_frames_per_chunk
        try:
            f = num_latent_frames(num_frames, tf)
        except ValueError as e:
            raise ValueError(f"num_frames={num_frames!r}: {e}") from None
        if f % k:
            lower = num_pixel_frames(max(k, f - f % k), tf)
            raise ValueError(
                f"num_frames={num_frames} is {f} latent frames, not a multiple of the chunk size {k}; "
                f"use e.g. {lower} or {num_pixel_frames(f - f % k + k, tf)}"
            )
        patch = self.transformer.config.patch_size
        step_h, step_w = sf * int(patch[1]), sf * int(patch[2])
        for name, value, step in (("height", height, step_h), ("width", width, step_w)):
            if not _is_int(value) or value < step or value % step:
                raise ValueError(f"{name}={value!r} must be a positive multiple of {step} (VAE x patch size)")
        return f, height // sf, width // sf

    def check_inputs(
        self,
        prompt: str | list[str] | None,
        prompt_embeds: torch.Tensor | None,
        num_frames: int,
        height: int,
        width: int,
        output_type: str,
        num_videos_per_prompt: int = 1,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> tuple[list[str] | None, tuple[int, int, int]]:
        """Validate a request before any work; returns the prompts (None with `prompt_embeds`) and `(f h w)`.

        Raises:
            ValueError: one line naming the offending value.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type={output_type!r} is not one of {sorted(OUTPUT_TYPES)}")
        if not _is_int(num_videos_per_prompt) or num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be a positive int, got {num_videos_per_prompt!r}")
        bad = [n for n in callback_on_step_end_tensor_inputs if n not in self._callback_tensor_inputs]
        if bad:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs {bad} not in {self._callback_tensor_inputs}"
            )
        prompts: list[str] | None = None
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("give exactly one of prompt and prompt_embeds")
        if prompt is not None:
            prompts = [prompt] if isinstance(prompt, str) else prompt
            if not isinstance(prompts, list) or not prompts:
                raise ValueError(
                    f"prompt must be a string or a non-empty list of strings, got {prompt!r:.80}"
                )
            for i, p in enumerate(prompts):
                if not isinstance(p, str) or not p.strip():
                    raise ValueError(f"prompt {i} must be a non-empty string, got {p!r:.80}")
            if self.text_encoder is None:
                raise ValueError("this pipeline has no text_encoder: pass prompt_embeds (b n d)")
        elif not torch.is_tensor(prompt_embeds) or prompt_embeds.ndim != 3:
            shape = tuple(prompt_embeds.shape) if torch.is_tensor(prompt_embeds) else type(prompt_embeds)
            raise ValueError(f"prompt_embeds must be a (b n d) tensor, got {shape}")
        return prompts, self._check_size(num_frames, height, width)

    # ------------------------------------------------------------------ pieces
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> embeddings `(b n d)` on the transformer's device and dtype, zero past each prompt's
        tokens (Wan's convention)."""
        with torch.no_grad():
            emb, mask = self.text_encoder.encode(list(prompts))
        emb = emb * mask.unsqueeze(-1).to(emb.dtype)
        return emb.to(self.device, self.dtype)

    def prepare_latents(
        self,
        batch_size: int,
        num_latent_frames: int,
        latent_size: tuple[int, int],
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Initial noise `(b c f h w)`: drawn on the CPU from `generator` (the same on every device), then
        moved to the transformer's device and dtype."""
        c = int(self.transformer.config.in_channels)
        shape = (batch_size, c, num_latent_frames, *latent_size)
        return torch.randn(shape, generator=generator).to(self.device, self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Clean latents `(b c f h w)` -> video `(b F 3 H W)` float32 in [0, 1] (the whole video at once)."""
        return self.vae.decode(latents.to(vae_dtype(self.vae))).float().clamp(0, 1)

    def _denoise(
        self,
        noise: torch.Tensor,
        embeds: torch.Tensor,
        generator: torch.Generator,
        callback: Any,
        tensor_inputs: Sequence[str],
        bar: Any,
    ) -> torch.Tensor:
        """The chunk loop over one batch; returns the clean latents `(b c f h w)`."""
        steps = self.scheduler.schedule.num_steps
        on_step = None
        if callback is not None:

            def on_step(chunk: int, step: int, t: float, latents: torch.Tensor) -> torch.Tensor | None:
                self._current_chunk = chunk
                kwargs = {name: latents for name in tensor_inputs}
                out = callback(self, chunk * steps + step, t, kwargs) or {}
                return out.get("latents")

        chunks = []
        n = noise.shape[2] // self.num_frames_per_chunk
        loop = chunk_loop(
            self.transformer,
            noise,
            embeds,
            schedule=self.scheduler.schedule,
            generator=generator,
            on_step=on_step,
        )
        for i, x0 in loop:
            chunks.append(x0)
            bar.update(1)
            if i == n - 1:
                break  # the last chunk's context pass would only serve a chunk that never comes
        return torch.cat(chunks, dim=2)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        *,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict[str, Any]] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        progress: bool = True,
    ) -> RFVideoPipelineOutput | tuple[Any]:
        """Generate videos chunk by chunk and decode them.

        Args:
            prompt: One prompt or a list (one video per prompt and `num_videos_per_prompt`).
            num_frames: Pixel frames, `1 + 4k` with `k + 1` latent frames a multiple of the chunk size
                (default: the pipeline's, e.g. 81).
            height: Pixel height (default: the pipeline's); a multiple of the VAE factor x patch size.
            width: Pixel width (default: the pipeline's).
            num_videos_per_prompt: Videos per prompt.
            generator: One generator for the batch, or one per video (each video then runs on its own).
                None: a fresh generator seeded from the OS (the global RNG is not used).
            latents: Initial noise `(b c f h w)` instead of drawing it (the generator still re-noises).
            prompt_embeds: Embeddings `(b n d)` instead of `prompt` (no text encoder needed).
            output_type: "np", "pil", "pt" or "latent" (`rfvideo.pipeline.output.OUTPUT_TYPES`).
            return_dict: Return `RFVideoPipelineOutput` (else the tuple `(frames,)`).
            callback_on_step_end: diffusers' contract: `callback(pipe, i, t, callback_kwargs) -> dict`,
                called after every denoising step of every chunk (`i = chunk * steps + step`,
                `pipe.current_chunk` the chunk); `callback_kwargs["latents"]` is that chunk's latents
                `(b c k h w)` (the next step's input, or the chunk's output after its last step), and a
                returned `"latents"` replaces them.
            callback_on_step_end_tensor_inputs: Tensors the callback receives (only "latents").
            progress: Show a progress bar over chunks.

        Returns:
            `RFVideoPipelineOutput(frames, timings)`.
        """
        t_call = time.perf_counter()
        num_frames = self.config.num_frames if num_frames is None else num_frames
        height = self.config.height if height is None else height
        width = self.config.width if width is None else width
        tensor_inputs = (
            getattr(callback_on_step_end, "tensor_inputs", None) or callback_on_step_end_tensor_inputs
        )
        prompts, (f, h, w) = self.check_inputs(
            prompt,
            prompt_embeds,
            num_frames,
            height,
            width,
            output_type,
            num_videos_per_prompt,
            tensor_inputs,
        )
        batch = (len(prompts) if prompts is not None else prompt_embeds.shape[0]) * num_videos_per_prompt
        generators = self._generators(generator, batch)
        if latents is not None:
            want = (batch, int(self.transformer.config.in_channels), f, h, w)
            if not torch.is_tensor(latents) or tuple(latents.shape) != want:
                got = tuple(latents.shape) if torch.is_tensor(latents) else type(latents).__name__
                raise ValueError(f"latents must have shape {want} (b c f h w), got {got}")

        timings = GenerationTimings(load_s=self.load_seconds, pixel_frames=num_frames)
        with timings.measure("text", self.device):
            if prompts is not None:
                embeds = self.encode_prompt(prompts)
            else:
                embeds = prompt_embeds.to(self.device, self.dtype)
            embeds = embeds.repeat_interleave(num_videos_per_prompt, dim=0)

        k = self.num_frames_per_chunk
        with (
            _eval_mode(self.transformer),
            self._bar(batch * f // k if isinstance(generator, list) else f // k, progress) as bar,
            timings.measure("denoise", self.device),
        ):
            if isinstance(generator, list):  # each video its own run: it does not depend on its batch
                out = []
                for i, g in enumerate(generators):
                    noise = self.prepare_latents(1, f, (h, w), g) if latents is None else latents[i : i + 1]
                    out.append(
                        self._denoise(noise, embeds[i : i + 1], g, callback_on_step_end, tensor_inputs, bar)
                    )
                clean = torch.cat(out, dim=0)
            else:
                g = generators[0]
                noise = self.prepare_latents(batch, f, (h, w), g) if latents is None else latents
                clean = self._denoise(noise, embeds, g, callback_on_step_end, tensor_inputs, bar)

        if output_type == "latent":
            frames: Any = clean
        else:
            with timings.measure("decode", self.device):
                # Per video when each has its own run: batched convolutions may round differently.
                parts = clean.split(1) if isinstance(generator, list) else [clean]
                video = torch.cat([self.decode_latents(z) for z in parts])  # (b F 3 H W)
            timings.first_frame_s = time.perf_counter() - t_call
            frames = _postprocess(video, output_type)
        if not return_dict:
            return (frames,)
        return RFVideoPipelineOutput(frames=frames, timings=timings)

    def _bar(self, total: int, progress: bool) -> Any:
        """A chunk progress bar (diffusers' `set_progress_bar_config` applies; off when `progress=False`)."""
        from tqdm.auto import tqdm

        config = {"desc": "chunks", "unit": "chunk"} | dict(getattr(self, "_progress_bar_config", {}))
        if not progress:
            config["disable"] = True
        return tqdm(total=total, **config)

    @staticmethod
    def _generators(generator: Any, batch: int) -> list[torch.Generator]:
        if generator is None:
            g = torch.Generator()
            g.seed()  # fresh entropy from the OS; the global RNG is neither read nor advanced
            return [g]
        if isinstance(generator, torch.Generator):
            return [generator]
        if isinstance(generator, list) and all(isinstance(g, torch.Generator) for g in generator):
            if len(generator) != batch:
                raise ValueError(
                    f"got {len(generator)} generators for {batch} videos; give one or one per video"
                )
            return generator
        raise ValueError(
            f"generator must be a torch.Generator or a list of them, got {type(generator).__name__}"
        )

    # ------------------------------------------------------------------ streaming
    def stream_generator(
        self,
        *,
        seed: int = 0,
        generator: torch.Generator | None = None,
        batch_size: int = 1,
        max_chunks: int | None = None,
        height: int | None = None,
        width: int | None = None,
        fps: float | None = None,
    ) -> StreamingGenerator:
        """A `StreamingGenerator` over this pipeline's components (no prompt set yet): what a server makes
        per client. `max_chunks=None` is endless (needs a rolling window and relative RoPE)."""
        num_frames = num_pixel_frames(self.num_frames_per_chunk, _temporal(self.vae))  # any length: size only
        _, h, w = self._check_size(
            num_frames,
            self.config.height if height is None else height,
            self.config.width if width is None else width,
        )
        return StreamingGenerator(
            self.transformer,
            self.vae,
            self.encode_prompt,
            schedule=self.scheduler.schedule,
            latent_size=(h, w),
            seed=seed,
            generator=generator,
            batch_size=batch_size,
            device=self.device,
            dtype=self.dtype,
            max_chunks=max_chunks,
            fps=self.config.fps if fps is None else fps,
            load_seconds=self.load_seconds,
        )

    def stream(
        self,
        prompt: str | list[str],
        *,
        generator: torch.Generator | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
    ) -> StreamingGenerator:
        """Pixel frames chunk by chunk as they are made: iterate the returned stream for `(b F 3 H W)` float32
        CPU frames per chunk (decoded before the chunk's context pass), `set_prompt(p)` between chunks to
        switch the prompt (KV re-cache), `timings` for the speeds so far.

        Args:
            prompt: The first prompt (one, or one per video).
            generator: Draws the noise (as `__call__` draws it; None: fresh OS entropy).
            num_frames: Pixel frames (`1 + 4k`, a chunk multiple); None: endless when the model has a
                rolling window and relative RoPE, else the pipeline's default length.
            height: Pixel height (default: the pipeline's).
            width: Pixel width (default: the pipeline's).
        """
        t_call = time.perf_counter()
        max_chunks = None
        if num_frames is None:
            try:
                check_stream_length(self.transformer.config, None)  # endless when the model allows it
            except ValueError:
                num_frames = self.config.num_frames
        if num_frames is not None:
            f, _, _ = self._check_size(
                num_frames,
                self.config.height if height is None else height,
                self.config.width if width is None else width,
            )
            max_chunks = f // self.num_frames_per_chunk
        batch = 1 if isinstance(prompt, str) else len(prompt)
        stream = self.stream_generator(
            generator=self._generators(generator, 1)[0],
            batch_size=batch,
            max_chunks=max_chunks,
            height=height,
            width=width,
        )
        stream.start_clock(t_call)
        stream.set_prompt(prompt)
        return stream


def vae_factors(vae: Any) -> tuple[int, int]:
    """`(temporal, spatial)` compression of a decoder in the slot (Wan's 4 and 8 when it does not say)."""
    return int(getattr(vae, "temporal_factor", 4)), int(getattr(vae, "spatial_factor", 8))


def _temporal(vae: Any) -> int:
    return vae_factors(vae)[0]


def _spatial(vae: Any) -> int:
    return vae_factors(vae)[1]


def _postprocess(video: torch.Tensor, output_type: str) -> Any:
    """`(b F 3 H W)` float in [0, 1] -> the requested type (diffusers' video layouts)."""
    if output_type == "pt":
        return video
    array = video.permute(0, 1, 3, 4, 2).cpu().numpy()  # (b F H W 3)
    if output_type == "np":
        return array
    from PIL import Image

    return [[Image.fromarray((frame * 255).round().astype("uint8")) for frame in clip] for clip in array]
