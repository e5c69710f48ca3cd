"""The HTTP service: native pipeline API and an OpenAI-compatible endpoint."""

from .app import API_VERSION, RunRequest, build_app, create_app
from .errors import ApiError

__all__ = ["API_VERSION", "ApiError", "RunRequest", "build_app", "create_app"]
