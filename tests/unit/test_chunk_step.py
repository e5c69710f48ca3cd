"""The chunk step and for_each: a map-reduce pipeline on the scripted provider."""

from __future__ import annotations

import asyncio
from pathlib import Path

from roadworthy.config import load_project
from roadworthy.pipeline import Workspace
from roadworthy.providers import Reply, ScriptedProvider

CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  fake: {type: scripted}
models:
  m: {provider: fake, id: gpt-4o-mini}
pipelines:
  summary:
    input: {fields: {text: {type: string}}}
    steps:
      - chunk: {field: text, max_tokens: 40, kind: markdown, counter: estimate}
      - generate: {prompt: part, model: m, for_each: chunks, name: parts}
      - generate: {prompt: whole, model: m, name: summary}
"""

PART = """\
id: part
variables: {chunk: {type: object}, chunk_index: {type: integer}}
text: "Part {{ chunk_index }} under {{ chunk.metadata.headings | join('/') }}: {{ chunk.text }}"
"""

WHOLE = """\
id: whole
variables: {parts: {type: list}}
text: "Combine: {{ parts | join(' | ') }}"
"""

DOC = (
    "# Guide\n\n## Install\n\n"
    + "Install the package with pip. " * 6
    + "\n\n## Use\n\n"
    + ("Call the function with a path. " * 6)
)


def test_map_reduce_over_chunks(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "roadworthy.yaml").write_text(CONFIG)
    (tmp_path / "prompts" / "part.yaml").write_text(PART)
    (tmp_path / "prompts" / "whole.yaml").write_text(WHOLE)
    provider = ScriptedProvider(
        [Reply(text="combined", when="Combine:"), Reply(text="a part")], name="fake"
    )
    ws = Workspace(load_project(tmp_path), providers={"fake": provider})
    result = asyncio.run(ws.pipeline("summary").run({"text": DOC}))
    assert result.status == "done" and result.output == "combined"
    map_requests = [r.messages[-1].content for r in provider.requests[:-1]]
    assert len(map_requests) >= 3
    assert map_requests[0].startswith("Part 0 under Guide")
    assert any("Guide/Use" in m for m in map_requests)
    reduce_request = provider.requests[-1].messages[-1].content
    assert reduce_request == "Combine: " + " | ".join(["a part"] * len(map_requests))
    assert len(ws.store.list_calls()) == len(provider.requests)
