"""First-cut input validation against a pipeline's declared fields.

Each failure is an :class:`~roadworthy.errors.InputRejected` with a stable code, so
rejections can be counted and searched; the full input layer (decoding, normalisation,
screening) builds on these codes.
"""

from __future__ import annotations

from typing import Any

from ..config.model import FieldSpec, InputSpec
from ..errors import InputRejected

__all__ = ["validate_input"]

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _check_field(name: str, spec: FieldSpec, value: Any) -> None:
    expected = _PY_TYPES[spec.type]
    is_bool = isinstance(value, bool)
    if not isinstance(value, expected) or (is_bool and spec.type in ("integer", "number")):
        raise InputRejected(
            "wrong_type", f"expected {spec.type}, got {type(value).__name__}", field=name
        )
    if isinstance(value, str):
        if "\x00" in value:
            raise InputRejected("nul_byte", "text contains a NUL byte", field=name)
        if not spec.allow_empty and not value.strip():
            raise InputRejected("empty", "text is empty", field=name)
        if spec.max_chars is not None and len(value) > spec.max_chars:
            raise InputRejected(
                "too_long", f"{len(value)} characters, limit {spec.max_chars}", field=name
            )
        if spec.max_bytes is not None:
            size = len(value.encode("utf-8", "surrogatepass"))
            if size > spec.max_bytes:
                raise InputRejected(
                    "too_large", f"{size} bytes, limit {spec.max_bytes}", field=name
                )


def validate_input(data: Any, spec: InputSpec) -> dict[str, Any]:
    """Return the input if it satisfies ``spec``; raise :class:`InputRejected` otherwise."""
    if not isinstance(data, dict):
        raise InputRejected("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    for name, field_spec in spec.fields.items():
        if name not in data or data[name] is None:
            if field_spec.required:
                raise InputRejected("missing_field", "required field is missing", field=name)
            continue
        _check_field(name, field_spec, data[name])
    return data
