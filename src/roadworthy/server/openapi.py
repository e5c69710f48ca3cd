"""Write the service's OpenAPI document: ``python -m roadworthy.server.openapi > docs/openapi.json``.

The document is committed so API changes show up in review; a test regenerates it and
fails when the committed copy is stale.
"""

from __future__ import annotations

import json
from typing import Any

from .app import build_app

__all__ = ["openapi_document", "render"]


def openapi_document() -> dict[str, Any]:
    return build_app().openapi()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
