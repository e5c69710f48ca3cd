"""Model providers behind one contract, the error taxonomy they map into, and pricing."""

from .anthropic import AnthropicProvider
from .base import (
    Capabilities,
    Completion,
    CompletionRequest,
    Message,
    Provider,
    ResponseFormat,
    Usage,
)
from .factory import build_provider, resolve_price
from .local import LocalProvider
from .openai import OpenAIProvider
from .pricing import Price, builtin_price, call_cost
from .scripted import Reply, ScriptedProvider

__all__ = [
    "AnthropicProvider",
    "Capabilities",
    "Completion",
    "CompletionRequest",
    "LocalProvider",
    "Message",
    "OpenAIProvider",
    "Price",
    "Provider",
    "Reply",
    "ResponseFormat",
    "ScriptedProvider",
    "Usage",
    "build_provider",
    "builtin_price",
    "call_cost",
    "resolve_price",
]
