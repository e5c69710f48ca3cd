"""roadworthy: the production half of an LLM application.

The public surface is re-exported here; submodules with a leading underscore are private.
"""

from .config import Project, load_project
from .errors import (
    AuthFailed,
    BadRequest,
    BudgetExceeded,
    CircuitOpen,
    ConfigError,
    ContentFiltered,
    ContextTooLong,
    InputRejected,
    MalformedResponse,
    NotFound,
    OutputInvalid,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    Refused,
    RoadworthyError,
    Timeout,
)
from .pipeline import ItemResult, Pipeline, Workspace, open_workspace, run_file
from .providers import (
    AnthropicProvider,
    Capabilities,
    Completion,
    CompletionRequest,
    LocalProvider,
    Message,
    OpenAIProvider,
    Provider,
    Reply,
    ResponseFormat,
    ScriptedProvider,
    Usage,
)
from .store import CallRecord, Store

__version__ = "0.1.0"

__all__ = [
    "AnthropicProvider",
    "AuthFailed",
    "BadRequest",
    "BudgetExceeded",
    "CallRecord",
    "Capabilities",
    "CircuitOpen",
    "Completion",
    "CompletionRequest",
    "ConfigError",
    "ContentFiltered",
    "ContextTooLong",
    "InputRejected",
    "ItemResult",
    "LocalProvider",
    "MalformedResponse",
    "Message",
    "NotFound",
    "OpenAIProvider",
    "OutputInvalid",
    "Pipeline",
    "Project",
    "Provider",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimited",
    "Refused",
    "Reply",
    "ResponseFormat",
    "RoadworthyError",
    "ScriptedProvider",
    "Store",
    "Timeout",
    "Usage",
    "Workspace",
    "__version__",
    "load_project",
    "open_workspace",
    "run_file",
]
