"""Read YAML and remember the line of every key, so errors can point at it.

PyYAML's composer keeps a mark on every node; walking the node tree once gives a map from
key path to line number. Validation errors (pydantic's or ours) carry a key path, and
:func:`line_for` turns it into the line a user should open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["YamlDocument", "read_yaml"]

Loc = tuple[str | int, ...]


@dataclass
class YamlDocument:
    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_for(self, loc: Loc) -> int | None:
        """Line of the deepest existing node along ``loc`` (1-based).

        Parts of ``loc`` that are not keys in the document (pydantic inserts union tags
        such as the provider ``type``) are skipped rather than ending the walk.
        """
        best = self.lines.get(())
        current: Loc = ()
        for part in loc:
            candidate = (*current, part)
            if candidate in self.lines:
                current = candidate
                best = self.lines[candidate]
        return best

    def where(self, loc: Loc) -> str:
        line = self.line_for(loc)
        return f"{self.path}:{line}" if line else str(self.path)


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*loc, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*loc, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            _walk(item, (*loc, index), lines)


def read_yaml(path: Path) -> YamlDocument:
    """Parse ``path``; syntax errors become a :class:`ConfigError` with file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or str(exc)
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    lines: dict[Loc, int] = {(): 1}
    if node is not None:
        _walk(node, (), lines)
    return YamlDocument(path=path, data=data if data is not None else {}, lines=lines)
