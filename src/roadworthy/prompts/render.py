"""Render prompt templates safely.

Templates come from the project's prompt files and are trusted; the values filled in come
from inputs and are not. Jinja2's sandbox blocks access to Python internals from template
code, ``StrictUndefined`` turns a missing variable into an error instead of an empty
string, and values are only ever passed as data, so an input that contains ``{{ ... }}``
renders literally. Declared variable types are checked before rendering, so a list where
a string was promised is an error that names the variable, not a silently odd prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from ..errors import RoadworthyError
from ..providers.base import Message

if TYPE_CHECKING:
    from .model import PromptDoc, VariableSpec

__all__ = ["PromptRenderError", "bind_variables", "render_messages", "render_text", "sandbox"]


class PromptRenderError(RoadworthyError):
    """A template could not be rendered with the given values."""


sandbox = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "list": (list, tuple),
    "object": (dict,),
}


@lru_cache(maxsize=512)
def _compile(source: str) -> Any:
    return sandbox.from_string(source)


def render_text(source: str, variables: Mapping[str, Any]) -> str:
    try:
        return str(_compile(source).render(**variables))
    except TemplateError as exc:
        raise PromptRenderError(f"template error: {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:  # raised by filters on bad values
        raise PromptRenderError(f"template error: {type(exc).__name__}: {exc}") from None


def bind_variables(
    specs: Mapping[str, VariableSpec], values: Mapping[str, Any], *, prompt_id: str
) -> dict[str, Any]:
    """The declared variables, with defaults applied and types checked; extras are ignored."""
    bound: dict[str, Any] = {}
    for name, spec in specs.items():
        if name not in values or values[name] is None:
            if spec.default is not None:
                bound[name] = spec.default
            elif spec.required:
                raise PromptRenderError(f"prompt {prompt_id!r}: variable {name!r} is required")
            else:
                bound[name] = None
            continue
        value = values[name]
        expected = _TYPES.get(spec.type)
        wrong_bool = isinstance(value, bool) and spec.type in ("integer", "number")
        if expected is not None and (not isinstance(value, expected) or wrong_bool):
            raise PromptRenderError(
                f"prompt {prompt_id!r}: variable {name!r} should be {spec.type}, "
                f"got {type(value).__name__}"
            )
        bound[name] = value
    return bound


def render_messages(prompt: PromptDoc, values: Mapping[str, Any]) -> tuple[Message, ...]:
    """Render every message; errors name the prompt and the message index."""
    variables = bind_variables(prompt.variables, values, prompt_id=prompt.id)
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
