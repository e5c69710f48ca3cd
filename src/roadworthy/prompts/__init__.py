"""Prompts: files in the project's ``prompts/`` folder, versioned in a registry with
movable labels, rendered in a sandbox."""

from .files import PromptsFolder, PromptSource, load_prompts, parse_ref
from .model import PromptDoc, PromptFile, PromptSettings, VariableSpec
from .registry import PromptRegistry, ResolvedPrompt, SyncReport, estimate_tokens
from .render import PromptRenderError, render_messages, render_text

__all__ = [
    "PromptDoc",
    "PromptFile",
    "PromptRegistry",
    "PromptRenderError",
    "PromptSettings",
    "PromptSource",
    "PromptsFolder",
    "ResolvedPrompt",
    "SyncReport",
    "VariableSpec",
    "estimate_tokens",
    "load_prompts",
    "parse_ref",
    "render_messages",
    "render_text",
]
