"""The ingest configuration models live in :mod:`roadworthy.config.ingest` (the config layer
must describe a whole project file); they are re-exported here for the ingest package."""

from ..config.ingest import (
    MIB,
    CentroidClassifierConfig,
    FieldRule,
    FieldType,
    IngestConfig,
    InjectionPolicy,
    Kind,
    LimitsConfig,
    NormaliseConfig,
    PiiKind,
    PiiPolicy,
    RouteRule,
    RoutingConfig,
    ScreenConfig,
)

__all__ = [
    "MIB",
    "CentroidClassifierConfig",
    "FieldRule",
    "FieldType",
    "IngestConfig",
    "InjectionPolicy",
    "Kind",
    "LimitsConfig",
    "NormaliseConfig",
    "PiiKind",
    "PiiPolicy",
    "RouteRule",
    "RoutingConfig",
    "ScreenConfig",
]
