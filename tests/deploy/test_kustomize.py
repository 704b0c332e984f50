"""Every kustomize target renders the whole mesh: base and production, each with and
without the network-policy component."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tests.deploy.crossrefs import pods
from tests.deploy.kustomize import VARIANTS, WITH_POLICIES, Render

PER_PROCESS = {"Deployment": 6, "Service": 6, "PodDisruptionBudget": 6, "ServiceAccount": 7}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_target_renders_the_whole_mesh(variant: str, rendered: dict[str, Render]) -> None:
    objects = rendered[variant].objects
    kinds = Counter(obj["kind"] for obj in objects)
    for kind, count in {**PER_PROCESS, "HorizontalPodAutoscaler": 2, "Job": 1, "ConfigMap": 1}.items():
        assert kinds[kind] == count, kind
    assert kinds["NetworkPolicy"] == (7 if variant in WITH_POLICIES else 0)
    config_name = next(obj["metadata"]["name"] for obj in objects if obj["kind"] == "ConfigMap")
    assert re.fullmatch(r"workpulse-config-[a-z0-9]{10}", config_name)
    references = [
        source["configMapRef"]["name"]
        for pod in pods(objects)
        for container in pod.containers
        for source in container.get("envFrom", [])
        if "configMapRef" in source
    ]
    assert set(references) == {config_name} and len(references) == 7  # 6 Deployments + the Job


@pytest.mark.parametrize("variant", ["production", "production-without-policies"])
def test_production_pins_its_namespace_image_and_replicas(variant: str, rendered: dict[str, Render]) -> None:
    objects = rendered[variant].objects
    assert all(obj["metadata"].get("namespace") == "workpulse" for obj in objects if obj["kind"] != "Namespace")
    images = {container["image"] for pod in pods(objects) for container in pod.containers}
    assert images == {"registry.example.com/workpulse:0.1.0"}
    auth = next(obj for obj in objects if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "auth")
    assert auth["spec"]["replicas"] == 3
