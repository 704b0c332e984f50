"""Every rendered object is valid Kubernetes (strict schemas of the pinned version), and a
planted schema error is caught."""

from __future__ import annotations

import pytest

from tests.deploy.kustomize import VARIANTS, Plant, Render
from tests.deploy.schema import schema_errors


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_matches_its_schema(variant: str, rendered: dict[str, Render]) -> None:
    assert schema_errors(rendered[variant].objects) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param("  replicas: 1\n", '  replicas: "two"\n', "spec.replicas: 'two' is not of type", id="wrong-type"),
        pytest.param(
            "failureThreshold: 30", "failureThresold: 30", "'failureThresold' was unexpected", id="unknown-field"
        ),
    ],
)
def test_a_planted_schema_error_fails_validation(plant: Plant, old: str, new: str, expected: str) -> None:
    errors = schema_errors(plant("base", "base/auth.yaml", old, new).objects)
    assert len(errors) == 1, errors
    assert errors[0].startswith("Deployment/auth: ") and expected in errors[0], errors
