"""Frozen umT5 text encoder producing Wan's zero-padded prompt embeddings.

Shapes (einops): `b` prompts, `n` tokens (fixed `max_length`, 512 for Wan), `d` text width (4096, umT5-XXL).

Wan conditions on the encoder's last hidden state for the prompt's real tokens and zeros after them
(diffusers' `WanPipeline._get_t5_prompt_embeds`); we reproduce that exactly, prompt cleaning included.
"""

from __future__ import annotations

import html
import os
import re
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import transformers
from packaging.version import Version
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase, UMT5EncoderModel

from rfvideo.models.hub import resolve_pretrained

__all__ = ["TextEncoder", "clean_prompt", "validate_prompts"]

try:  # diffusers' Wan pipeline fixes mojibake with ftfy when it is installed; match it.
    import ftfy
except ImportError:  # pragma: no cover - depends on the environment
    ftfy = None

# transformers 4.56 renamed `torch_dtype` to `dtype` (the old name still works with a warning).
_DTYPE_KWARG = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def clean_prompt(text: str) -> str:
    """Wan's prompt cleaning: ftfy (if installed), double HTML unescape, whitespace collapsed and stripped."""
    if ftfy is not None:
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def validate_prompts(prompts: Sequence[str]) -> list[str]:
    """Check a batch of prompts and return it as a list.

    Raises:
        ValueError: `prompts` is a bare string or empty, or an entry is not a string or is blank.
    """
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise ValueError(f"prompts must be a list of strings, got {type(prompts).__name__}: {prompts!r:.80}")
    if len(prompts) == 0:
        raise ValueError("prompts must not be empty")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ValueError(f"prompt {i} must be a string, got {type(p).__name__}: {p!r:.80}")
        if not clean_prompt(p):
            raise ValueError(f"prompt {i} is empty or whitespace only: {p!r}")
    return list(prompts)


class TextEncoder(nn.Module):
    """Frozen umT5 encoder + tokenizer: prompts -> zero-padded embeddings and their token mask.

    Args:
        text_encoder: A built `UMT5EncoderModel` (any encoder returning `last_hidden_state` works).
        tokenizer: Its tokenizer (pads on the right).
        max_length: Fixed token length of the output (Wan: 512); longer prompts are truncated,
            counted in `num_truncated`, and warned about once per encoder.
        cache_size: Keep this many prompts' embeddings in an in-memory LRU cache (0: no cache).
    """

    def __init__(
        self,
        text_encoder: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_length: int = 512,
        cache_size: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be a non-negative int, got {cache_size!r}")
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.cache_size = cache_size
        self.num_truncated = 0
        """Prompts encoded so far that had more than `max_length` tokens (their tail was cut)."""
        self._warned_truncation = False
        # cleaned prompt -> (emb (n d), mask (n)); plain dict state, not module buffers, so it is
        # never saved into checkpoints.
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.requires_grad_(False)
        super().train(False)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike[str],
        *,
        subfolder: str | None = None,
        tokenizer_path_or_id: str | os.PathLike[str] | None = None,
        tokenizer_subfolder: str | None = None,
        max_length: int = 512,
        torch_dtype: torch.dtype | None = None,
        cache_size: int = 0,
        **kwargs: Any,
    ) -> TextEncoder:
        """Load `UMT5EncoderModel` and tokenizer from a local folder or hub id (no remote code).

        For a Wan diffusers folder: `from_pretrained(root, subfolder="text_encoder",
        tokenizer_subfolder="tokenizer", torch_dtype=torch.bfloat16)`.

        Args:
            path_or_id: Folder or hub id holding the encoder weights.
            subfolder: Subfolder of the encoder inside `path_or_id`.
            tokenizer_path_or_id: Where the tokenizer lives; default `path_or_id`.
            tokenizer_subfolder: Subfolder of the tokenizer; default `subfolder`.
            max_length: Fixed output token length.
            torch_dtype: Weights dtype (umT5-XXL in bf16 is about 11 GB).
            cache_size: In-memory LRU cache of prompt embeddings (0: off).
            **kwargs: Passed to `UMT5EncoderModel.from_pretrained`.
        """
        path_or_id = resolve_pretrained(path_or_id, what="umT5 text encoder")
        if tokenizer_path_or_id is not None:
            tokenizer_path_or_id = resolve_pretrained(tokenizer_path_or_id, what="umT5 tokenizer")
        kwargs.setdefault("trust_remote_code", False)
        model_kwargs: dict[str, Any] = dict(kwargs)
        if subfolder is not None:
            model_kwargs["subfolder"] = subfolder
        if torch_dtype is not None:
            model_kwargs[_DTYPE_KWARG] = torch_dtype
        model = UMT5EncoderModel.from_pretrained(path_or_id, **model_kwargs)
        tok_sub = subfolder if tokenizer_subfolder is None else tokenizer_subfolder
        tok_kwargs: dict[str, Any] = {"trust_remote_code": False}
        if tok_sub is not None:
            tok_kwargs["subfolder"] = tok_sub
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path_or_id or path_or_id, **tok_kwargs)
        return cls(model, tokenizer, max_length=max_length, cache_size=cache_size)

    def train(self, mode: bool = True) -> TextEncoder:
        """No-op: the encoder is frozen and stays in eval mode (no dropout) whatever Lightning asks."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.text_encoder.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.text_encoder.parameters()).dtype

    @property
    def dim(self) -> int:
        """Text width `d` (the encoder's `d_model`)."""
        return int(self.text_encoder.config.d_model)

    def clear_cache(self) -> None:
        self._cache.clear()

    def _count_truncated(self, cleaned: list[str]) -> None:
        """Count prompts longer than `max_length` tokens; warn the first time (silent truncation
        changes what the model is conditioned on)."""
        ids = self.tokenizer(cleaned, add_special_tokens=True, verbose=False).input_ids
        lengths = [len(row) for row in ids]
        long = [(p, n) for p, n in zip(cleaned, lengths) if n > self.max_length]
        if not long:
            return
        self.num_truncated += len(long)
        if not self._warned_truncation:
            self._warned_truncation = True
            prompt, n = long[0]
            warnings.warn(
                f"{len(long)} prompt(s) longer than the text encoder's {self.max_length} tokens are "
                f"truncated (e.g. {n} tokens: {prompt[:60]!r}...); later ones are only counted "
                "(TextEncoder.num_truncated)",
                stacklevel=5,  # the caller of encode(): here, _encode_uncached, no_grad's wrapper, encode
            )

    @torch.no_grad()
    def _encode_uncached(self, cleaned: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        self._count_truncated(cleaned)
        tokens = self.tokenizer(
            cleaned,
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        ids = tokens.input_ids.to(self.device)  # (b n)
        mask = tokens.attention_mask.to(self.device)  # (b n), 1 on real tokens (right padding)
        emb = self.text_encoder(ids, mask).last_hidden_state  # (b n d)
        # Wan keeps only each prompt's real tokens and zero-pads to max_length.
        emb = torch.where(mask.bool().unsqueeze(-1), emb, torch.zeros((), dtype=emb.dtype, device=emb.device))
        return emb, mask.bool()

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode prompts.

        Args:
            prompts: Non-empty list of non-blank strings.

        Returns:
            `(embeds (b n d), mask (b n) bool)`, n = `max_length`, on the encoder's device and dtype;
            `embeds` is exactly zero where `mask` is False.

        Raises:
            ValueError: A prompt is not a string or is blank (the message names its index).
        """
        cleaned = [clean_prompt(p) for p in validate_prompts(prompts)]
        if self.cache_size == 0:
            return self._encode_uncached(cleaned)
        missing = list(dict.fromkeys(p for p in cleaned if p not in self._cache))
        if missing:
            emb, mask = self._encode_uncached(missing)
            for p, e, m in zip(missing, emb, mask):
                self._cache[p] = (e, m)
        rows = []
        for p in cleaned:
            self._cache.move_to_end(p)
            rows.append(self._cache[p])
        embeds = torch.stack([e for e, _ in rows])
        mask = torch.stack([m for _, m in rows])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return embeds, mask

    def forward(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as `encode`."""
        return self.encode(prompts)
