"""Chunking benchmark: roadworthy against semchunk, LangChain and chonkie.

Every splitter chunks the same corpus (Debian's ``python3-doc`` HTML converted to text
with the standard library's ``html.parser``, one document per page) at 256 and 512
tokens, all measuring with the same real tokenizer: all-MiniLM-L6-v2's
``tokenizer.json`` through Hugging Face ``tokenizers``. Printed as JSON, per splitter and
size: throughput (MB/s and the ratio to semchunk in the same run), chunks that are
over the limit when recounted with that tokenizer, chunks whose offsets do not give back
their text, and a boundary score (mean over cuts: 1 at a paragraph break, 0.75 at a
line break, 0.5 after a sentence end, 0 elsewhere).

    python bench/chunking.py            # >= 10 MB, a few minutes on 2 cores
    python bench/chunking.py --quick    # ~1 MB
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

DOCS = Path("/usr/share/doc/python3-doc/html")
BLOCK = {
    "p",
    "div",
    "section",
    "pre",
    "li",
    "ul",
    "ol",
    "table",
    "tr",
    "dl",
    "dt",
    "dd",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "br",
    "hr",
}


class _Text(HTMLParser):
    """Visible text of a Sphinx page: blocks become paragraphs, <pre> keeps its lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style", "head", "nav"}:
            self.skip += 1
        elif tag in BLOCK:
            self.parts.append("\n\n")
        if tag == "pre":
            self.pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style", "head", "nav"}:
            self.skip = max(0, self.skip - 1)
        elif tag in BLOCK:
            self.parts.append("\n\n")
        if tag == "pre":
            self.pre = max(0, self.pre - 1)

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data if self.pre else re.sub(r"\s+", " ", data))

    def text(self) -> str:
        raw = "".join(self.parts)
        raw = re.sub(r"[ \t]+\n", "\n", raw)
        return re.sub(r"\n{3,}", "\n\n", raw).strip()


def html_to_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return parser.text()


def corpus(min_bytes: int) -> list[str]:
    if not DOCS.is_dir():
        sys.exit("apt-get install -y python3-doc first (the corpus is its HTML)")
    docs: list[str] = []
    size = 0
    for path in sorted(DOCS.rglob("*.html")):
        if path.name.startswith("genindex") or "_static" in path.parts:
            continue
        text = html_to_text(path.read_text(encoding="utf-8", errors="replace"))
        if text:
            docs.append(text)
            size += len(text.encode())
        if size >= min_bytes:
            break
    return docs


Spans = list[tuple[int, int, str]]


def boundary_score(doc: str, end: int) -> float:
    i, j = end, end
    while i > 0 and doc[i - 1].isspace():
        i -= 1
    while j < len(doc) and doc[j].isspace():
        j += 1
    run = doc[i:j]
    if re.search(r"\n[^\S\n]*\n", run):
        return 1.0
    if "\n" in run:
        return 0.75
    if run and re.search(r"[.!?][\"')\]]*$", doc[max(0, i - 3) : i]):
        return 0.5
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~1 MB instead of >= 10 MB")
    parser.add_argument("--sizes", default="256,512")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import chonkie
    import semchunk
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from tokenizers import Tokenizer

    from roadworthy.chunking import HFTokenizerCounter, chunk, minilm_tokenizer_path

    path = minilm_tokenizer_path()
    tk = Tokenizer.from_file(str(path))
    tk.no_truncation()
    tk.no_padding()

    def count(text: str) -> int:
        return len(tk.encode(text, add_special_tokens=False))

    started = time.perf_counter()
    docs = corpus(1_000_000 if args.quick else 10_000_000)
    total = sum(len(d.encode()) for d in docs)
    prep = time.perf_counter() - started

    def run_roadworthy(n: int) -> Callable[[str], Spans]:
        counter = HFTokenizerCounter(path, name="minilm")
        return lambda doc: [
            (c.start, c.end, c.text) for c in chunk(doc, n, kind="text", counter=counter)
        ]

    def run_semchunk(n: int) -> Callable[[str], Spans]:
        chunker = semchunk.chunkerify(count, n)

        def go(doc: str) -> Spans:
            texts, offsets = chunker(doc, offsets=True)
            return [(a, b, t) for t, (a, b) in zip(texts, offsets, strict=True)]

        return go

    def run_langchain(n: int) -> Callable[[str], Spans]:
        splitter = RecursiveCharacterTextSplitter(
            chunk_size=n, chunk_overlap=0, length_function=count, add_start_index=True
        )

        def go(doc: str) -> Spans:
            out = []
            for d in splitter.create_documents([doc]):
                a = d.metadata["start_index"]
                out.append((a, a + len(d.page_content), d.page_content))
            return out

        return go

    def run_chonkie(n: int) -> Callable[[str], Spans]:
        chunker = chonkie.RecursiveChunker(tokenizer=tk, chunk_size=n)
        return lambda doc: [(c.start_index, c.end_index, c.text) for c in chunker.chunk(doc)]

    splitters: dict[str, Callable[[int], Callable[[str], Spans]]] = {
        "semchunk": run_semchunk,
        "roadworthy": run_roadworthy,
        "langchain": run_langchain,
        "chonkie": run_chonkie,
    }
    results: dict[str, Any] = {}
    for n in [int(s) for s in args.sizes.split(",")]:
        per: dict[str, Any] = {}
        for name, make in splitters.items():
            split = make(n)
            t0 = time.perf_counter()
            outs = [split(doc) for doc in docs]
            secs = time.perf_counter() - t0
            texts = [t for out in outs for _, _, t in out]
            counts = [len(e) for e in tk.encode_batch(texts, add_special_tokens=False)]
            offset_errors = sum(
                1 for doc, out in zip(docs, outs, strict=True) for a, b, t in out if doc[a:b] != t
            )
            scores = [
                boundary_score(doc, b)
                for doc, out in zip(docs, outs, strict=True)
                for _, b, _ in out[:-1]
            ]
            per[name] = {
                "seconds": round(secs, 2),
                "mb_per_s": round(total / 1e6 / secs, 3),
                "chunks": len(texts),
                "mean_tokens": round(sum(counts) / max(1, len(counts)), 1),
                "over_limit": sum(1 for c in counts if c > n),
                "offset_errors": offset_errors,
                "boundary_score": round(sum(scores) / max(1, len(scores)), 3),
                "cuts_at_paragraph": round(
                    sum(1 for s in scores if s == 1.0) / max(1, len(scores)), 3
                ),
            }
        base = per["semchunk"]["mb_per_s"]
        for figures in per.values():
            figures["throughput_vs_semchunk"] = round(figures["mb_per_s"] / base, 2)
        results[str(n)] = per
    print(
        json.dumps(
            {
                "corpus": {
                    "source": f"{DOCS} (Debian python3-doc), html.parser text, one doc per page",
                    "documents": len(docs),
                    "mb": round(total / 1e6, 2),
                    "prep_seconds": round(prep, 1),
                },
                "tokenizer": f"all-MiniLM-L6-v2 tokenizer.json via tokenizers ({path.name})",
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                },
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
