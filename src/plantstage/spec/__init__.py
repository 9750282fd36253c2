"""The plantstage spec: YAML → typed models, JSON Schema, precise errors."""

from plantstage.spec.loader import LoadedSpec, json_schema, load_spec, parse_spec_text
from plantstage.spec.models import (
    Binding,
    Component,
    ComponentKind,
    Fidelity,
    Gate,
    Release,
    Spec,
)

__all__ = [
    "Binding",
    "Component",
    "ComponentKind",
    "Fidelity",
    "Gate",
    "LoadedSpec",
    "Release",
    "Spec",
    "json_schema",
    "load_spec",
    "parse_spec_text",
]
