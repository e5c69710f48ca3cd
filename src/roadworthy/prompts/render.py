"""Render prompt templates safely.

Templates come from the project's prompt files and are trusted; the values filled in come
from inputs and are not. Jinja2's sandbox blocks access to Python internals from template
code, ``StrictUndefined`` turns a missing variable into an error instead of an empty
string, and values are only ever passed as data, so an input that contains ``{{ ... }}``
renders literally.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from ..config.model import PromptFile
from ..errors import RoadworthyError
from ..providers.base import Message

__all__ = ["PromptRenderError", "render_messages", "render_text"]


class PromptRenderError(RoadworthyError):
    """A template could not be rendered with the given values."""


_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=512)
def _compile(source: str) -> Any:
    return _env.from_string(source)


def render_text(source: str, variables: Mapping[str, Any]) -> str:
    try:
        return str(_compile(source).render(**variables))
    except TemplateError as exc:
        raise PromptRenderError(f"template error: {exc}") from None


def render_messages(prompt: PromptFile, variables: Mapping[str, Any]) -> tuple[Message, ...]:
    """Render every message of ``prompt``; errors name the prompt and the message index."""
    out: list[Message] = []
    for index, message in enumerate(prompt.messages):
        try:
            content = render_text(message.content, variables)
        except PromptRenderError as exc:
            raise PromptRenderError(
                f"prompt {prompt.id!r} message {index} ({message.role}): {exc}"
            ) from None
        out.append(Message(role=message.role, content=content))
    return tuple(out)
