"""The lean chat path answers exactly as the FastAPI route does, and falls through to it.

Each request goes to two services over identical projects: one as shipped (the lean path
in front) and one with the lean path switched off (``app.lean = None``, the FastAPI route
alone). Status, body (less the per-call id and timestamp), headers, what the provider was
asked and what the ledger holds must agree; and the lean path must actually have answered
the plain requests (no fall-through), and left everything else to the route.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roadworthy.config import load_project
from roadworthy.config.server import ServerConfig
from roadworthy.pipeline import Workspace
from roadworthy.providers import Reply, ScriptedProvider
from roadworthy.server import create_app, fast_chat
from roadworthy.store.keys import KeyStore

from ..conftest import SCRIPTED_CONFIG, copied, write_project

PATH = "/v1/chat/completions"
HI = [{"role": "user", "content": "hi"}]
SETTINGS = ServerConfig(max_body_bytes=4096)


class Service:
    def __init__(self, root: Path, replies: list[Reply], lean: bool, key_cache_s: float) -> None:
        self.provider = ScriptedProvider(replies, name="fake")
        self.ws = Workspace(
            load_project(write_project(root, SCRIPTED_CONFIG)), providers={"fake": self.provider}
        )
        self.keys = KeyStore(self.ws.store.engine)
        self.key_id, self.token = self.keys.create("tests", ("run",))
        settings = SETTINGS.model_copy(update={"key_cache_s": key_cache_s})
        app = create_app(self.ws, settings)
        if not lean:
            app.lean = None
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.fixture
def fell_through(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many requests the lean path handed to the FastAPI route."""
    count: list[int] = []
    replay = fast_chat._replay

    def counted(received: Any, receive: Any) -> Any:
        count.append(1)
        return replay(received, receive)

    monkeypatch.setattr(fast_chat, "_replay", counted)
    yield count


def pair(tmp_path: Path, replies: list[Reply], key_cache_s: float = 5.0) -> tuple[Service, Service]:
    return (
        Service(tmp_path / "lean", replies, True, key_cache_s),
        Service(tmp_path / "full", replies, False, key_cache_s),
    )


def _auth(service: Service, auth: str) -> dict[str, str]:
    if auth == "bearer":
        return {"authorization": f"Bearer {service.token}"}
    if auth == "x-api-key":
        return {"x-api-key": service.token}
    if auth == "bad":
        return {"authorization": "Bearer rw_nope_nope"}
    return {}


def _normal(resp: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    body = resp.json()
    if resp.status_code == 200:
        assert body.pop("id") == f"chatcmpl-{resp.headers['x-roadworthy-trace-id']}"
        assert isinstance(body.pop("created"), int)
    headers = {
        k: v
        for k, v in resp.headers.items()
        if k not in {"x-roadworthy-trace-id", "x-roadworthy-overhead-ms", "content-length"}
    }
    return resp.status_code, body, headers


def _asked(service: Service) -> list[Any]:
    """What the provider was asked, less the timeout (what was left of the deadline)."""
    return [dataclasses.replace(r, timeout_s=None) for r in service.provider.requests]


async def same(lean: Service, full: Service, auth: str = "bearer", **kwargs: Any) -> httpx.Response:
    headers = dict(kwargs.pop("headers", {}))
    answers = []
    for service in (lean, full):
        resp = await service.client.post(
            PATH, headers={**headers, **_auth(service, auth)}, **kwargs
        )
        answers.append(resp)
    a, b = answers
    assert _normal(a) == _normal(b), (a.text, b.text)
    assert list(a.headers) == list(b.headers)
    assert _asked(lean) == _asked(full)
    calls = [
        [(c["status"], c["step"], c["model"]) for c in copied(s.ws).list_calls()]
        for s in (lean, full)
    ]
    assert calls[0] == calls[1]
    return a


PLAIN: list[dict[str, Any]] = [
    {"model": "cheap", "messages": HI},
    {"model": "cheap", "messages": [{"role": "developer", "content": "be brief"}, *HI]},
    {
        "model": "cheap",
        "messages": [
            {"role": "system", "content": None},
            {"role": "user", "content": "x", "name": "u"},
        ],
        "temperature": 1,
        "max_tokens": 20,
        "max_completion_tokens": 10,
        "stop": "END",
        "seed": 7,
        "n": 1,
        "stream": False,
        "user": "me",
        "response_format": {"type": "json_object"},
        "tools": [],  # an OpenAI field roadworthy ignores
    },
    {"model": "cheap", "messages": HI, "stop": ["a", "b"], "response_format": {"type": "text"}},
]


@pytest.mark.parametrize("body", PLAIN)
@pytest.mark.parametrize("auth", ["bearer", "x-api-key"])
async def test_plain_requests_take_the_lean_path_with_the_same_answer(
    tmp_path: Path, fell_through: list[int], body: dict[str, Any], auth: str
) -> None:
    lean, full = pair(tmp_path, [Reply(text="hello", input_tokens=3, output_tokens=1)])
    resp = await same(lean, full, auth, json=body)
    assert resp.status_code == 200
    assert float(resp.headers["x-roadworthy-overhead-ms"]) >= 0
    (call,) = copied(lean.ws).list_calls()
    assert call["trace_id"] == resp.headers["x-roadworthy-trace-id"]
    assert fell_through == []


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (Reply(error="RateLimited", retry_after=7), 429),
        (Reply(error="ProviderUnavailable"), 502),
        (Reply(error="Timeout"), 504),
    ],
)
async def test_upstream_errors_are_the_same(
    tmp_path: Path, fell_through: list[int], reply: Reply, status: int
) -> None:
    lean, full = pair(tmp_path, [reply])
    resp = await same(lean, full, json={"model": "cheap", "messages": HI})
    assert resp.status_code == status
    assert fell_through == []


@pytest.mark.parametrize(
    ("auth", "kwargs", "status"),
    [
        ("bad", {"json": {"model": "cheap", "messages": HI}}, 401),
        ("none", {"json": {"model": "cheap", "messages": HI}}, 401),
        ("bearer", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
        ("bearer", {"content": b"", "headers": {"content-type": "application/json"}}, 400),
        ("bearer", {"content": b"[1]", "headers": {"content-type": "application/json"}}, 400),
        ("bearer", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415),
        ("bearer", {"json": {"model": "gpt-9", "messages": HI}}, 404),
        ("bearer", {"json": {"messages": HI}}, 400),
        ("bearer", {"json": {"model": "cheap", "messages": []}}, 400),
        ("bearer", {"json": {"model": "cheap", "messages": HI, "temperature": 3}}, 400),
        ("bearer", {"json": {"model": "cheap", "messages": HI, "temperature": "hot"}}, 400),
        ("bearer", {"json": {"model": "cheap", "messages": HI, "max_tokens": 0}}, 400),
        ("bearer", {"json": {"model": "cheap", "messages": HI, "n": 2}}, 400),
        ("bearer", {"json": {"model": "cheap", "messages": HI, "stream": None}}, 400),
        (
            "bearer",
            {"json": {"model": "cheap", "messages": [{"role": "tool", "content": "x"}]}},
            400,
        ),
        (
            "bearer",
            {
                "json": {
                    "model": "cheap",
                    "messages": [{"role": "user", "content": [{"type": "image_url"}]}],
                }
            },
            400,
        ),
        (
            "bearer",
            {
                "json": {
                    "model": "cheap",
                    "messages": HI,
                    "response_format": {"type": "json_schema"},
                }
            },
            400,
        ),
        ("bearer", {"content": b"x" * 5000, "headers": {"content-type": "application/json"}}, 413),
        (
            "bearer",
            {
                "json": {"model": "cheap", "messages": HI},
                "headers": {"x-roadworthy-deadline-s": "0.01"},
            },
            400,
        ),
        (
            "bearer",
            {
                "json": {"model": "cheap", "messages": HI},
                "headers": {"x-roadworthy-deadline-s": "nan"},
            },
            400,
        ),
    ],
)
async def test_bad_requests_fall_through_to_the_same_error(
    tmp_path: Path, fell_through: list[int], auth: str, kwargs: dict[str, Any], status: int
) -> None:
    lean, full = pair(tmp_path, [Reply(text="hello")])
    resp = await same(lean, full, auth, **kwargs)
    assert resp.status_code == status, resp.text
    assert fell_through == [1]


async def test_chunked_oversize_body_is_413_on_both_paths(
    tmp_path: Path, fell_through: list[int]
) -> None:
    lean, full = pair(tmp_path, [Reply(text="hello")])

    async def chunks() -> Any:
        for _ in range(5):
            yield b"x" * 1000

    for service in (lean, full):
        resp = await service.client.post(
            PATH,
            content=chunks(),
            headers={"content-type": "application/json", **_auth(service, "bearer")},
        )
        assert resp.status_code == 413 and resp.json()["error"]["code"] == "body_too_large", (
            service is lean,
            resp.text,
        )
    assert fell_through == []  # answered by the lean path, which stopped reading


async def test_deadline_header_and_streaming(tmp_path: Path, fell_through: list[int]) -> None:
    lean, full = pair(tmp_path, [Reply(text="hello")])
    headers = {"x-roadworthy-deadline-s": "30"}
    resp = await same(lean, full, json={"model": "cheap", "messages": HI}, headers=headers)
    assert resp.status_code == 200 and fell_through == []
    stream = await lean.client.post(
        PATH,
        json={"model": "cheap", "messages": HI, "stream": True},
        headers=_auth(lean, "bearer"),
    )
    assert stream.status_code == 200 and stream.text.endswith("data: [DONE]\n\n")
    assert fell_through == [1]


async def test_revoked_key_stops_working_after_the_key_cache(tmp_path: Path) -> None:
    lean, _ = pair(tmp_path, [Reply(text="hello")], key_cache_s=0)
    body = {"model": "cheap", "messages": HI}
    auth = _auth(lean, "bearer")
    assert (await lean.client.post(PATH, json=body, headers=auth)).status_code == 200
    assert lean.keys.revoke(lean.key_id.id)
    resp = await lean.client.post(PATH, json=body, headers=auth)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"
