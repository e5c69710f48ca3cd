"""Pipelines: validate an input, run its steps, end it in a recorded status."""

from .batch import BatchOutcome, count_inputs, run_file
from .generate import BoundModel, GenerateRunner, parse_json_output
from .runner import ItemResult, Pipeline, item_key_for
from .validate import validate_input
from .workspace import Workspace, open_workspace

__all__ = [
    "BatchOutcome",
    "BoundModel",
    "GenerateRunner",
    "ItemResult",
    "Pipeline",
    "Workspace",
    "count_inputs",
    "item_key_for",
    "open_workspace",
    "parse_json_output",
    "run_file",
    "validate_input",
]
