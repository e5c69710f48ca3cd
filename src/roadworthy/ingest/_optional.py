"""Import optional dependencies on first use, failing with the ``pip install`` line.

Heavy format support (PDF, audio) lives in the ``[formats]`` extra so the core install
stays light. Modules come back as ``ModuleType`` (attributes typed ``Any``) so that
``mypy --strict`` passes whether or not the extra is installed.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import ConfigError

__all__ = ["require"]

# module -> (distribution, extra or None for a core dependency)
_PACKAGES: dict[str, tuple[str, str | None]] = {
    "charset_normalizer": ("charset-normalizer", None),
    "ftfy": ("ftfy", None),
    "pypdf": ("pypdf", "formats"),
    "soundfile": ("soundfile", "formats"),
    "soxr": ("soxr", "formats"),
    "numpy": ("numpy", "formats"),
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`ConfigError` naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        dist, extra = _PACKAGES.get(module, (module, None))
        hint = f"pip install 'roadworthy[{extra}]'" if extra else f"pip install {dist}"
        raise ConfigError(
            f"{purpose} needs the {dist} package ({exc}); install it: {hint}"
        ) from None
