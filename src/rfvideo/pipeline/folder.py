"""The pipeline folder: `model_index.json` + one subfolder per component, written and read back exactly.

    model_index.json     {"_class_name": "RFVideoPipeline", "transformer": ["<module>", "<Class>"], ...,
                          "num_frames": 81, "height": 480, "width": 832, "fps": 16.0,
                          "_rfvideo": {"text_encoder": {"max_length": 512}, "references": {...},
                                       "digests": {"<file>.safetensors": sha256, ...}}}
    transformer/         config.json + diffusion_pytorch_model.safetensors (diffusers' own layout, so
                         `WanTransformer3DModel.from_pretrained(DIR, subfolder="transformer")` reads it too)
    vae/  text_encoder/  tokenizer/  scheduler/

The layout is diffusers' (a Wan2.1 diffusers folder has the same subfolders); the component entries name
the full module path of each class, so that loading checks every class against `ALLOWED_CLASSES` (plus the
caller's `allow_classes`) before importing anything a folder names. A component may be a *reference*
instead of a copy (`references`: a folder or hub id and its subfolder), which keeps umT5-XXL (11 GB) where
it is. Every safetensors file written gets a SHA-256 in the index; loading verifies it before reading a
weight. Loading is strict: an unknown class, a file of another class, a missing or an extra weight is one
`ValueError`, never a warning and a model with missing pieces.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from rfvideo.utils.digests import record_digests, verify_digests

__all__ = [
    "ALLOWED_CLASSES",
    "INDEX_NAME",
    "allow_class",
    "load_pipeline",
    "read_index",
    "save_converted",
    "save_pipeline",
]

INDEX_NAME = "model_index.json"
PIPELINE_CLASS = "RFVideoPipeline"
COMPONENTS = ("transformer", "vae", "scheduler", "text_encoder", "tokenizer")
SETTINGS = ("num_frames", "height", "width", "fps")

#: Classes a folder may name, per component, as "module.Class" (one registry for the family; extend it with
#: `allow_class` or per call with `allow_classes`).
ALLOWED_CLASSES: dict[str, set[str]] = {
    "transformer": {
        "rfvideo.models.causal_wan.CausalWanTransformer",
        "rfvideo.models.positioned_wan.PositionedCausalWan",
    },
    "vae": {
        "rfvideo.models.vae.WanVAE",
        "rfvideo.demo.world.keyframe_codec.KeyframeCodec",
        "rfvideo.demo.world.codec.PoolingVideoCodec",
        "rfvideo.decoders.tiny.TinyVideoDecoder",
    },
    "text_encoder": {
        "transformers.UMT5EncoderModel",
        "transformers.T5EncoderModel",
        "transformers.BertModel",
    },
    "tokenizer": {
        "transformers.T5TokenizerFast",
        "transformers.T5Tokenizer",
        "transformers.ByT5Tokenizer",
        "transformers.PreTrainedTokenizerFast",
        "transformers.TokenizersBackend",  # transformers 5's name of PreTrainedTokenizerFast
        "transformers.BertTokenizerFast",
        "transformers.BertTokenizer",
    },
    "scheduler": {"rfvideo.pipeline.scheduler.FewStepFlowScheduler"},
}


def allow_class(component: str, qualified_name: str) -> None:
    """Let folders name `qualified_name` ("module.Class") for `component` (e.g. your own decoder)."""
    if component not in ALLOWED_CLASSES:
        raise ValueError(f"unknown component {component!r}; one of {sorted(ALLOWED_CLASSES)}")
    ALLOWED_CLASSES[component].add(qualified_name)


def _qualified(obj: Any) -> str:
    cls = type(obj)
    if cls.__module__.startswith("transformers."):
        return f"transformers.{cls.__name__}"  # transformers exports every model and tokenizer at the top
    return f"{cls.__module__}.{cls.__name__}"


def _first_nonfinite(module: torch.nn.Module) -> str | None:
    for name, t in module.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


# ---------------------------------------------------------------------- save
def save_pipeline(pipe: Any, directory: str | os.PathLike[str], *, references: Mapping[str, Any]) -> None:
    """Write `pipe` as a pipeline folder (see the module docstring).

    Raises:
        ValueError: the folder exists and is not empty, a component cannot be written (no `save_pretrained`),
            a reference names an unknown component, or the transformer holds a non-finite weight (named).
    """
    text = pipe.text_encoder
    objects = {
        "transformer": pipe.transformer,
        "vae": pipe.vae,
        "scheduler": pipe.scheduler,
        "text_encoder": None if text is None else text.text_encoder,  # the transformers model inside
        "tokenizer": None if text is None else text.tokenizer,
    }
    entries = {name: (None if obj is None else _qualified(obj), obj) for name, obj in objects.items()}
    text_meta = (
        None if text is None else {"max_length": int(text.max_length), "cache_size": int(text.cache_size)}
    )
    _write_folder(directory, entries, references, {k: pipe.config[k] for k in SETTINGS}, text_meta)


def save_converted(
    transformer: Any,
    scheduler: Any,
    directory: str | os.PathLike[str],
    *,
    wan: str | os.PathLike[str],
    settings: Mapping[str, Any] | None = None,
) -> None:
    """A converted generator as a pipeline folder whose VAE, text encoder and tokenizer are references to a
    Wan2.1 diffusers folder (or hub id) `wan`; their classes are read from its `model_index.json`
    (diffusers' `AutoencoderKLWan` sits in the slot as rfvideo's `WanVAE`). Loads nothing heavy.

    Raises:
        ValueError: `wan` has no readable `model_index.json`, or it names a text encoder / tokenizer class
            the loader would refuse.
    """
    root = _local_folder_of_index(wan)
    try:
        wan_index = json.loads((root / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"--wan {os.fspath(wan)!r}: no readable {INDEX_NAME} ({e})") from None
    entries: dict[str, tuple[str | None, Any]] = {
        "transformer": (_qualified(transformer), transformer),
        "scheduler": (_qualified(scheduler), scheduler),
        "vae": ("rfvideo.models.vae.WanVAE", None),
    }
    for name in ("text_encoder", "tokenizer"):
        library, cls = wan_index.get(name, [None, None])
        qualified = f"{library}.{cls}"
        if qualified not in ALLOWED_CLASSES[name]:
            raise ValueError(f"--wan {os.fspath(wan)!r}: its {name} is {qualified!r}, not an allowed class")
        entries[name] = (qualified, None)
    refs = {name: (os.fspath(wan), name) for name in ("vae", "text_encoder", "tokenizer")}
    defaults = {"num_frames": 81, "height": 480, "width": 832, "fps": 16.0} | dict(settings or {})
    _write_folder(directory, entries, refs, defaults, {"max_length": 512, "cache_size": 0})


def _local_folder_of_index(path_or_id: str | os.PathLike[str]) -> Path:
    """A local folder holding `path_or_id`'s `model_index.json` (a hub id: that one file is fetched)."""
    from rfvideo.models.hub import resolve_pretrained

    resolved = resolve_pretrained(path_or_id, what="Wan2.1 folder")
    if Path(resolved).exists():
        return Path(resolved)
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(resolved, INDEX_NAME)).parent


def _write_folder(
    directory: str | os.PathLike[str],
    entries: Mapping[str, tuple[str | None, Any]],
    references: Mapping[str, Any],
    settings: Mapping[str, Any],
    text_meta: Mapping[str, Any] | None,
) -> None:
    """Write each component (a copy, or a reference for those in `references`), the digests, the index."""
    root = Path(directory)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"{str(root)!r} exists and is not an empty folder")
    unknown = sorted(set(references) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"references name unknown components {unknown}; components are {list(COMPONENTS)}")
    bad = _first_nonfinite(entries["transformer"][1])
    if bad is not None:
        raise ValueError(f"the transformer's weight {bad!r} holds NaN/Inf; refusing to write it")
    index: dict[str, Any] = {"_class_name": PIPELINE_CLASS, "_diffusers_version": _diffusers_version()}
    meta: dict[str, Any] = {"references": {}, "digests": {}}
    if text_meta is not None:
        meta["text_encoder"] = dict(text_meta)
    root.mkdir(parents=True, exist_ok=True)
    for name in COMPONENTS:
        qualified, obj = entries.get(name, (None, None))
        if qualified is None:
            index[name] = [None, None]
            continue
        index[name] = list(qualified.rsplit(".", 1))
        if name in references:
            path, subfolder = references[name]
            meta["references"][name] = {"path": os.fspath(path), "subfolder": subfolder}
            continue
        save = getattr(obj, "save_pretrained", None)
        if not callable(save):
            raise ValueError(
                f"component {name} ({qualified}) has no save_pretrained(); pass it as a reference"
            )
        if name in ("transformer", "text_encoder"):
            save(root / name, safe_serialization=True)
        else:
            save(root / name)
    meta["digests"] = record_digests(root)
    index |= {key: settings[key] for key in SETTINGS}
    index["_rfvideo"] = meta
    tmp = root / (INDEX_NAME + ".tmp")
    tmp.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    tmp.replace(root / INDEX_NAME)  # the index last: a folder without it is visibly unfinished


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


# ---------------------------------------------------------------------- load
def _local_folder(path_or_id: str | os.PathLike[str]) -> Path:
    """A local pipeline folder, or a hub id's snapshot (weights as safetensors only, never pickles)."""
    from rfvideo.models.hub import resolve_pretrained

    resolved = resolve_pretrained(path_or_id, what="RFVideoPipeline")
    if Path(resolved).exists():
        return Path(resolved)
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*"]
    return Path(snapshot_download(resolved, allow_patterns=patterns))


def read_index(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The folder's `model_index.json`, checked to be an `RFVideoPipeline` index.

    Raises:
        ValueError: no index (naming the folder and what it holds instead), not JSON, or another pipeline.
    """
    root = Path(folder)
    path = root / INDEX_NAME
    if not path.is_file():
        hint = ""
        if (root / "config.json").is_file() and any(root.glob("*.safetensors")):
            hint = " (it holds a single model: load it with CausalWanTransformer.from_pretrained)"
        raise ValueError(f"{str(root)!r} has no {INDEX_NAME}: not a pipeline folder{hint}")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(index, dict) or index.get("_class_name") != PIPELINE_CLASS:
        got = index.get("_class_name") if isinstance(index, dict) else type(index).__name__
        raise ValueError(f"{str(path)!r} describes {got!r}, not an {PIPELINE_CLASS} folder")
    return index


def _checked_classes(index: Mapping[str, Any], allow_classes: Sequence[str]) -> dict[str, str | None]:
    """`{component: "module.Class" or None}`, every class allowed; checked before anything is imported."""
    extra = set(allow_classes)
    known = set(COMPONENTS) | set(SETTINGS)
    stray = sorted(k for k in index if not k.startswith("_") and k not in known)
    if stray:
        raise ValueError(f"{INDEX_NAME} names unknown entries {stray}")
    out: dict[str, str | None] = {}
    for name in COMPONENTS:
        entry = index.get(name, [None, None])
        if not isinstance(entry, list) or len(entry) != 2:
            raise ValueError(f"{INDEX_NAME}: {name} must be [module, class], got {entry!r}")
        if entry == [None, None]:
            if name in ("transformer", "vae", "scheduler"):
                raise ValueError(f"{INDEX_NAME}: the pipeline needs a {name}")
            out[name] = None
            continue
        qualified = f"{entry[0]}.{entry[1]}"
        if qualified not in ALLOWED_CLASSES[name] and qualified not in extra:
            raise ValueError(
                f"{INDEX_NAME}: {name} class {qualified!r} is not allowed; allowed: "
                f"{sorted(ALLOWED_CLASSES[name])} (or pass allow_classes=[{qualified!r}] if you trust it)"
            )
        out[name] = qualified
    return out


def _import(qualified: str) -> Any:
    module, name = qualified.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def _own_aligned_memory(model: torch.nn.Module) -> None:
    """Give every tensor that lies at an unaligned address (a view into the weight file's memory map) its
    own allocation: CPU kernels take other code paths on unaligned data and round differently, so the
    loaded model would not reproduce the saved one bit for bit."""
    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            if t.data_ptr() % 64:
                t.data = t.data.clone()


def _strict_transformer(model: torch.nn.Module, folder: Path, qualified: str) -> None:
    """Every weight file key is a parameter of the model and every parameter has one (no lossy load)."""
    from safetensors import safe_open

    keys: set[str] = set()
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{str(folder)!r} holds no .safetensors weights")
    for f in files:
        with safe_open(f, "pt") as fh:
            keys.update(fh.keys())
    want = set(model.state_dict())
    extra, missing = sorted(keys - want), sorted(want - keys)
    if extra or missing:
        what = f"extra weights {extra[:3]}" if extra else f"missing weights {missing[:3]}"
        raise ValueError(f"transformer ({qualified}) does not match {str(folder)!r}: {what}")


def _component_source(root: Path, name: str, meta: Mapping[str, Any]) -> tuple[str, str | None]:
    ref = meta.get("references", {}).get(name)
    if ref is None:
        return str(root), name
    from rfvideo.models.hub import resolve_pretrained

    return resolve_pretrained(ref["path"], what=f"{name} reference"), ref.get("subfolder")


def load_pipeline(
    cls: type,
    path_or_id: str | os.PathLike[str],
    *,
    torch_dtype: torch.dtype | None,
    allow_classes: Sequence[str],
) -> Any:
    """Read a pipeline folder back into `cls` (an `RFVideoPipeline`); see the module docstring."""
    root = _local_folder(path_or_id)
    index = read_index(root)
    classes = _checked_classes(index, allow_classes)
    meta = index.get("_rfvideo") or {}
    verify_digests(root, meta.get("digests", {}))
    from rfvideo.models.text_encoder import TextEncoder

    built: dict[str, Any] = {}
    for name in ("transformer", "vae", "scheduler", "text_encoder", "tokenizer"):
        qualified = classes[name]
        if qualified is None:
            built[name] = None
            continue
        base, sub = _component_source(root, name, meta)
        comp_cls = _import(qualified)
        if name == "transformer":
            config = json.loads((Path(base) / (sub or "") / "config.json").read_text(encoding="utf-8"))
            if config.get("_class_name") not in (comp_cls.__name__, "WanTransformer3DModel"):
                raise ValueError(
                    f"transformer config is a {config.get('_class_name')!r}; the index says {qualified!r}"
                )
            model = comp_cls.from_pretrained(base, subfolder=sub, torch_dtype=torch_dtype)
            _strict_transformer(model, Path(base) / (sub or ""), qualified)
            _own_aligned_memory(model)
            built[name] = model.eval()
        elif name == "text_encoder":
            kwargs = {"subfolder": sub, "use_safetensors": True, "trust_remote_code": False}
            if torch_dtype is not None:
                kwargs["dtype"] = torch_dtype
            built[name] = comp_cls.from_pretrained(base, **kwargs).eval()
            _own_aligned_memory(built[name])
        elif name == "tokenizer":
            built[name] = comp_cls.from_pretrained(base, subfolder=sub, trust_remote_code=False)
        else:
            built[name] = comp_cls.from_pretrained(base, subfolder=sub)
    text = None
    if built["text_encoder"] is not None:
        if built["tokenizer"] is None:
            raise ValueError(f"{INDEX_NAME}: a text_encoder needs its tokenizer")
        opts = meta.get("text_encoder", {})
        text = TextEncoder(
            built["text_encoder"],
            built["tokenizer"],
            max_length=int(opts.get("max_length", 512)),
            cache_size=int(opts.get("cache_size", 0)),
        )
    settings = {k: index[k] for k in SETTINGS if k in index}
    return cls(
        transformer=built["transformer"],
        vae=built["vae"],
        scheduler=built["scheduler"],
        text_encoder=text,
        **settings,
    )
