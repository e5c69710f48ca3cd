"""Stage 3a: screen normalised text for prompt injection and PII.

Injection phrases are matched on the :func:`~roadworthy.ingest.normalise.skeleton`, so
Cyrillic look-alikes (``ign\\u043ere``), fullwidth or mathematical letters, accents, case and
zero-width splitting all fold to the same key. Delimiter spoofing (fake chat-template
tokens, ``### System:`` headers) is matched on the normalised text line by line. Hidden
text that normalisation removed (tag characters, variation-selector payloads) or that HTML
hid from view is flagged itself and screened too.

This is a tripwire, not a guarantee: it catches the common phrasings cheaply and sends
them to the policy (``continue``, ``review``, ``reject``); it cannot prove text is safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config import ScreenConfig
from .normalise import skeleton
from .pii import find_pii, redact
from .report import Action, Change, Flag, PiiMatch, ScreenReport

__all__ = ["ScreenInput", "find_injection", "screen"]

_ACTION_RANK: dict[str, int] = {"continue": 0, "redact": 0, "review": 1, "reject": 2}

_TARGET = (
    r"(?:instruction|prompt|rule|direction|guideline|guardrail|context|message|command|"
    r"order|constraint|polic(?:y|ie)|restriction|guidance|content)s?"
)
# Matched against the skeleton: lower case, ASCII look-alikes, single spaces.
_SKELETON_RULES: list[tuple[str, re.Pattern[str]]] = [
    (
        "instruction_override",
        re.compile(
            r"\b(?:ignore|disregard|forget|override|bypass|skip|drop|abandon|neglect)\b"
            r"[^.!?\n]{0,40}?\b(?:previous|prior|above|earlier|preceding|former|initial|"
            r"original|system|all|any|your|these|those|the)\b[^.!?\n]{0,12}?\b" + _TARGET
        ),
    ),
    (
        "instruction_override",
        re.compile(r"\b(?:ignore|disregard|forget) (?:everything|all) (?:above|before|prior)"),
    ),
    (
        "new_instructions",
        re.compile(r"\b(?:new|updated|real|actual|revised) (?:system )?instructions? ?:"),
    ),
    (
        "role_play",
        re.compile(
            r"\b(?:you are now (?:dan|an? (?:unrestricted|unfiltered|uncensored|different|new)"
            r" (?:ai|assistant|model|bot|persona)|in (?:developer|god|dan) mode)"
            r"|from now on,? you (?:will|must|are|shall) (?:act|respond|answer|behave|ignore|only)"
            r"|pretend (?:to be|you are)"
            r"|act as (?:an? )?(?:unrestricted|unfiltered|uncensored|jailbroken|evil)"
            r"|roleplay as|stay in character)\b"
        ),
    ),
    (
        "jailbreak",
        re.compile(
            r"\b(?:do anything now|dan mode|developer mode (?:enabled|on)|jailbreak(?:ed)?"
            r"|no (?:longer )?(?:bound|restricted) by|without (?:any )?(?:restrictions|filters"
            r"|guidelines))\b"
        ),
    ),
    (
        "prompt_leak",
        re.compile(
            r"\b(?:reveal|print|show|repeat|output|leak|tell me|what (?:is|are)) (?:me )?"
            r"(?:your|the) (?:full |entire |hidden |secret |initial |original )?"
            r"(?:system prompt|system message|instructions|initial prompt|hidden prompt)"
        ),
    ),
]
# Matched against the normalised text (case-insensitive), per line where anchored.
_DELIMITER_RULES: list[tuple[str, re.Pattern[str]]] = [
    (
        "delimiter_spoof",
        re.compile(
            r"<\|\s*(?:im_start|im_end|system|user|assistant|endoftext|eot_id|"
            r"start_header_id|end_header_id|begin_of_text)\s*\|>",
            re.I,
        ),
    ),
    ("delimiter_spoof", re.compile(r"\[/?INST\]|<<\s*/?SYS\s*>>|</?s>\s*\[INST\]", re.I)),
    (
        "delimiter_spoof",
        re.compile(
            r"^[ \t]*(?:#{1,6}|\*\*|\[|<)?[ \t]*(?:system|assistant|developer)"
            r"(?:[ \t]+(?:prompt|message|instructions?))?[ \t]*(?:\]|>|\*\*)?[ \t]*:"
            r"|^[ \t]*#{1,6}[ \t]*(?:system|instructions?)[ \t]*$",
            re.I | re.M,
        ),
    ),
    ("delimiter_spoof", re.compile(r"</?(?:system|instructions?|sys)>", re.I)),
]


@dataclass(frozen=True)
class ScreenInput:
    """One text to screen and where it came from (a field path such as ``rows[2].body``)."""

    text: str
    field: str | None = None


def _sample(text: str, start: int, end: int) -> str:
    snippet = text[max(start - 10, 0) : min(end + 10, len(text))]
    return snippet.replace("\n", " ")[:100]


def find_injection(
    text: str, field: str | None = None, extra: list[str] | None = None
) -> list[Flag]:
    """Injection flags for ``text`` (one per rule that matched, first match as sample)."""
    flags: list[Flag] = []
    seen: set[str] = set()
    skel = skeleton(text)
    rules = list(_SKELETON_RULES)
    rules.extend((f"custom:{p}", re.compile(p)) for p in extra or [])
    for rule, pattern in rules:
        m = pattern.search(skel)
        if m and rule not in seen:
            seen.add(rule)
            flags.append(Flag("injection", rule, field, _sample(skel, m.start(), m.end())))
    for rule, pattern in _DELIMITER_RULES:
        m = pattern.search(text)
        if m and rule not in seen:
            seen.add(rule)
            flags.append(Flag("injection", rule, field, _sample(text, m.start(), m.end())))
    return flags


def _decide(flags: list[Flag]) -> Action:
    worst = max((_ACTION_RANK[f.action] for f in flags), default=0)
    actions: tuple[Action, ...] = ("continue", "review", "reject")
    return actions[worst]


def screen(
    texts: list[ScreenInput],
    config: ScreenConfig,
    *,
    hidden: list[ScreenInput] | None = None,
    suspicious: list[Change] | None = None,
) -> tuple[ScreenReport, list[str]]:
    """Screen ``texts``; return the report and the texts, redacted if ``pii: redact``.

    ``hidden`` holds text that normalisation or extraction removed from view (smuggled
    tag characters, hidden HTML); each is flagged as ``hidden_text`` and also searched
    for injection phrases. ``suspicious`` are normalisation changes marked suspicious
    (bidi overrides, tag characters, variation-selector runs); each kind is flagged under
    the ``hidden_text`` policy too.
    """
    report = ScreenReport()
    outputs = [item.text for item in texts]
    if not config.enabled:
        return report, outputs
    for change in suspicious or []:
        sample = ", ".join(change.samples)[:100]
        report.flags.append(
            Flag("hidden_text", change.kind, change.field, sample, config.hidden_text)
        )
    for item in hidden or []:
        report.flags.append(
            Flag("hidden_text", "hidden_text", item.field, item.text[:100], config.hidden_text)
        )
        for flag in find_injection(item.text, item.field, config.extra_injection_patterns):
            flag.rule = f"hidden:{flag.rule}"
            report.flags.append(flag)
    for index, item in enumerate(texts):
        report.flags.extend(find_injection(item.text, item.field, config.extra_injection_patterns))
        matches: list[PiiMatch] = []
        if config.pii_kinds:
            matches = find_pii(item.text, config.pii_kinds, item.field)
        report.pii.extend(matches)
        if matches and config.pii == "redact":
            outputs[index] = redact(item.text, matches)
            report.redacted = True
    for flag in report.flags:
        if flag.kind == "injection":
            flag.action = config.injection
    kinds = sorted({m.kind for m in report.pii})
    if kinds:
        pii_action: Action = "continue"
        if config.pii == "review" or config.pii == "reject":
            pii_action = config.pii
        report.flags.append(Flag("pii", ",".join(kinds), None, "", pii_action))
    report.action = _decide(report.flags)
    return report, outputs
