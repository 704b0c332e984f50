"""Rendered objects against Kubernetes' own OpenAPI schemas: offline, and strict (a field
the schema does not know is an error, so a misspelt or misplaced key never passes)."""

from __future__ import annotations

from collections.abc import Iterable

import kubernetes_validate

from tests.deploy.kustomize import Manifest

#: The newest schemas kubernetes-validate (pinned in constraints.txt) ships. README.md's
#: floor is 1.27 (native gRPC probes); the renders also pass 1.27's schemas today.
KUBERNETES_VERSION = "1.37"


def schema_errors(objects: Iterable[Manifest]) -> list[str]:
    """One line per object that fails its schema, or whose kind has none (an unvalidated object)."""
    errors = []
    for obj in objects:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path) or "(top level)"
            errors.append(f"{where}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{where}: {error.message}")
    return errors
