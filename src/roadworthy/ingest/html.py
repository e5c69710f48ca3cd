"""HTML to readable text that keeps the structure a model needs.

Headings become Markdown ``#`` lines, list items ``-``/``1.`` lines, tables Markdown pipe
tables, ``<pre>`` keeps its whitespace. Scripts, styles and comments are dropped. Text a
browser would not show (``hidden``, ``display:none``, ``aria-hidden``, zero font size) is
left out of the text *and* returned separately, because hidden text in a page is a
classic carrier for prompt injection. Built on the stdlib parser: it never raises on bad
markup, which is what a hostile web page is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

__all__ = ["HtmlText", "html_to_text"]

_SKIP = {"script", "style", "template", "noscript", "head", "title", "svg", "math", "iframe"}
_VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr",
}  # fmt: skip
_BLOCK = {
    "p", "div", "section", "article", "header", "footer", "main", "nav", "aside", "blockquote",
    "figure", "figcaption", "form", "fieldset", "address", "dl", "dt", "dd", "details",
    "summary", "ul", "ol", "table", "hr",
}  # fmt: skip
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d]*[1-9])|opacity\s*:\s*0(?![.\d]*[1-9])",
    re.I,
)
_SPACE = re.compile(r"\s+")


@dataclass
class HtmlText:
    text: str
    hidden: list[str] = field(default_factory=list)
    title: str | None = None


@dataclass
class _Table:
    rows: list[list[str]] = field(default_factory=list)
    cell: list[str] | None = None


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden: list[str] = []
        self._hidden_buf: list[str] = []
        self._skip: tuple[str, int] | None = None  # (tag, nesting) while inside <script>...
        self._hide: tuple[str, int] | None = None  # (tag, nesting) while inside hidden markup
        self._lists: list[list[int]] = []  # per open list: [counter] or [-1] for <ul>
        self._tables: list[_Table] = []
        self._pre = 0
        self.title: str | None = None
        self._in_title = False

    # -- output helpers ---------------------------------------------------------------
    def _emit(self, text: str) -> None:
        table = self._tables[-1] if self._tables else None
        if table is not None and table.cell is not None:
            table.cell.append(text)
        elif table is None:
            self.out.append(text)
        # text directly inside <table>/<tr> but outside a cell is dropped, like browsers do

    def _newline(self, count: int = 1) -> None:
        if self._tables:
            self._emit(" ")
            return
        tail = "".join(self.out[-3:])
        have = len(tail) - len(tail.rstrip("\n"))
        if self.out and have < count:
            self.out.append("\n" * (count - have))

    def _at_line_start(self) -> bool:
        return not self.out or self.out[-1].endswith("\n")

    # -- parser callbacks -------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if self._skip is not None:
            if tag == self._skip[0]:
                self._skip = (tag, self._skip[1] + 1)
            return
        if tag in _SKIP:
            self._skip = (tag, 1)
            return
        if self._hide is not None:
            if tag == self._hide[0]:
                self._hide = (tag, self._hide[1] + 1)
            return
        attr = {k.lower(): (v or "") for k, v in attrs}
        if tag not in _VOID and (
            "hidden" in attr
            or attr.get("aria-hidden", "").lower() == "true"
            or _HIDDEN_STYLE.search(attr.get("style", ""))
        ):
            self._hide = (tag, 1)
            return
        self._open(tag)

    def _open(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._newline(2)
            self._emit("#" * int(tag[1]) + " ")
        elif tag in ("ul", "ol"):
            self._newline(1 if self._lists else 2)
            self._lists.append([0 if tag == "ol" else -1])
        elif tag == "li":
            self._newline()
            depth = max(len(self._lists) - 1, 0)
            marker = "-"
            if self._lists and self._lists[-1][0] >= 0:
                self._lists[-1][0] += 1
                marker = f"{self._lists[-1][0]}."
            self._emit("  " * depth + marker + " ")
        elif tag == "table":
            self._newline(2)
            self._tables.append(_Table())
        elif tag == "tr" and self._tables:
            self._tables[-1].rows.append([])
        elif tag in ("td", "th") and self._tables:
            table = self._tables[-1]
            if not table.rows:
                table.rows.append([])
            table.cell = []
        elif tag == "br":
            self._emit(" " if self._tables else "\n")
        elif tag == "pre":
            self._newline(2)
            self._pre += 1
        elif tag in _BLOCK or tag == "p":
            self._newline(2 if tag in ("p", "blockquote") else 1)
            if tag == "hr":
                self._emit("---")
                self._newline(2)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if self._skip is not None:
            if tag == self._skip[0]:
                nesting = self._skip[1] - 1
                self._skip = (tag, nesting) if nesting else None
            return
        if self._hide is not None:
            if tag == self._hide[0]:
                nesting = self._hide[1] - 1
                self._hide = (tag, nesting) if nesting else None
                if not nesting:
                    hidden = _SPACE.sub(" ", "".join(self._hidden_buf)).strip()
                    if hidden:
                        self.hidden.append(hidden)
                    self._hidden_buf = []
            return
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._newline(2)
        elif tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._newline(1 if self._lists else 2)
        elif tag in ("td", "th") and self._tables:
            table = self._tables[-1]
            if table.cell is not None:
                cell = _SPACE.sub(" ", "".join(table.cell)).strip().replace("|", "\\|")
                table.rows[-1].append(cell)
                table.cell = None
        elif tag == "table" and self._tables:
            rendered = _render_table(self._tables.pop())
            self._emit(rendered)
            self._newline(2)
        elif tag == "pre":
            self._pre = max(self._pre - 1, 0)
            self._newline(2)
        elif tag in _BLOCK or tag == "p":
            self._newline(2 if tag in ("p", "blockquote") else 1)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = (self.title or "") + data
        if self._skip is not None:
            return
        if self._hide is not None:
            self._hidden_buf.append(data)
            return
        if self._pre and not self._tables:
            self._emit(data)
            return
        text = _SPACE.sub(" ", data)
        if self._at_line_start() and not self._tables:
            text = text.lstrip()
        if text:
            self._emit(text)


def _render_table(table: _Table) -> str:
    rows = [row for row in table.rows if row]
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    lines = []
    for i, row in enumerate(rows):
        cells = row + [""] * (width - len(row))
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:
            lines.append("|" + " --- |" * width)
    return "\n".join(lines)


_BLANKS = re.compile(r"\n{3,}")


def html_to_text(html: str) -> HtmlText:
    """Convert an HTML document or fragment; never raises on malformed markup."""
    parser = _Converter()
    parser.feed(html)
    parser.close()
    if parser._hidden_buf:
        leftover = _SPACE.sub(" ", "".join(parser._hidden_buf)).strip()
        if leftover:
            parser.hidden.append(leftover)
    text = "".join(parser.out)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = _BLANKS.sub("\n\n", text).strip("\n")
    title = _SPACE.sub(" ", parser.title).strip() if parser.title else None
    return HtmlText(text, parser.hidden, title or None)
