"""Project configuration: ``roadworthy.yaml``, prompt files and output schemas."""

from .load import CONFIG_FILE, Project, find_project, load_project
from .model import (
    FieldSpec,
    GenerateStep,
    InputSpec,
    ModelConfig,
    PipelineConfig,
    PriceConfig,
    ProjectConfig,
    ProviderConfig,
)

__all__ = [
    "CONFIG_FILE",
    "FieldSpec",
    "GenerateStep",
    "InputSpec",
    "ModelConfig",
    "PipelineConfig",
    "PriceConfig",
    "Project",
    "ProjectConfig",
    "ProviderConfig",
    "find_project",
    "load_project",
]
