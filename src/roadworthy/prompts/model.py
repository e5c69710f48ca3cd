"""The shape of a prompt file, and of the resolved document a version stores.

A file may reference partials and a schema file; a *version* stores the prompt with those
references expanded (:class:`PromptDoc`), so it stays the same forever even when a shared
partial or schema file changes later — that change makes a new version instead.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

__all__ = [
    "EvaluationCriteria",
    "IncludePart",
    "MessagePart",
    "PartialFile",
    "PromptDoc",
    "PromptFile",
    "PromptSettings",
    "PromptVariant",
    "VariableSpec",
]

VariableType = Literal["string", "integer", "number", "boolean", "list", "object", "any"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariableSpec(_Strict):
    type: VariableType = "string"
    required: bool = True
    default: Any = None
    description: str | None = None


class MessagePart(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class IncludePart(_Strict):
    """``- include: house-style`` inserts the messages of ``prompts/partials/house-style.yaml``."""

    include: str


def _part_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "include" if "include" in value else "message"
    return "include" if isinstance(value, IncludePart) else "message"


Part = Annotated[
    Annotated[MessagePart, Tag("message")] | Annotated[IncludePart, Tag("include")],
    Discriminator(_part_kind),
]


class PromptSettings(_Strict):
    model: str | None = None
    tier: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    stop: list[str] = []
    response_format: Literal["text", "json"] | None = None
    schema_file: str | None = Field(
        None, alias="schema", description="JSON Schema file (relative to the project)"
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EvaluationCriteria(_Strict):
    suite: str | None = None
    thresholds: dict[str, float] = {}


class PromptVariant(_Strict):
    """A version of the prompt written for one model (e.g. a fallback with other habits)."""

    messages: list[Part] | None = None
    settings: PromptSettings | None = None


class PromptFile(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str | None = None
    variables: dict[str, VariableSpec] = {}
    messages: list[Part] | None = None
    text: str | None = Field(
        None, description="a single-user-message template, instead of messages"
    )
    settings: PromptSettings = PromptSettings()
    evaluation: EvaluationCriteria | None = None
    variants: dict[str, PromptVariant] = {}
    samples: list[dict[str, Any]] = Field(
        [], description="example variables, used to measure rendered token counts"
    )

    @model_validator(mode="after")
    def _one_template(self) -> PromptFile:
        if (self.messages is None) == (self.text is None):
            raise ValueError("give exactly one of 'messages' or 'text'")
        return self


class PartialFile(_Strict):
    description: str | None = None
    messages: list[MessagePart] = Field(min_length=1)


class PromptDoc(_Strict):
    """A prompt with partials and schema expanded: what a version stores and renders."""

    id: str
    description: str | None = None
    variables: dict[str, VariableSpec] = {}
    messages: list[MessagePart]
    settings: PromptSettings = PromptSettings()
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    evaluation: EvaluationCriteria | None = None
    variants: dict[str, PromptVariantDoc] = {}
    samples: list[dict[str, Any]] = []

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def content(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def content_hash(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def for_model(self, model_name: str | None) -> PromptDoc:
        """This prompt as written for ``model_name`` (its variant), or as is."""
        variant = self.variants.get(model_name or "")
        if variant is None:
            return self
        return self.model_copy(
            update={
                "messages": variant.messages or self.messages,
                "settings": variant.settings or self.settings,
                "variants": {},
            }
        )


class PromptVariantDoc(_Strict):
    messages: list[MessagePart] | None = None
    settings: PromptSettings | None = None


PromptDoc.model_rebuild()
