"""Evaluation datasets: JSONL, YAML and CSV files of examples, validated with line numbers.

One record is one example::

    {"id": "st-001",                                  # stable id (optional: content hash)
     "vars": {"text": "I was charged twice..."},       # the prompt's input variables
     "expected": {"category": "billing", "priority": "high"},   # and/or:
     "reference": "a reference answer for similarity scorers",
     "criteria": ["mentions the refund timeline"],     # for LLM judges
     "assert": [{"type": "contains", "value": "refund"}],        # per-example scorers
     "tags": ["smoke", "category:billing", "lang:en", "edge-case"],
     "human_label": "pass",                            # optional, for judge calibration
     "metadata": {...}}

An example needs ``vars`` and at least one of ``expected``, ``reference``, ``criteria`` or
``assert``: an example with nothing to compare against measures nothing.

Tags are plain strings; ``key:value`` tags (``lang:de``, ``category:billing``) give
breakdowns by key (:meth:`Dataset.tag_values`). ``smoke`` marks the fast subset CI runs
on every change (:meth:`Dataset.subset`).

Formats, chosen by file suffix:

* ``.jsonl``: one JSON object per line; blank lines and ``//`` comment lines are skipped.
* ``.yaml``/``.yml``: a list of records, or a mapping with ``examples:`` (and optional
  ``name``, ``description``). A mapping with ``tests:`` is a promptfoo test file and is
  imported by :mod:`roadworthy.evals.promptfoo`.
* ``.csv``: a header row. Columns ``id``, ``expected``, ``reference``, ``criteria``,
  ``tags`` and ``human_label`` are reserved; ``expected.FIELD`` columns build an expected
  object; every other column is an input variable. ``tags`` and ``criteria`` are split on
  ``;`` (tags also on ``,``); an ``expected`` cell that starts with ``{`` or ``[`` is JSON.

All problems in a file are collected and raised together as one
:class:`~roadworthy.errors.ConfigError`, each as ``file:line: problem``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config.load import hint_names
from ..config.yamlfile import read_yaml
from ..errors import ConfigError

__all__ = [
    "Dataset",
    "Example",
    "content_id",
    "examples_from",
    "load_dataset",
    "parse_records",
]

FIELDS = (
    "id",
    "vars",
    "expected",
    "reference",
    "criteria",
    "assert",
    "tags",
    "human_label",
    "metadata",
)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_TAG = re.compile(r"^[^\s,;]{1,64}$")

Format = Literal["jsonl", "yaml", "csv", "promptfoo"]


@dataclass(frozen=True)
class Example:
    """One evaluation example. ``where`` is ``file:line`` of its record.

    ``assertions`` holds the raw ``assert`` entries (``{type: ..., ...}`` mappings);
    :func:`roadworthy.evals.scorers.build_scorer` turns them into scorers, so the dataset
    layer does not need to know which scorers exist.
    """

    id: str
    vars: Mapping[str, Any]
    expected: Any = None
    reference: str | None = None
    criteria: tuple[str, ...] = ()
    assertions: tuple[Mapping[str, Any], ...] = ()
    tags: tuple[str, ...] = ()
    human_label: Any = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""

    def has_tag(self, tag: str) -> bool:
        return tag in self.tags

    def tag_value(self, key: str) -> str | None:
        """The value of a ``key:value`` tag (``lang`` → ``"de"``), or ``None``."""
        prefix = key + ":"
        for tag in self.tags:
            if tag.startswith(prefix):
                return tag[len(prefix) :]
        return None

    def expected_field(self, name: str) -> Any:
        """``expected[name]`` when ``expected`` is an object, else ``None``."""
        if isinstance(self.expected, Mapping):
            return self.expected.get(name)
        return None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "vars": dict(self.vars)}
        if self.expected is not None:
            out["expected"] = self.expected
        if self.reference is not None:
            out["reference"] = self.reference
        if self.criteria:
            out["criteria"] = list(self.criteria)
        if self.assertions:
            out["assert"] = [dict(a) for a in self.assertions]
        if self.tags:
            out["tags"] = list(self.tags)
        if self.human_label is not None:
            out["human_label"] = self.human_label
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


@dataclass(frozen=True)
class Dataset:
    """An ordered, immutable collection of examples with unique ids."""

    name: str
    examples: tuple[Example, ...]
    path: Path | None = None
    format: Format | None = None
    description: str = ""

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for ex in self.examples:
            if ex.id in seen:
                raise ConfigError(
                    f"{ex.where or self.name}: duplicate id {ex.id!r} (first at {seen[ex.id]})"
                )
            seen[ex.id] = ex.where or "?"

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __getitem__(self, example_id: str) -> Example:
        for ex in self.examples:
            if ex.id == example_id:
                return ex
        raise KeyError(example_id)

    @property
    def ids(self) -> list[str]:
        return [ex.id for ex in self.examples]

    def subset(
        self,
        tags: str | Iterable[str] | None = None,
        *,
        match: Literal["any", "all"] = "any",
        exclude: str | Iterable[str] = (),
    ) -> Dataset:
        """Examples carrying any (or all) of ``tags`` and none of ``exclude``.

        Asking for a tag no example carries is a :class:`ConfigError` with a hint, since
        an empty subset silently passing a CI gate is worse than an error.
        """
        wanted = [tags] if isinstance(tags, str) else list(tags or [])
        unwanted = {exclude} if isinstance(exclude, str) else set(exclude)
        known = self.tag_counts()
        missing = [t for t in (*wanted, *unwanted) if t not in known]
        if missing:
            raise ConfigError(
                [f"{self.name}: no example has tag {t!r}{hint_names(t, known)}" for t in missing]
            )
        chosen = []
        for ex in self.examples:
            if unwanted.intersection(ex.tags):
                continue
            if wanted:
                hits = [t in ex.tags for t in wanted]
                if not (all(hits) if match == "all" else any(hits)):
                    continue
            chosen.append(ex)
        label = "+".join(wanted) or "all"
        if unwanted:
            label += "-" + "-".join(sorted(unwanted))
        return Dataset(
            f"{self.name}[{label}]", tuple(chosen), self.path, self.format, self.description
        )

    def tag_counts(self) -> Counter[str]:
        return Counter(tag for ex in self.examples for tag in ex.tags)

    def tag_values(self, key: str) -> Counter[str]:
        """Counts of the values of ``key:value`` tags, e.g. ``tag_values("lang")``."""
        return Counter(v for ex in self.examples if (v := ex.tag_value(key)) is not None)

    def fingerprint(self) -> str:
        """A content hash, so a report records exactly which dataset version it ran on."""
        digest = hashlib.sha256()
        for ex in self.examples:
            digest.update(_canonical(ex.to_json()).encode())
            digest.update(b"\n")
        return digest.hexdigest()[:16]


def _canonical(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def content_id(record: Mapping[str, Any]) -> str:
    """A stable id for a record without one: a hash of its inputs and targets."""
    body = {k: record.get(k) for k in ("vars", "expected", "reference", "criteria", "assert")}
    return "ex-" + hashlib.sha256(_canonical(body).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------
# record validation


def _string_list(value: Any, key: str, problems: list[str], where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.append(f"{where}: {key}: must be a list of non-empty strings, got {value!r}")
        return ()
    return tuple(v.strip() for v in value)


def _record_to_example(
    record: Any, where: str, problems: list[str], *, require_target: bool = True
) -> Example | None:
    """Validate one record; append ``where: problem`` lines and return None on failure."""
    before = len(problems)
    if not isinstance(record, Mapping):
        problems.append(f"{where}: an example must be an object, got {type(record).__name__}")
        return None
    for key in record:
        if key not in FIELDS:
            if key in ("input", "inputs", "variables"):
                hint = " (hint: input variables go under 'vars')"
            elif key in ("expected_output", "output", "label"):
                hint = " (hint: did you mean 'expected'?)"
            else:
                hint = hint_names(str(key), FIELDS)
            problems.append(f"{where}: unknown key {key!r}{hint}")
    raw_id = record.get("id")
    if raw_id is not None and (not isinstance(raw_id, str | int) or isinstance(raw_id, bool)):
        problems.append(f"{where}: id: must be a string, got {raw_id!r}")
        raw_id = None
    if raw_id is not None and not _ID.match(str(raw_id)):
        problems.append(
            f"{where}: id: {raw_id!r} is not a valid id (letters, digits, '._:/-'; "
            "at most 128 characters)"
        )
    variables = record.get("vars")
    if variables is None:
        problems.append(f"{where}: vars: required key is missing (the input variables)")
        variables = {}
    elif not isinstance(variables, Mapping) or not variables:
        problems.append(f"{where}: vars: must be a non-empty object of input variables")
        variables = {}
    else:
        for name in variables:
            if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                problems.append(f"{where}: vars: {name!r} is not a valid variable name")
    reference = record.get("reference")
    if reference is not None and not isinstance(reference, str):
        problems.append(f"{where}: reference: must be a string, got {type(reference).__name__}")
        reference = None
    criteria = _string_list(record.get("criteria"), "criteria", problems, where)
    tags = _string_list(record.get("tags"), "tags", problems, where)
    for tag in tags:
        if not _TAG.match(tag):
            problems.append(f"{where}: tags: {tag!r} must be one word without spaces or commas")
    if len(set(tags)) != len(tags):
        problems.append(
            f"{where}: tags: listed twice: {sorted(t for t in set(tags) if tags.count(t) > 1)}"
        )
    assertions = record.get("assert")
    if assertions is None:
        assertions = []
    elif not isinstance(assertions, list) or not all(
        isinstance(a, Mapping) and isinstance(a.get("type"), str) for a in assertions
    ):
        problems.append(f"{where}: assert: must be a list of objects with a 'type'")
        assertions = []
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        problems.append(f"{where}: metadata: must be an object")
        metadata = {}
    expected = record.get("expected")
    if (
        require_target
        and expected is None
        and reference is None
        and not criteria
        and not assertions
    ):
        problems.append(
            f"{where}: nothing to score against (hint: give 'expected', 'reference', "
            "'criteria' or 'assert')"
        )
    if len(problems) > before:
        return None
    example_id = str(raw_id) if raw_id is not None else content_id(record)
    return Example(
        id=example_id,
        vars=dict(variables),
        expected=expected,
        reference=reference,
        criteria=criteria,
        assertions=tuple(dict(a) for a in assertions),
        tags=tags,
        human_label=record.get("human_label"),
        metadata=dict(metadata),
        where=where,
    )


def parse_records(
    records: Iterable[tuple[str, Any]], *, require_target: bool = True
) -> tuple[list[Example], list[str]]:
    """Validate ``(where, record)`` pairs; returns the examples and every problem found.

    Duplicate ids are reported against both locations.
    """
    problems: list[str] = []
    examples: list[Example] = []
    first: dict[str, str] = {}
    for where, record in records:
        ex = _record_to_example(record, where, problems, require_target=require_target)
        if ex is None:
            continue
        if ex.id in first:
            problems.append(f"{where}: duplicate id {ex.id!r} (first at {first[ex.id]})")
            continue
        first[ex.id] = where
        examples.append(ex)
    return examples, problems


# ---------------------------------------------------------------------------------------
# file formats


def _jsonl_records(path: Path, text: str, problems: list[str]) -> list[tuple[str, Any]]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("//"):
            continue
        try:
            records.append((f"{path}:{number}", json.loads(stripped)))
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{number}: invalid JSON: {exc.msg} (column {exc.colno})")
    return records


def _yaml_records(path: Path, problems: list[str]) -> tuple[list[tuple[str, Any]], str, str, bool]:
    """Records, name, description, and whether this is a promptfoo file."""
    doc = read_yaml(path)
    data = doc.data
    name, description = path.stem, ""
    loc: tuple[str | int, ...] = ()
    if isinstance(data, Mapping):
        if "tests" in data and "examples" not in data:
            return [], name, description, True
        unknown = [k for k in data if k not in ("name", "description", "examples")]
        for key in unknown:
            hint = hint_names(str(key), ["name", "description", "examples"])
            problems.append(f"{doc.where((key,))}: unknown top-level key {key!r}{hint}")
        name = str(data.get("name") or name)
        description = str(data.get("description") or "")
        data = data.get("examples")
        loc = ("examples",)
        if data is None:
            problems.append(f"{path}:1: examples: required key is missing")
            return [], name, description, False
    if not isinstance(data, list):
        problems.append(f"{doc.where(loc)}: expected a list of examples")
        return [], name, description, False
    return (
        [(doc.where((*loc, i)), record) for i, record in enumerate(data)],
        name,
        description,
        False,
    )


_CSV_RESERVED = ("id", "expected", "reference", "criteria", "tags", "human_label")


def _csv_records(path: Path, text: str, problems: list[str]) -> list[tuple[str, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        problems.append(f"{path}:1: empty file (hint: the first row names the columns)")
        return []
    header = [h.strip() for h in header]
    for index, column in enumerate(header):
        if not column:
            problems.append(f"{path}:1: column {index + 1} has no name")
        elif header.count(column) > 1 and header.index(column) == index:
            problems.append(f"{path}:1: column {column!r} appears more than once")
    records = []
    line = reader.line_num
    for row in reader:
        where = f"{path}:{line + 1}"
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(f"{where}: {len(row)} cells, but the header has {len(header)} columns")
            continue
        record: dict[str, Any] = {"vars": {}}
        expected_fields: dict[str, Any] = {}
        for column, cell in zip(header, row, strict=True):
            if column == "expected":
                if cell.strip().startswith(("{", "[")):
                    try:
                        record["expected"] = json.loads(cell)
                    except json.JSONDecodeError as exc:
                        problems.append(f"{where}: expected: invalid JSON: {exc.msg}")
                elif cell != "":
                    record["expected"] = cell
            elif column.startswith("expected."):
                if cell != "":
                    expected_fields[column[len("expected.") :]] = cell
            elif column == "tags":
                record["tags"] = [t for t in re.split(r"[;,]", cell) if t.strip()] or None
            elif column == "criteria":
                record["criteria"] = [c for c in cell.split(";") if c.strip()] or None
            elif column in _CSV_RESERVED:
                if cell != "":
                    record[column] = cell
            elif column:
                record["vars"][column] = cell
        if expected_fields:
            if "expected" in record:
                problems.append(f"{where}: both 'expected' and 'expected.*' columns are set")
            record["expected"] = expected_fields
        records.append((where, {k: v for k, v in record.items() if v is not None}))
    return records


def _line_of(problem: str) -> int:
    """Sort key: problems are reported in file order, whatever check found them."""
    match = re.match(r"^.*?:(\d+): ", problem)
    return int(match.group(1)) if match else 0


def _format_for(path: Path) -> Format:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".csv":
        return "csv"
    raise ConfigError(
        f"{path}: unknown dataset format {suffix or '(no suffix)'!r} "
        "(hint: use .jsonl, .yaml or .csv)"
    )


def load_dataset(
    path: Path | str,
    *,
    name: str | None = None,
    require_target: bool = True,
) -> Dataset:
    """Load and validate a dataset file; raises :class:`ConfigError` listing every problem."""
    path = Path(path)
    fmt = _format_for(path)
    problems: list[str] = []
    description = ""
    default_name = path.stem
    if fmt == "yaml":
        records, default_name, description, is_promptfoo = _yaml_records(path, problems)
        if is_promptfoo:
            from .promptfoo import load_promptfoo_tests

            return load_promptfoo_tests(path, name=name)
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        records = (
            _jsonl_records(path, text, problems)
            if fmt == "jsonl"
            else _csv_records(path, text, problems)
        )
    examples, more = parse_records(records, require_target=require_target)
    problems.extend(more)
    if problems:
        raise ConfigError(sorted(problems, key=_line_of))
    if not examples:
        raise ConfigError(f"{path}: the dataset has no examples")
    return Dataset(name or default_name, tuple(examples), path, fmt, description)


def examples_from(items: Sequence[Mapping[str, Any]], *, name: str = "inline") -> Dataset:
    """Build a dataset from in-memory records (tests, notebooks); same validation."""
    examples, problems = parse_records((f"{name}[{i}]", r) for i, r in enumerate(items))
    if problems:
        raise ConfigError(problems)
    return Dataset(name, tuple(examples))
