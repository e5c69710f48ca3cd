"""Prompts: files in the project's ``prompts/`` folder, rendered in a sandbox."""

from .render import PromptRenderError, render_messages, render_text

__all__ = ["PromptRenderError", "render_messages", "render_text"]
