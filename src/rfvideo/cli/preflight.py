"""Checks run on a parsed config before any weights load (at real size a load takes minutes and umT5
alone is 11 GB): every problem found is reported at once, in one `UsageError` line.

What is checked (under the config's `model` and `data`; the trainer's output folders are not inputs):
- frame count vs chunk size: `num_latent_frames` >= 1 and a multiple of the generator's
  `num_frames_per_chunk`;
- the optimizer's learning rate: a finite number > 0;
- every input path the config names (keys such as `path`, `checkpoint`, `init_checkpoint`,
  `med_config`, `tokenizer`, `train_prompts`, `train_shards`, `prompt_embeddings`): it exists; a value
  that can be a hub id goes through `rfvideo.models.hub.resolve_pretrained`;
- the RoPE length: `load_causal_wan`'s `config.json` (read alone, no weights) has a `rope_max_seq_len`
  that covers the requested frames and latent size;
- prompts missing from a precomputed embedding store (its `index.json` only).
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rfvideo.cli.errors import UsageError
from rfvideo.utils.config_nodes import init_args

__all__ = [
    "config_problems",
    "estimate_problems",
    "preflight_checkpoint",
    "preflight_config",
    "rope_problems",
]

# Keys whose string value is an input that may be a local folder or a hub id.
HUB_OR_PATH_KEYS = frozenset(
    {"path", "path_or_id", "clip_path_or_id", "processor_path", "tokenizer_path_or_id"}
)
# Keys whose string value is an input file or folder that must exist locally.
LOCAL_KEYS = frozenset(
    {
        "checkpoint", "init_checkpoint", "med_config", "tokenizer", "head_path", "full_info",
        "train_prompts", "val_prompts", "train_shards", "val_shards", "prompt_embeddings", "prompts_file",
    }
)  # fmt: skip
LOCAL_SUFFIXES = ("_checkpoint", "_ckpt", "_file", "_prompts", "_shards")
# Lightning's special `ckpt_path` values (not files).
CKPT_KEYWORDS = frozenset({"last", "best", "hpc", "registry"})


def preflight_checkpoint(path: str | os.PathLike[str], *, option: str = "--ckpt") -> None:
    """A checkpoint file exists, is not empty, is a torch checkpoint (zip or pickle) and, for torch's
    zip format, is not cut short and declares no more contents than it can hold uncompressed.

    Reads the zip directory only, never the tensors.
    """
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{option}: no such file: {str(p)!r}")
    if p.is_dir():
        raise UsageError(f"{option}: {str(p)!r} is a directory, expected a checkpoint file")
    size = p.stat().st_size
    if size == 0:
        raise UsageError(f"{option}: checkpoint {str(p)!r} is truncated: the file is empty (0 bytes)")
    with open(p, "rb") as fh:
        head = fh.read(2)
    if head == b"PK" and not zipfile.is_zipfile(p):
        raise UsageError(
            f"{option}: checkpoint {str(p)!r} is truncated ({size} bytes; its zip directory is missing)"
        )
    from rfvideo.utils.checkpoint import check_archive

    try:  # the directory only: a text file, a compressed archive (CRCs are checked when it loads)
        check_archive(p, verify_crc=False)
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None


def _as_dict(config: Any) -> dict[str, Any]:
    if hasattr(config, "as_dict"):  # jsonargparse Namespace
        return config.as_dict()
    return dict(config)


def _walk(node: Any, where: str) -> Iterator[tuple[str, str, Any]]:
    """(dotted location, key, value) of every leaf under `node`."""
    if isinstance(node, dict):
        for k, v in node.items():
            loc = f"{where}.{k}" if where else str(k)
            if isinstance(v, (dict, list)):
                yield from _walk(v, loc)
            else:
                yield loc, str(k), v
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{where}[{i}]")


def _path_problems(cfg: dict[str, Any]) -> list[str]:
    from rfvideo.models.hub import resolve_pretrained

    problems = []
    hub_checked: dict[str, str | None] = {}  # one hub question per distinct value (WAN is named thrice)
    for section in ("model", "data"):
        for loc, key, value in _walk(cfg.get(section), section):
            if not isinstance(value, str) or not value:
                continue
            local = key in LOCAL_KEYS or key.endswith(LOCAL_SUFFIXES)
            if local and not Path(value).expanduser().exists():
                problems.append(f"{loc}: no such file or folder: {value!r}")
            elif key in HUB_OR_PATH_KEYS:
                if value not in hub_checked:
                    try:
                        resolve_pretrained(value, what="")
                        hub_checked[value] = None
                    except ValueError as e:
                        hub_checked[value] = str(e).removeprefix(": ")
                if hub_checked[value] is not None:
                    problems.append(f"{loc}: {hub_checked[value]}")
    return problems


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _frame_and_lr_problems(cfg: dict[str, Any]) -> list[str]:
    problems = []
    model = init_args(cfg.get("model"))
    frames = model.get("num_latent_frames")
    chunk = init_args(model.get("generator")).get("num_frames_per_chunk")
    if frames is not None:
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            problems.append(f"model.init_args.num_latent_frames must be a positive integer, got {frames!r}")
        elif isinstance(chunk, int) and chunk >= 1 and frames % chunk:
            problems.append(
                f"model.init_args.num_latent_frames={frames} is not a multiple of the generator's "
                f"num_frames_per_chunk={chunk}"
            )
    optimizer = model.get("optimizer")
    if isinstance(optimizer, dict) and "lr" in init_args(optimizer):
        lr = init_args(optimizer)["lr"]
        value = _number(lr)
        if value is None or not math.isfinite(value) or value <= 0:
            problems.append(f"model.init_args.optimizer.init_args.lr must be a finite number > 0, got {lr!r}")
    return problems


def _transformer_config(generator: Any) -> tuple[dict[str, Any], Path] | None:
    """`config.json` of a `load_causal_wan` generator with a local folder, else None."""
    if not isinstance(generator, dict) or not str(generator.get("class_path", "")).endswith(
        "load_causal_wan"
    ):
        return None
    args = init_args(generator)
    path = args.get("path")
    if not isinstance(path, str) or not Path(path).expanduser().is_dir():
        return None
    folder = Path(path).expanduser() / (args.get("subfolder") or "")
    file = folder / "config.json"
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text(encoding="utf-8")), file
    except (OSError, ValueError):
        return None  # the loader reports an unreadable config with its own message


def _rope_problems(cfg: dict[str, Any]) -> list[str]:
    model = init_args(cfg.get("model"))
    generator = model.get("generator")
    found = _transformer_config(generator)
    if found is None:
        return []
    config, file = found
    config = {**config, **init_args(generator)}  # the loader's causal options override config.json's
    return rope_problems(config, model.get("num_latent_frames"), model.get("latent_size"), str(file))


def rope_problems(config: dict[str, Any], frames: Any, size: Any, source: str) -> list[str]:
    """Latent frames / height / width needing more RoPE positions than the transformer `config` has.

    The frame count follows the model's own rule (`CausalOptions.rope_frames_needed`: relative RoPE with
    a rolling window needs only the window), read from the causal options in `config`.
    """
    from rfvideo.models.causal_options import CausalOptions

    if not isinstance(frames, int) or isinstance(frames, bool):
        return []
    rope = int(config.get("rope_max_seq_len", 1024))
    patch = config.get("patch_size") or (1, 2, 2)
    try:
        opts = CausalOptions.from_config(config)
    except (TypeError, ValueError):
        opts = CausalOptions()  # the loader reports bad causal options with its own message
    positions = {"latent frames": opts.rope_frames_needed(math.ceil(frames / int(patch[0])))}
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) for s in size):
        positions["latent height"] = math.ceil(size[0] / int(patch[1]))
        positions["latent width"] = math.ceil(size[1] / int(patch[2]))
    return [
        f"{what} need {n} RoPE positions but {source} has rope_max_seq_len={rope}"
        for what, n in positions.items()
        if n is not None and n > rope
    ]


# Lightning's precision names (Trainer(precision=...)), as strings.
PRECISIONS = frozenset(
    {"64", "64-true", "32", "32-true", "16", "16-mixed", "16-true", "bf16", "bf16-mixed", "bf16-true",
     "transformer-engine", "transformer-engine-float16"}
)  # fmt: skip


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def estimate_problems(
    cfg: dict[str, Any], transformer_config: dict[str, Any] | None, source: str
) -> list[str]:
    """What `fit`'s preflight would refuse in a config `estimate-memory` reads (its YAML, unparsed), plus
    the numbers the estimate itself reads: sizes, precision, EMA decay, LoRA rank, devices.

    Args:
        cfg: the merged YAML mapping.
        transformer_config: the generator's config.json (from its folder or a preset), for the RoPE check.
        source: where that config came from (named in the RoPE message).
    """
    problems = _frame_and_lr_problems(cfg)
    model = init_args(cfg.get("model"))
    trainer = cfg.get("trainer") or {}
    data = init_args(cfg.get("data"))
    size = model.get("latent_size")
    if size is not None and not (
        isinstance(size, (list, tuple)) and len(size) == 2 and all(_positive_int(v) for v in size)
    ):
        problems.append(f"model.init_args.latent_size must be [h, w] with positive integers, got {size!r}")
    decay = model.get("ema_decay")
    if decay is not None and (_number(decay) is None or not 0.0 <= float(decay) < 1.0):
        problems.append(f"model.init_args.ema_decay must lie in [0, 1) or be null, got {decay!r}")
    lora = model.get("generator_lora")
    if isinstance(lora, dict) and "rank" in lora and not _positive_int(lora["rank"]):
        problems.append(
            f"model.init_args.generator_lora.rank must be a positive integer, got {lora['rank']!r}"
        )
    precision = trainer.get("precision")
    if precision is not None and str(precision) not in PRECISIONS:
        problems.append(
            f"trainer.precision {str(precision)!r} is not a precision (use e.g. 32-true, bf16-mixed)"
        )
    devices = trainer.get("devices")
    device_list = isinstance(devices, list) and bool(devices) and all(_positive_int(d + 1) for d in devices)
    if devices is not None and not (_positive_int(devices) or devices in ("auto", -1) or device_list):
        problems.append(f"trainer.devices must be a positive integer (GPUs per node), got {devices!r}")
    batch = data.get("batch_size")
    if batch is not None and not _positive_int(batch):
        problems.append(f"data.init_args.batch_size must be a positive integer, got {batch!r}")
    if transformer_config is not None and not problems:
        config = {**transformer_config, **init_args(model.get("generator"))}  # loader args override
        problems += rope_problems(config, model.get("num_latent_frames"), size, source)
    return problems


def _store_problems(cfg: dict[str, Any]) -> list[str]:
    data = init_args(cfg.get("data"))
    store = data.get("prompt_embeddings")
    if not isinstance(store, str):
        return []
    index_file = Path(store) / "index.json"
    if not index_file.is_file():
        return [f"data.init_args.prompt_embeddings: {store!r} has no index.json (not an embedding store)"]
    try:
        known = set(json.loads(index_file.read_text(encoding="utf-8")).get("prompts", {}))
    except (OSError, ValueError) as e:
        return [f"data.init_args.prompt_embeddings: unreadable {str(index_file)!r} ({e})"]
    from rfvideo.data.prompts import load_prompts
    from rfvideo.models.text_encoder import clean_prompt

    problems = []
    field = data.get("prompt_field") or "prompt"
    for key in ("train_prompts", "val_prompts"):
        source = data.get(key)
        if not isinstance(source, str) or not Path(source).is_file():
            continue
        prompts = load_prompts(source, field=field).prompts
        missing = [p for p in dict.fromkeys(prompts) if clean_prompt(p) not in known]
        if missing:
            problems.append(
                f"data.init_args.prompt_embeddings: {len(missing)} of the prompts in {source!r} are not in "
                f"the store {store!r} (first: {missing[0][:60]!r}); rerun rfvideo precompute embeddings"
            )
    return problems


def config_problems(config: Any) -> list[str]:
    """Every problem found in one subcommand's parsed config (empty: good to build)."""
    cfg = _as_dict(config)
    problems = _frame_and_lr_problems(cfg) + _path_problems(cfg)
    if not problems:  # the RoPE and store checks read the files the path check vouched for
        problems = _rope_problems(cfg) + _store_problems(cfg)
    return problems


def preflight_config(config: Any) -> None:
    """Raise one `UsageError` listing every problem of a parsed LightningCLI config (see the module doc)."""
    problems = config_problems(config)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UsageError(f"config: {'; '.join(problems[:3])}{more}")
