"""The prompt registry: immutable versions, movable labels, and resolution that never fails a request.

Resolution of ``id@label`` or ``id@version``:

* versions are immutable, so a version once read is cached for the life of the process;
* a label is cached for ``ttl_s`` (default 30 s), which is how a promote or a rollback
  reaches running processes without a deploy or a restart;
* when the store cannot be read, the last version this process resolved for that
  reference is served and the event is logged; if nothing was ever resolved, the prompt
  file itself is used. A registry outage never turns into a failed request.

A prompt that is referenced but was never synced is synced on first use, and its first
version gets the default label, so a new project works before anyone runs
``roadworthy prompts sync``. After that, files change what runs only through
``sync`` + ``promote``.
"""

from __future__ import annotations

import getpass
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from ..errors import ConfigError
from ..store import Store
from ..store.prompts import LabelMove, PromptVersion
from ..store.tables import eval_runs
from .files import PromptsFolder, PromptSource, load_prompts, parse_ref
from .model import PromptDoc
from .render import PromptRenderError, render_messages

__all__ = ["PromptRegistry", "ResolvedPrompt", "SyncReport", "default_actor", "estimate_tokens"]

log = logging.getLogger("roadworthy.prompts")

FILE_VERSION = None  # version of a prompt served straight from its file
PROTECTED_LABELS = frozenset({"production"})


def default_actor() -> str:
    return os.environ.get("ROADWORTHY_ACTOR") or getpass.getuser()


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters per token for English BPE vocabularies).

    Good enough to compare two versions of one prompt; exact counts come from a real
    tokenizer when one is configured.
    """
    return max(1, (len(text) + 3) // 4) if text else 0


@dataclass(frozen=True)
class ResolvedPrompt:
    doc: PromptDoc
    version: int | None  # None: served from the file, the registry never answered
    label: str | None
    stale: bool = False

    @property
    def ref(self) -> str:
        where = f"@{self.label}" if self.label else ""
        return f"{self.doc.id}{where} (v{self.version if self.version is not None else 'file'})"


@dataclass
class SyncReport:
    created: list[PromptVersion] = field(default_factory=list)
    unchanged: list[PromptVersion] = field(default_factory=list)
    labelled: list[LabelMove] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class PromptRegistry:
    def __init__(
        self,
        store: Store,
        project_root: Path,
        *,
        ttl_s: float = 30.0,
        default_label: str = "production",
        clock: Callable[[], float] = time.monotonic,
        token_counter: Callable[[str], int] = estimate_tokens,
    ) -> None:
        self.store = store
        self.root = project_root
        self.ttl_s = ttl_s
        self.default_label = default_label
        self.clock = clock
        self.count_tokens = token_counter
        self._files: PromptsFolder | None = None
        self._versions: dict[tuple[str, int], PromptDoc] = {}
        self._labels: dict[tuple[str, str], tuple[int, float]] = {}
        self._last_good: dict[str, ResolvedPrompt] = {}
        self._lock = threading.Lock()

    # -- files -------------------------------------------------------------------------

    @property
    def files(self) -> PromptsFolder:
        if self._files is None:
            self._files = load_prompts(self.root)
        return self._files

    def file_source(self, prompt_id: str) -> PromptSource:
        source = self.files.get(prompt_id)
        if source is None:
            raise ConfigError(f"no prompt with id {prompt_id!r} in {self.root / 'prompts'}")
        return source

    def rendered_tokens(self, doc: PromptDoc) -> float | None:
        """Mean rendered token count over the prompt's sample variables."""
        counts = []
        for sample in doc.samples:
            try:
                messages = render_messages(doc, sample)
            except PromptRenderError:
                continue
            counts.append(sum(self.count_tokens(m.content) for m in messages))
        return sum(counts) / len(counts) if counts else None

    # -- sync and labels ----------------------------------------------------------------

    def sync(self, *, actor: str | None = None, prompt_ids: list[str] | None = None) -> SyncReport:
        """Create a version for each prompt file whose content changed since its latest."""
        self._files = None
        folder = self.files
        report = SyncReport(problems=list(folder.problems))
        who = actor or default_actor()
        for prompt_id, source in sorted(folder.prompts.items()):
            if prompt_ids is not None and prompt_id not in prompt_ids:
                continue
            doc = source.doc
            version, created = self.store.prompts.add_version(
                prompt_id,
                doc.content_hash(),
                doc.content(),
                source_path=str(source.path.relative_to(self.root)),
                rendered_tokens=self.rendered_tokens(doc),
                created_by=who,
            )
            (report.created if created else report.unchanged).append(version)
            if created and not self.store.prompts.labels(prompt_id):
                report.labelled.append(
                    self.store.prompts.move_label(
                        prompt_id,
                        self.default_label,
                        version.version,
                        action="promote",
                        actor=who,
                        reason="first version of a new prompt",
                    )
                )
        return report

    def evaluation_gate(self, prompt_id: str, version: int) -> str | None:
        """Why ``version`` may not go to production yet, or None when its criteria pass.

        A version whose file declares ``evaluation.suite`` needs a finished evaluation
        run of that suite on exactly this content that passed its gate.
        """
        row = self.store.prompts.get(prompt_id, version)
        if row is None:
            return None
        doc = PromptDoc.model_validate(row.content)
        if doc.evaluation is None or doc.evaluation.suite is None:
            return None
        suite = doc.evaluation.suite
        with self.store.engine.connect() as conn:
            passed = conn.execute(
                sa.select(eval_runs.c.passed)
                .where(
                    eval_runs.c.suite == suite,
                    eval_runs.c.prompt_id == prompt_id,
                    eval_runs.c.prompt_hash == row.content_hash,
                    eval_runs.c.status == "finished",
                )
                .order_by(eval_runs.c.started_at.desc())
                .limit(1)
            ).scalar()
        if passed is None:
            return (
                f"{prompt_id} v{version} has no evaluation run of suite {suite!r} "
                f"(hint: roadworthy eval SUITE --prompt {prompt_id}@{version})"
            )
        if not passed:
            return f"the latest {suite!r} evaluation of {prompt_id} v{version} failed its gate"
        return None

    def promote(
        self,
        prompt_id: str,
        version: int,
        *,
        label: str,
        actor: str | None = None,
        why: str | None = None,
        force: bool = False,
    ) -> LabelMove:
        """Move ``label`` to ``version``; production needs the version's evaluation to pass.

        ``force`` overrides a failed or missing evaluation, but only with a reason, and
        the audit row says it was forced.
        """
        if label in PROTECTED_LABELS:
            blocked = self.evaluation_gate(prompt_id, version)
            if blocked is not None and not force:
                raise ConfigError(
                    f"refusing to promote to {label}: {blocked} (override with --force --why)"
                )
            if blocked is not None:
                if not why:
                    raise ConfigError("--force needs --why: the reason goes into the audit trail")
                why = f"FORCED past evaluation ({blocked}): {why}"
        if self.store.prompts.get(prompt_id, version) is None:
            known = [v.version for v in self.store.prompts.versions(prompt_id)]
            raise ConfigError(
                f"prompt {prompt_id!r} has no version {version} (versions: {known or 'none'}; "
                "hint: run roadworthy prompts sync)"
            )
        move = self.store.prompts.move_label(
            prompt_id, label, version, action="promote", actor=actor or default_actor(), reason=why
        )
        self._labels.pop((prompt_id, label), None)
        return move

    def rollback(
        self, prompt_id: str, *, label: str, actor: str | None = None, why: str | None = None
    ) -> LabelMove:
        """Point ``label`` back at the version it pointed to before its latest move."""
        moves = self.store.prompts.history(prompt_id, label)
        if not moves or moves[-1].from_version is None:
            raise ConfigError(f"{prompt_id}@{label} has no earlier target to roll back to")
        move = self.store.prompts.move_label(
            prompt_id,
            label,
            moves[-1].from_version,
            action="rollback",
            actor=actor or default_actor(),
            reason=why,
        )
        self._labels.pop((prompt_id, label), None)
        return move

    # -- resolution ---------------------------------------------------------------------

    def _version_doc(self, prompt_id: str, version: int) -> PromptDoc | None:
        key = (prompt_id, version)
        if key not in self._versions:
            row = self.store.prompts.get(prompt_id, version)
            if row is None:
                return None
            self._versions[key] = PromptDoc.model_validate(row.content)
        return self._versions[key]

    def _label_version(self, prompt_id: str, label: str) -> int | None:
        key = (prompt_id, label)
        cached = self._labels.get(key)
        if cached is not None and self.clock() - cached[1] < self.ttl_s:
            return cached[0]
        version = self.store.prompts.label(prompt_id, label)
        if (
            version is None
            and label == self.default_label
            and not self.store.prompts.versions(prompt_id)
        ):
            self.sync(prompt_ids=[prompt_id], actor="roadworthy (first use)")
            version = self.store.prompts.label(prompt_id, label)
        if version is not None:
            self._labels[key] = (version, self.clock())
        return version

    def resolve(self, ref: str) -> ResolvedPrompt:
        """``id``, ``id@label`` or ``id@N`` to a renderable prompt; never fails on an outage."""
        prompt_id, label, version = parse_ref(ref)
        if version is None and label is None:
            label = self.default_label
        try:
            with self._lock:
                if version is None:
                    assert label is not None
                    version = self._label_version(prompt_id, label)
                    if version is None:
                        raise ConfigError(
                            f"prompt {prompt_id!r} has no label {label!r} "
                            f"(labels: {sorted(self.store.prompts.labels(prompt_id)) or 'none'})"
                        )
                doc = self._version_doc(prompt_id, version)
                if doc is None:
                    raise ConfigError(f"prompt {prompt_id!r} has no version {version}")
            resolved = ResolvedPrompt(doc=doc, version=version, label=label)
            self._last_good[ref] = resolved
            return resolved
        except sa.exc.SQLAlchemyError as exc:
            return self._fallback(ref, prompt_id, label, exc)

    def _fallback(
        self, ref: str, prompt_id: str, label: str | None, exc: Exception
    ) -> ResolvedPrompt:
        last = self._last_good.get(ref)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        if last is not None:
            log.warning(
                "prompt registry unreadable (%s); serving last known good %s", reason, last.ref
            )
            return ResolvedPrompt(doc=last.doc, version=last.version, label=last.label, stale=True)
        source = self.file_source(prompt_id)
        log.warning(
            "prompt registry unreadable (%s) and %s never loaded; serving %s",
            reason,
            ref,
            source.path,
        )
        return ResolvedPrompt(doc=source.doc, version=FILE_VERSION, label=label, stale=True)
