"""Structure-aware, token-aware chunking.

``chunk(text, max_tokens)`` returns :class:`Chunk` objects whose offsets point back into
the source exactly and whose token counts are measured with a real tokenizer (see
:mod:`.counters`). Three splitters share one engine: plain text (:mod:`.text`),
Markdown with code fences and tables kept whole (:mod:`.markdown`), and conversation
transcripts kept turn by turn (:mod:`.conversation`).
"""

from __future__ import annotations

from ._engine import Chunk
from .api import Kind, chunk, detect_kind
from .counters import (
    EstimateCounter,
    HFTokenizerCounter,
    LlamaCounter,
    Measured,
    TiktokenCounter,
    TokenCounter,
    default_counter,
    get_counter,
    minilm_tokenizer_path,
)

__all__ = [
    "Chunk",
    "EstimateCounter",
    "HFTokenizerCounter",
    "Kind",
    "LlamaCounter",
    "Measured",
    "TiktokenCounter",
    "TokenCounter",
    "chunk",
    "default_counter",
    "detect_kind",
    "get_counter",
    "minilm_tokenizer_path",
]
