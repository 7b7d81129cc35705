"""Exact, offline token counts for the two encodings our models use.

The tokenizer is OpenAI's own ``tiktoken`` (its Rust BPE core), but its vocabularies are
not downloaded at run time: the two ``.tiktoken`` files ship gzipped in ``ai_openai/data/``
and are checked at load against the SHA-256 that ``tiktoken_ext.openai_public`` pins for
them, so a corrupted or substituted file fails loudly instead of miscounting. The split
patterns and special tokens below are those of ``tiktoken_ext.openai_public`` (tiktoken
0.14); a test asserts they stay identical. Nothing here touches the network, and
``TIKTOKEN_CACHE_DIR`` is never read.

Chat overhead follows OpenAI's cookbook ("How to count tokens with tiktoken"), whose
formula matched the API's ``usage.prompt_tokens`` for gpt-4 (cl100k_base) and gpt-4o
(o200k_base): 3 tokens per message, +1 when the message has a ``name``, +3 priming the
reply; tool definitions use the cookbook's ``num_tokens_for_tools`` constants. The counts
are exact for what they cover; the provider's ``usage`` block stays the source of truth
after a call.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import threading
from collections.abc import Iterable, Mapping
from enum import StrEnum
from importlib import resources
from typing import Any

import tiktoken


class Encoding(StrEnum):
    O200K_BASE = "o200k_base"
    CL100K_BASE = "cl100k_base"


# SHA-256 of the uncompressed vocabulary files, as pinned by tiktoken_ext.openai_public.
VOCAB_SHA256 = {
    Encoding.O200K_BASE: "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    Encoding.CL100K_BASE: "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}

PATTERNS = {
    Encoding.O200K_BASE: "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
    Encoding.CL100K_BASE: (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+"""
        r"""| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
}

SPECIAL_TOKENS = {
    Encoding.O200K_BASE: {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    Encoding.CL100K_BASE: {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
}

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

# Cookbook `num_tokens_for_tools` constants, per encoding (o200k: gpt-4o family; cl100k: gpt-4).
_TOOL_FUNC_INIT = {Encoding.O200K_BASE: 7, Encoding.CL100K_BASE: 10}
_TOOL_PROP_INIT = 3
_TOOL_PROP_KEY = 3
_TOOL_ENUM_INIT = -3
_TOOL_ENUM_ITEM = 3
_TOOL_FUNC_END = 12

_encoders: dict[Encoding, tiktoken.Encoding] = {}
_lock = threading.Lock()


class VocabularyError(RuntimeError):
    """A bundled vocabulary file is missing or does not match its pinned hash."""


def load_mergeable_ranks(encoding: str) -> dict[bytes, int]:
    """The ``{token bytes: rank}`` table of ``encoding`` from the bundled, hash-checked file."""
    enc = Encoding(encoding)
    raw = gzip.decompress(
        resources.files("ai_openai").joinpath(f"data/{enc.value}.tiktoken.gz").read_bytes()
    )
    if hashlib.sha256(raw).hexdigest() != VOCAB_SHA256[enc]:
        raise VocabularyError(f"Bundled {enc.value} vocabulary does not match its pinned hash.")
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def get_encoder(encoding: str) -> tiktoken.Encoding:
    """The tiktoken encoder for ``encoding`` ("o200k_base" | "cl100k_base"), built once.

    Raises ValueError for any other name. Thread-safe; the first call per encoding reads
    and verifies the vocabulary (a few hundred milliseconds), later calls are free.
    """
    enc = Encoding(encoding)
    encoder = _encoders.get(enc)
    if encoder is not None:
        return encoder
    with _lock:
        encoder = _encoders.get(enc)
        if encoder is None:
            encoder = tiktoken.Encoding(
                name=enc.value,
                pat_str=PATTERNS[enc],
                mergeable_ranks=load_mergeable_ranks(enc),
                special_tokens=SPECIAL_TOKENS[enc],
            )
            _encoders[enc] = encoder
    return encoder


def count_text_tokens(text: str, encoding: str) -> int:
    """Number of tokens of ``text`` in ``encoding``.

    Special-token strings such as ``<|endoftext|>`` in user text are counted as ordinary
    text, which is how the API treats message content.
    """
    if not text:
        return 0
    return len(get_encoder(encoding).encode_ordinary(text))


def _content_tokens(content: Any, encoding: str) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text_tokens(content, encoding)
    return sum(count_text_tokens(part.get("text") or "", encoding) for part in content)


def count_message_tokens(messages: Iterable[Mapping[str, Any]], *, encoding: str) -> int:
    """Prompt tokens of chat ``messages`` (already validated) in ``encoding``.

    Per message: 3 + role + content (a string, or the sum of its text parts) + ``name``
    (+1) + ``tool_call_id``; an assistant's ``tool_calls`` add their function names and
    argument strings. Then +3 for the reply priming. This is the cookbook formula, which
    encodes every string value of a message; keys it does not know are ignored.
    """
    total = 0
    for message in messages:
        total += TOKENS_PER_MESSAGE
        total += count_text_tokens(message.get("role") or "", encoding)
        total += _content_tokens(message.get("content"), encoding)
        if message.get("name"):
            total += count_text_tokens(message["name"], encoding) + TOKENS_PER_NAME
        if message.get("tool_call_id"):
            total += count_text_tokens(message["tool_call_id"], encoding)
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            total += count_text_tokens(function.get("name") or "", encoding)
            total += count_text_tokens(function.get("arguments") or "", encoding)
    return total + REPLY_PRIMING_TOKENS


def count_tools_tokens(tools: Iterable[Mapping[str, Any]] | None, *, encoding: str) -> int:
    """Prompt tokens added by function ``tools`` definitions (cookbook ``num_tokens_for_tools``).

    Counts each function's ``name:description`` and each top-level property's
    ``name:type:description`` and enum items; nested schemas beyond the top-level
    properties are not modelled by the formula. 0 when there are no tools.
    """
    tools = list(tools or [])
    if not tools:
        return 0
    enc = Encoding(encoding)
    total = 0
    for tool in tools:
        function = tool.get("function") or {}
        total += _TOOL_FUNC_INIT[enc]
        description = (function.get("description") or "").removesuffix(".")
        total += count_text_tokens(f"{function.get('name', '')}:{description}", enc)
        properties = (function.get("parameters") or {}).get("properties") or {}
        if properties:
            total += _TOOL_PROP_INIT
            for key, spec in properties.items():
                spec = spec if isinstance(spec, Mapping) else {}
                total += _TOOL_PROP_KEY
                if "enum" in spec:
                    total += _TOOL_ENUM_INIT
                    for item in spec["enum"]:
                        total += _TOOL_ENUM_ITEM + count_text_tokens(str(item), enc)
                p_type = spec.get("type", "")
                p_desc = (spec.get("description") or "").removesuffix(".")
                total += count_text_tokens(f"{key}:{p_type}:{p_desc}", enc)
    return total + _TOOL_FUNC_END


def count_prompt_tokens(
    *,
    messages: Iterable[Mapping[str, Any]],
    tools: Iterable[Mapping[str, Any]] | None = None,
    encoding: str,
) -> int:
    """Prompt tokens of a chat request: messages plus tool definitions."""
    return count_message_tokens(messages, encoding=encoding) + count_tools_tokens(
        tools, encoding=encoding
    )
