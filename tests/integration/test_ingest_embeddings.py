"""The centroid route classifier with a real sentence-transformers model, when installed."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

import pytest

from roadworthy.ingest import IngestConfig, Ingestor
from tests.conftest import need

pytestmark = pytest.mark.integration


def test_centroid_routing_with_minilm() -> None:
    try:
        st = importlib.import_module("sentence_transformers")
    except ImportError:
        need("sentence-transformers is not installed (pip install 'roadworthy[embeddings]')")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        model = st.SentenceTransformer("all-MiniLM-L6-v2", device="cpu")
    except Exception as exc:
        need(f"all-MiniLM-L6-v2 is not available offline: {exc}")

    def embed(texts: Sequence[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in model.encode(list(texts))]

    config = IngestConfig.model_validate(
        {
            "routes": {
                "classifier": {
                    "examples": {
                        "billing": [
                            "I was charged twice",
                            "refund my invoice",
                            "wrong amount on my bill",
                        ],
                        "technical": [
                            "the app crashes on start",
                            "I cannot log in",
                            "error 500 on save",
                        ],
                    }
                }
            }
        }
    )
    ingestor = Ingestor(config, embed=embed)
    result = ingestor.ingest("My credit card was billed two times this month")
    assert result.route is not None and result.route.label == "billing"
    result = ingestor.ingest("The application freezes whenever I open settings")
    assert result.route is not None and result.route.label == "technical"
