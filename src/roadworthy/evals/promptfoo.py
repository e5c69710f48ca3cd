"""Import promptfoo test files, so a team can bring the tests it already has.

Reads a promptfoo config (or a bare test list) with ``tests:`` entries of ``vars`` and
``assert``, plus ``defaultTest``. Assertion types map onto roadworthy scorers of the same
meaning:

===========================================  ===========================================
promptfoo                                    roadworthy
===========================================  ===========================================
equals, contains, icontains, contains-any,   the scorer of the same name
contains-all, icontains-any, icontains-all,
regex, starts-with, is-json, contains-json
``not-`` + any of those                      the same, inverted
latency (threshold in ms)                    ``latency`` with ``max_s`` = threshold / 1000
cost (threshold in USD)                      ``cost`` with ``max_usd``
bleu (threshold, default 0.5)                ``bleu`` with that threshold
llm-rubric (value)                           the text becomes one of the example's
                                             ``criteria``, graded by the suite's judge
===========================================  ===========================================

Anything else (``javascript``, ``python``, ``webhook``, model-graded types other than
``llm-rubric``, ``transform`` options, ``file://`` variables) is rejected with the line,
rather than imported with a meaning it would not have here. roadworthy runs no
JavaScript. Every problem in the file is reported at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config.load import hint_names
from ..config.yamlfile import YamlDocument, read_yaml
from ..errors import ConfigError
from .datasets import Dataset, content_id, parse_records

__all__ = ["SUPPORTED_ASSERTIONS", "load_promptfoo_tests"]

_SAME = (
    "equals",
    "contains",
    "icontains",
    "contains-any",
    "contains-all",
    "icontains-any",
    "icontains-all",
    "regex",
    "starts-with",
    "is-json",
    "contains-json",
)
SUPPORTED_ASSERTIONS: tuple[str, ...] = (
    *_SAME,
    *(f"not-{t}" for t in _SAME),
    "latency",
    "cost",
    "bleu",
    "llm-rubric",
)
_CODE = {"javascript", "python", "webhook", "ruby"}
_TEST_KEYS = ("description", "vars", "assert", "metadata", "options")
_ASSERT_KEYS = ("type", "value", "threshold", "weight", "metric")


def _convert_assert(
    raw: Any, where: str, problems: list[str], criteria: list[str]
) -> dict[str, Any] | None:
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: an assert entry must be a mapping with 'type'")
        return None
    kind = raw.get("type")
    if not isinstance(kind, str):
        problems.append(f"{where}: assert entry has no 'type'")
        return None
    for key in raw:
        if key not in _ASSERT_KEYS:
            problems.append(
                f"{where}: assert {kind}: key {key!r} is not supported{hint_names(str(key), _ASSERT_KEYS)}"
            )
    base = kind[4:] if kind.startswith("not-") else kind
    value = raw.get("value")
    threshold = raw.get("threshold")
    if base in _CODE:
        problems.append(
            f"{where}: assert type {kind!r} is not supported: roadworthy does not run "
            f"{base} assertions (hint: rewrite it as a Python scorer with @scorer)"
        )
        return None
    if isinstance(value, str) and value.startswith("file://"):
        problems.append(f"{where}: assert {kind}: file:// values are not supported; inline it")
        return None
    out: dict[str, Any] = {"type": kind}
    if raw.get("metric") is not None:
        out["name"] = str(raw["metric"])
    if raw.get("weight") is not None:
        out["weight"] = raw["weight"]
    if kind in SUPPORTED_ASSERTIONS and base in _SAME:
        if value is not None:
            out["value"] = value
        elif base not in ("is-json", "contains-json"):
            problems.append(f"{where}: assert {kind}: needs a 'value'")
            return None
        return out
    if kind == "latency" or kind == "cost":
        if not isinstance(threshold, int | float) or isinstance(threshold, bool):
            problems.append(f"{where}: assert {kind}: needs a numeric 'threshold'")
            return None
        if kind == "latency":
            out["max_s"] = threshold / 1000.0
        else:
            out["max_usd"] = threshold
        return out
    if kind == "bleu":
        if not isinstance(value, str):
            problems.append(f"{where}: assert bleu: needs the reference text as 'value'")
            return None
        out["reference"] = value
        out["threshold"] = threshold if threshold is not None else 0.5
        return out
    if kind == "llm-rubric":
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: assert llm-rubric: needs the rubric text as 'value'")
            return None
        criteria.append(value.strip())
        return None
    problems.append(
        f"{where}: assert type {kind!r} is not supported{hint_names(kind, SUPPORTED_ASSERTIONS)}"
    )
    return None


def _test_files(
    data: Any, path: Path, doc: YamlDocument, problems: list[str]
) -> list[tuple[str, Any, YamlDocument, tuple[str | int, ...]]]:
    """``(where, test, document, loc)`` for every test, following ``file://`` test lists."""
    out: list[tuple[str, Any, YamlDocument, tuple[str | int, ...]]] = []
    if isinstance(data, list):
        return [(doc.where((i,)), t, doc, (i,)) for i, t in enumerate(data)]
    tests = data.get("tests")
    refs = [tests] if isinstance(tests, str) else tests
    if isinstance(refs, list) and refs and all(isinstance(r, str) for r in refs):
        for ref in refs:
            if not ref.startswith("file://") or not ref.endswith((".yaml", ".yml")):
                problems.append(
                    f"{doc.where(('tests',))}: tests: only file:// references to YAML test "
                    f"files are supported, got {ref!r}"
                )
                continue
            sub_path = (path.parent / ref[len("file://") :]).resolve()
            sub = read_yaml(sub_path)
            if not isinstance(sub.data, list):
                problems.append(f"{sub_path}:1: a promptfoo test file must be a list of tests")
                continue
            out.extend((sub.where((i,)), t, sub, (i,)) for i, t in enumerate(sub.data))
        return out
    if not isinstance(tests, list):
        problems.append(f"{doc.where(('tests',))}: tests: must be a list of tests")
        return []
    return [(doc.where(("tests", i)), t, doc, ("tests", i)) for i, t in enumerate(tests)]


def load_promptfoo_tests(path: Path | str, *, name: str | None = None) -> Dataset:
    """Import a promptfoo config or test list as a :class:`Dataset`.

    Examples get the tag ``promptfoo`` plus any string tags in ``metadata.tags``; their
    id is ``metadata.id`` when given, else a hash of their vars and assertions.
    """
    path = Path(path)
    doc = read_yaml(path)
    data = doc.data
    problems: list[str] = []
    if not isinstance(data, Mapping | list):
        raise ConfigError(f"{path}:1: a promptfoo file must be a mapping with 'tests' or a list")
    default_vars: dict[str, Any] = {}
    default_asserts: list[dict[str, Any]] = []
    default_criteria: list[str] = []
    if isinstance(data, Mapping) and data.get("defaultTest") is not None:
        default = data["defaultTest"]
        where = doc.where(("defaultTest",))
        if not isinstance(default, Mapping):
            problems.append(f"{where}: defaultTest: only an inline mapping is supported")
        else:
            default_vars = dict(default.get("vars") or {})
            for j, raw in enumerate(default.get("assert") or []):
                converted = _convert_assert(
                    raw, doc.where(("defaultTest", "assert", j)), problems, default_criteria
                )
                if converted is not None:
                    default_asserts.append(converted)
    records: list[tuple[str, Any]] = []
    used: dict[str, int] = {}
    for where, test, tdoc, loc in _test_files(data, path, doc, problems):
        if not isinstance(test, Mapping):
            problems.append(f"{where}: a test must be a mapping with 'vars' and 'assert'")
            continue
        for key in test:
            if key not in _TEST_KEYS:
                problems.append(
                    f"{tdoc.where((*loc, key))}: test key {key!r} is not supported"
                    f"{hint_names(str(key), _TEST_KEYS)}"
                )
        options = test.get("options") or {}
        if isinstance(options, Mapping) and "transform" in options:
            problems.append(
                f"{tdoc.where((*loc, 'options', 'transform'))}: options.transform runs "
                "JavaScript, which roadworthy does not (hint: transform in a Python scorer)"
            )
        variables = {**default_vars, **dict(test.get("vars") or {})}
        for var, value in variables.items():
            var_where = tdoc.where((*loc, "vars", var))
            if isinstance(value, str) and value.startswith("file://"):
                problems.append(
                    f"{var_where}: vars.{var}: file:// values are not supported; inline it"
                )
            elif isinstance(value, list):
                problems.append(
                    f"{var_where}: vars.{var}: a list expands into several tests in promptfoo; "
                    "write one test per value"
                )
        criteria = list(default_criteria)
        asserts = list(default_asserts)
        raw_asserts = test.get("assert") or []
        if not isinstance(raw_asserts, list):
            problems.append(f"{tdoc.where((*loc, 'assert'))}: assert: must be a list")
            raw_asserts = []
        for j, raw in enumerate(raw_asserts):
            converted = _convert_assert(raw, tdoc.where((*loc, "assert", j)), problems, criteria)
            if converted is not None:
                asserts.append(converted)
        metadata = dict(test.get("metadata") or {})
        tags = ["promptfoo"]
        meta_tags = metadata.get("tags")
        if isinstance(meta_tags, list):
            tags.extend(str(t) for t in meta_tags if isinstance(t, str | int))
        if test.get("description"):
            metadata["description"] = str(test["description"])
        record: dict[str, Any] = {"vars": variables, "tags": tags, "metadata": metadata}
        if asserts:
            record["assert"] = asserts
        if criteria:
            record["criteria"] = criteria
        example_id = str(metadata.get("id") or content_id(record))
        used[example_id] = used.get(example_id, 0) + 1
        if used[example_id] > 1 and not metadata.get("id"):
            example_id = f"{example_id}-{used[example_id]}"
        record["id"] = example_id
        records.append((where, record))
    examples, more = parse_records(records)
    problems.extend(more)
    if problems:
        raise ConfigError(problems)
    if not examples:
        raise ConfigError(f"{path}: no tests to import")
    return Dataset(name or path.stem, tuple(examples), path, "promptfoo")
