"""The splitters' promises on small, readable inputs; counters; the CLI command."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from roadworthy.chunking import (
    EstimateCounter,
    TiktokenCounter,
    chunk,
    detect_kind,
    get_counter,
)
from roadworthy.chunking.markdown import parse_blocks
from roadworthy.cli.chunk import chunk_command
from roadworthy.errors import ConfigError

EST = EstimateCounter()

MD = """\
# Guide

Intro paragraph one. It has two sentences.

## Install

Run this:

```bash
pip install roadworthy
echo done

echo still inside the fence
```

| option | meaning |
|--------|---------|
| a      | first   |
| b      | second  |

## Use

### Details

Some words here.
"""


def test_estimate_rules_are_the_documented_ones() -> None:
    assert EST.count("information") == 3
    assert EST.count("the 12345 中文 😀, é") == 1 + 2 + 2 + 1 + 1 + 1
    assert EST.count("  \n\t ") == 0
    assert EST.count_batch(["a b", "ab"]) == [2, 1]


def test_markdown_blocks_fences_tables_and_headings() -> None:
    kinds = [(b.kind, b.level) for b in parse_blocks(MD)]
    assert kinds == [
        ("heading", 1),
        ("paragraph", 0),
        ("heading", 2),
        ("paragraph", 0),
        ("code", 0),
        ("table", 0),
        ("heading", 2),
        ("heading", 3),
        ("paragraph", 0),
    ]


@pytest.mark.parametrize("limit", [12, 16, 20, 30, 60])
def test_markdown_never_splits_a_fence_or_table_that_fits(limit: int) -> None:
    fence = MD.index("```bash")
    fence_end = MD.index("```\n", fence + 3) + 3
    table = MD.index("| option")
    table_end = MD.index("| b      | second  |") + len("| b      | second  |")
    chunks = chunk(MD, limit, kind="markdown", counter=EST)
    for c in chunks:
        for a, b in ((fence, fence_end), (table, table_end)):
            if EST.count(MD[a:b]) <= limit:
                assert c.end <= a or c.start >= b or (c.start <= a and b <= c.end), c
        assert c.tokens <= limit


def test_markdown_heading_path_and_oversize_fence_marked() -> None:
    chunks = chunk(MD, 12, kind="markdown", counter=EST)
    by_text = {c.text.splitlines()[0]: c.metadata["headings"] for c in chunks}
    assert by_text["# Guide"] == ["Guide"]
    assert ["Guide", "Use", "Details"] in by_text.values()
    assert any(c.metadata.get("split_block") == "table" for c in chunks)
    small = chunk(MD, 6, kind="markdown", counter=EST)
    assert any(c.metadata.get("split_block") == "code" for c in small)
    assert all(c.tokens <= 6 for c in small)


def test_markdown_keeps_heading_with_its_first_block() -> None:
    text = "# A\n\n" + "word " * 10 + "\n\n## B\n\n" + "more " * 10 + "\n"
    chunks = chunk(text, 14, kind="markdown", counter=EST)
    assert not any(c.text.strip() in {"# A", "## B"} for c in chunks)


CONV = "\n".join(
    f"{'Alice' if i % 2 else 'Bob'}: " + " ".join(f"word{i}" for _ in range(3 + i % 4))
    for i in range(12)
)


def test_conversation_keeps_turns_whole_and_labels() -> None:
    assert detect_kind(CONV) == "conversation"
    chunks = chunk(CONV, 20, kind="conversation", counter=EST)
    for c in chunks:
        assert c.text.startswith(("Alice: ", "Bob: ")), c.text
        assert CONV[c.end : c.end + 1] in {"", "\n"}
        assert set(c.metadata["speakers"]) <= {"Alice", "Bob"}
        assert c.tokens <= 20


def test_conversation_context_turns_count_against_the_limit() -> None:
    plain = chunk(CONV, 30, kind="conversation", counter=EST)
    ctx = chunk(CONV, 30, kind="conversation", counter=EST, context_turns=1)
    assert len(ctx) >= len(plain)
    with_ctx = [c for c in ctx if c.metadata.get("context_turns")]
    assert with_ctx
    for c in ctx:
        assert c.tokens <= 30
    for c in with_ctx:
        first, _ = c.metadata["turns"]
        assert c.start < c.metadata["content_start"]
        assert CONV[c.metadata["content_start"] :].startswith(("Alice", "Bob"))
        assert first > 0


def test_an_oversize_turn_is_split_and_marked() -> None:
    text = "Alice: hi\nBob: " + "long " * 60 + "\nAlice: ok\n"
    chunks = chunk(text, 16, kind="conversation", counter=EST)
    parts = [c for c in chunks if "turn_part" in c.metadata]
    assert len(parts) >= 4
    assert all(c.metadata["speakers"] == ["Bob"] for c in parts)
    assert all(c.tokens <= 16 for c in chunks)


def test_overlap_is_in_tokens_and_never_exceeds_the_limit() -> None:
    text = " ".join(f"word{i}." for i in range(200))
    chunks = chunk(text, 20, overlap=5, counter=EST, kind="text")
    assert any("overlap_tokens" in c.metadata for c in chunks)
    for prev, cur in itertools.pairwise(chunks):
        assert cur.tokens <= 20
        if "overlap_tokens" in cur.metadata:
            assert cur.start < prev.end
            assert EST.count(text[cur.start : prev.end]) == cur.metadata["overlap_tokens"] <= 5


def test_text_prefers_paragraph_then_sentence_boundaries() -> None:
    para = "One short sentence. Another short sentence here. A third one ends it."
    text = "\n\n".join([para] * 6)
    chunks = chunk(text, EST.count(para) * 2 + 1, counter=EST, kind="text")
    assert all(c.text.endswith("ends it.") for c in chunks)
    long = " ".join([para] * 4)
    for c in chunk(long, 20, counter=EST, kind="text")[:-1]:
        assert c.text.endswith("."), c.text


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        chunk("x", 0, counter=EST)
    with pytest.raises(ValueError):
        chunk("x", 4, overlap=4, counter=EST)
    with pytest.raises(ConfigError):
        get_counter("nonsense")
    assert chunk("  \n ", 4, counter=EST) == []


def test_tiktoken_refuses_to_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="never downloads"):
        TiktokenCounter("cl100k_base")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("chunk")(chunk_command)
    app.command("noop")(lambda: None)
    return app


def test_cli_writes_jsonl_chunks(tmp_path: Path) -> None:
    source = tmp_path / "doc.md"
    source.write_text(MD, encoding="utf-8")
    out = tmp_path / "chunks.jsonl"
    result = CliRunner().invoke(
        _app(),
        ["chunk", str(source), "--max-tokens", "20", "--counter", "estimate", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows and all(MD[r["start"] : r["end"]] == r["text"] for r in rows)
    assert all(r["tokens"] <= 20 and r["metadata"]["kind"] == "markdown" for r in rows)
    help_text = CliRunner().invoke(_app(), ["chunk", "--help"]).output
    assert "JSONL" in help_text


def test_cli_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(_app(), ["chunk", str(tmp_path / "nope"), "--max-tokens", "5"])
    assert missing.exit_code == 2
    source = tmp_path / "a.txt"
    source.write_text("hello", encoding="utf-8")
    bad = runner.invoke(_app(), ["chunk", str(source), "--max-tokens", "5", "--counter", "bogus"])
    assert bad.exit_code == 2
