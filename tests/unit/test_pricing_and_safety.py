"""Pricing, secret redaction and sandboxed templates."""

from __future__ import annotations

from decimal import Decimal

import pytest

from roadworthy.prompts import PromptDoc, PromptRenderError, render_messages, render_text
from roadworthy.providers import Usage, builtin_price, call_cost
from roadworthy.providers.pricing import Price, known_models
from roadworthy.secrets import redact, register_secret


def test_dated_snapshots_and_vendor_prefixes_find_their_price() -> None:
    base = builtin_price("gpt-4o-mini")
    assert base is not None and base.input == Decimal("0.15")
    assert builtin_price("gpt-4o-mini-2024-07-18") == base
    assert builtin_price("openai/gpt-4o-mini") == base
    assert builtin_price("claude-sonnet-4-5-20250929") == builtin_price("claude-sonnet-4-5")
    assert builtin_price("totally-unknown-model") is None
    assert len(known_models()) >= 20


def test_cost_counts_cached_tokens_once_at_their_own_rate() -> None:
    price = builtin_price("claude-sonnet-4-5")
    usage = Usage(
        input_tokens=1_130, output_tokens=100, cached_read_tokens=1_000, cache_write_tokens=100
    )
    # 30 fresh * $3 + 1000 cached * $0.30 + 100 written * $3.75 + 100 out * $15, per million
    expected = (
        30 * Decimal(3) + 1000 * Decimal("0.30") + 100 * Decimal("3.75") + 100 * Decimal(15)
    ) / 10**6
    assert call_cost(usage, price) == expected
    assert call_cost(usage, price, batch=True) == expected / 2


def test_unknown_price_or_usage_is_none_not_zero() -> None:
    price = Price(input=Decimal(1), output=Decimal(2))
    assert call_cost(Usage(input_tokens=10, output_tokens=5), None) is None
    assert call_cost(Usage(input_tokens=None, output_tokens=5), price) is None
    assert call_cost(Usage(input_tokens=0, output_tokens=0), price) == 0


def test_redaction_hides_registered_secrets_only() -> None:
    register_secret("sk-abcdef123456")
    register_secret("abc")  # too short to mask safely; ignored
    assert redact("key sk-abcdef123456 rejected") == "key [REDACTED] rejected"
    assert redact("abc stays") == "abc stays"


PROMPT = PromptDoc.model_validate(
    {
        "id": "p",
        "variables": {"text": {"type": "string"}},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Ticket: {{ text }}"},
        ],
    }
)


def test_input_values_render_literally() -> None:
    messages = render_messages(PROMPT, {"text": "{{ 7 * 7 }} {% if true %}x{% endif %}"})
    assert messages[1].content == "Ticket: {{ 7 * 7 }} {% if true %}x{% endif %}"


def test_missing_variable_is_an_error_naming_the_prompt() -> None:
    with pytest.raises(PromptRenderError, match=r"prompt 'p': variable 'text' is required"):
        render_messages(PROMPT, {})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ text.__class__ }}",
        "{{ '{0.__class__}'.format(text) }}",
        "{{ self.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ ''|attr('__class__') }}",
        "{% for c in ''.__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ '{x.__class__}'.format_map({'x': text}) }}",
        "{{ request.application.__globals__ }}",
    ],
)
def test_sandbox_blocks_python_internals(source: str) -> None:
    with pytest.raises(PromptRenderError):
        render_text(source, {"text": "x", "cycler": object()})


def test_local_provider_without_the_extra_names_the_install_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from roadworthy.errors import ConfigError
    from roadworthy.providers.local import LocalProvider

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"pip install --no-cache-dir 'roadworthy\[local\]'"):
        LocalProvider()
