"""Prompt versions, labels and the audit trail of label moves.

Two processes syncing at once must not both create "version 2": the unique constraint on
``(prompt_id, version)`` makes the loser's insert fail, and :meth:`PromptStore.add_version`
then re-reads and either finds its content already there or takes the next number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from .store import now
from .tables import label_moves, prompt_labels, prompt_versions

__all__ = ["LabelMove", "PromptStore", "PromptVersion"]


@dataclass(frozen=True)
class PromptVersion:
    prompt_id: str
    version: int
    content_hash: str
    content: dict[str, Any]
    created_at: datetime
    source_path: str | None = None
    rendered_tokens: float | None = None
    created_by: str | None = None


@dataclass(frozen=True)
class LabelMove:
    prompt_id: str
    label: str
    from_version: int | None
    to_version: int
    action: str
    actor: str
    reason: str | None
    moved_at: datetime


def _version(row: Any) -> PromptVersion:
    return PromptVersion(
        prompt_id=row.prompt_id,
        version=int(row.version),
        content_hash=row.content_hash,
        content=row.content,
        created_at=row.created_at,
        source_path=row.source_path,
        rendered_tokens=row.rendered_tokens,
        created_by=row.created_by,
    )


class PromptStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def latest(self, prompt_id: str) -> PromptVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                prompt_versions.select()
                .where(prompt_versions.c.prompt_id == prompt_id)
                .order_by(prompt_versions.c.version.desc())
                .limit(1)
            ).first()
        return _version(row) if row else None

    def get(self, prompt_id: str, version: int) -> PromptVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                prompt_versions.select().where(
                    prompt_versions.c.prompt_id == prompt_id, prompt_versions.c.version == version
                )
            ).first()
        return _version(row) if row else None

    def versions(self, prompt_id: str) -> list[PromptVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                prompt_versions.select()
                .where(prompt_versions.c.prompt_id == prompt_id)
                .order_by(prompt_versions.c.version)
            )
            return [_version(r) for r in rows]

    def prompt_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(prompt_versions.c.prompt_id).distinct())
            return sorted(str(r[0]) for r in rows)

    def add_version(
        self,
        prompt_id: str,
        content_hash: str,
        content: dict[str, Any],
        *,
        source_path: str | None = None,
        rendered_tokens: float | None = None,
        created_by: str | None = None,
    ) -> tuple[PromptVersion, bool]:
        """Store ``content`` as the next version unless the latest already has it.

        Returns the version and whether it was created now.
        """
        for _ in range(20):
            latest = self.latest(prompt_id)
            if latest is not None and latest.content_hash == content_hash:
                return latest, False
            number = (latest.version if latest else 0) + 1
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        prompt_versions.insert().values(
                            prompt_id=prompt_id,
                            version=number,
                            content_hash=content_hash,
                            content=content,
                            source_path=source_path,
                            rendered_tokens=rendered_tokens,
                            created_by=created_by,
                            created_at=now(),
                        )
                    )
            except sa.exc.IntegrityError:
                continue  # another process took this number; look again
            created = self.get(prompt_id, number)
            assert created is not None
            return created, True
        raise RuntimeError(f"could not allocate a version for prompt {prompt_id!r}")

    def labels(self, prompt_id: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(prompt_labels.c.label, prompt_labels.c.version).where(
                    prompt_labels.c.prompt_id == prompt_id
                )
            )
            return {str(label): int(version) for label, version in rows}

    def label(self, prompt_id: str, label: str) -> int | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(prompt_labels.c.version).where(
                    prompt_labels.c.prompt_id == prompt_id, prompt_labels.c.label == label
                )
            ).scalar()
        return int(value) if value is not None else None

    def move_label(
        self,
        prompt_id: str,
        label: str,
        version: int,
        *,
        action: str,
        actor: str,
        reason: str | None,
    ) -> LabelMove:
        """Point ``label`` at ``version`` and write the audit row, in one transaction."""
        stamp = now()
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                    {"k": f"{prompt_id}@{label}"},
                )
            current = conn.execute(
                sa.select(prompt_labels.c.version).where(
                    prompt_labels.c.prompt_id == prompt_id, prompt_labels.c.label == label
                )
            ).scalar()
            if current is None:
                conn.execute(
                    prompt_labels.insert().values(
                        prompt_id=prompt_id, label=label, version=version, updated_at=stamp
                    )
                )
            else:
                conn.execute(
                    prompt_labels.update()
                    .where(prompt_labels.c.prompt_id == prompt_id, prompt_labels.c.label == label)
                    .values(version=version, updated_at=stamp)
                )
            move = LabelMove(
                prompt_id=prompt_id,
                label=label,
                from_version=int(current) if current is not None else None,
                to_version=version,
                action=action,
                actor=actor,
                reason=reason,
                moved_at=stamp,
            )
            conn.execute(label_moves.insert().values(**move.__dict__))
        return move

    def history(self, prompt_id: str, label: str | None = None) -> list[LabelMove]:
        query = label_moves.select().where(label_moves.c.prompt_id == prompt_id)
        if label is not None:
            query = query.where(label_moves.c.label == label)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(label_moves.c.id))
            return [
                LabelMove(
                    prompt_id=r.prompt_id,
                    label=r.label,
                    from_version=r.from_version,
                    to_version=int(r.to_version),
                    action=r.action,
                    actor=r.actor,
                    reason=r.reason,
                    moved_at=r.moved_at,
                )
                for r in rows
            ]
