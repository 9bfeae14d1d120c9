"""jsonargparse / LightningCLI parse errors as one line naming the key and its nearest valid spelling.

LightningCLI prints its whole usage (dozens of lines) and, for a misspelt `init_args` key, a dump of the
entire config. Here the error's structure is read instead: the chain of `Parser key "..."` /
`class_path '...'` lines gives the dotted key, the class that refused it gives the valid names (its
signature, and its parents' while it takes `**kwargs`), `difflib` the nearest one. Values given by the
user are never repeated (they can be long).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["config_error_line", "init_arg_names"]

_UNRECOGNIZED = re.compile(r"unrecognized arguments: (\S+)")
_PARSER_KEY = re.compile(r'Parser key "([\w.]+)"')
_CLASS_PATH = re.compile(r"class_path '([\w.]+)'")
_OPTION = re.compile(
    r"Option '(\w+)' is not accepted|Key '([\w.]+)' is not expected|No action for key \"([\w.]+)\""
)
_NOISE = ("Given value", "Subtypes:", "Does not validate", "Errors:", "- Expected a <class 'NoneType'>")


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def init_arg_names(class_path: str) -> list[str]:
    """The keyword names `class_path` accepts: its signature, plus its bases' while it takes **kwargs."""
    try:
        obj = _import(class_path)
    except Exception:  # unknown class: no suggestions
        return []
    targets = [c.__init__ for c in inspect.getmro(obj) if c is not object] if inspect.isclass(obj) else [obj]
    names: list[str] = []
    for fn in targets:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            break
        names += [
            p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"
        ]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return sorted(set(names))


def _nearest(name: str, candidates: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def _first_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines()]
    kept = " ".join(line.removeprefix("- ") for line in lines if line and not line.startswith(_NOISE))
    return kept if len(kept) <= 300 else kept[:297] + "..."


def config_error_line(message: str, option_strings: Iterable[str] = ()) -> str:
    """One line for a config / command-line parse error.

    Args:
        message: the parser's error text (`argparse.ArgumentError` from jsonargparse).
        option_strings: the subcommand's `--dotted.options`, for suggestions on unrecognized arguments.

    Returns:
        e.g. "unknown option '--trainer.max_stepz'; did you mean '--trainer.max_steps'?" or
        "config key 'model.init_args.ema_decayy' is not accepted by rfvideo.modules.RewardForcingModule;
        did you mean 'model.init_args.ema_decay'?"; otherwise the message's first lines, without dumps.
    """
    unknown = _UNRECOGNIZED.search(message)
    if unknown:
        name = unknown.group(1).split("=", 1)[0]
        near = _nearest(name, option_strings) if name.startswith("--") else None
        hint = f"; did you mean {near!r}?" if near else " (see rfvideo fit --help)"
        return f"unknown option {name!r}{hint}"
    option = _OPTION.search(message)
    keys, classes = _PARSER_KEY.findall(message), _CLASS_PATH.findall(message)
    if option and keys and classes:
        bad = next(g for g in option.groups() if g)
        parts: list[str] = []
        for key, _cls in zip(keys, classes, strict=False):
            parts += [key, "init_args"]
        prefix = ".".join(parts[: 2 * min(len(keys), len(classes))])
        owner = classes[min(len(keys), len(classes)) - 1]
        near = _nearest(bad.rsplit(".", 1)[-1], init_arg_names(owner))
        hint = f"; did you mean '{prefix}.{near}'?" if near else f"; see the signature of {owner}"
        return f"config key '{prefix}.{bad}' is not accepted by {owner}{hint}"
    if option:
        bad = next(g for g in option.groups() if g)
        near = _nearest(bad, [o.removeprefix("--") for o in option_strings])
        hint = f"; did you mean '{near}'?" if near else ""
        return f"config key '{bad}' is not accepted{hint}"
    return _first_line(message)
