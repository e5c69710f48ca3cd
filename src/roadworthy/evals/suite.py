"""An evaluation suite file: dataset + the pipeline and prompt under test + scorers + gate.

Paths in the file are relative to the file itself, so a suite can live next to its
dataset anywhere in the project.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config.load import describe_validation_error
from ..config.yamlfile import read_yaml
from ..errors import ConfigError
from .datasets import Dataset, load_dataset

__all__ = ["GateThreshold", "Suite", "SuiteFile", "load_suite"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubsetSpec(_Strict):
    tags: list[str] = Field(min_length=1)
    match: Literal["any", "all"] = "any"


class GateThreshold(_Strict):
    min_pass_rate: float | None = Field(None, ge=0, le=1)
    min_mean: float | None = Field(None, ge=0, le=1)


class BaselinePolicy(_Strict):
    alpha: float = Field(0.05, gt=0, lt=1)
    min_effect: float | None = Field(None, ge=0, le=1)
    min_examples: int = Field(20, ge=1)


class GateSpec(_Strict):
    thresholds: dict[str, GateThreshold] = {}
    baseline: BaselinePolicy = BaselinePolicy()


class JudgeSpec(_Strict):
    model: str = Field(description="a model name from roadworthy.yaml")
    max_tokens: int = Field(400, ge=8)


class SuiteFile(_Strict):
    name: str
    description: str | None = None
    dataset: str
    subsets: dict[str, SubsetSpec] = {}
    prompt: str | None = None
    pipeline: str
    scorers: list[dict[str, Any]] = Field(min_length=1)
    breakdowns: list[str] = []
    gate: GateSpec = GateSpec()
    judge: JudgeSpec | None = None
    repeats: int = Field(1, ge=1)


@dataclass
class Suite:
    path: Path
    spec: SuiteFile
    dataset: Dataset

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def examples(self, subset: str | None) -> Dataset:
        if subset is None:
            return self.dataset
        spec = self.spec.subsets.get(subset)
        if spec is None:
            # a bare tag works too, so `--subset adversarial` needs no declaration
            return self.dataset.subset(subset)
        return self.dataset.subset(spec.tags, match=spec.match)


def load_suite(path: Path | str) -> Suite:
    path = Path(path)
    doc = read_yaml(path)
    try:
        spec = SuiteFile.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, doc, SuiteFile)) from None
    dataset = load_dataset(path.parent / spec.dataset, name=spec.name)
    return Suite(path=path, spec=spec, dataset=dataset)
