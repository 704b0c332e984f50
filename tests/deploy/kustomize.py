"""Every kustomize target of deploy/k8s, rendered from a copy of the tree and parsed.

A test renders a copy (``copy_tree``), never the tree itself, so it can plant a mistake in
the copy first. Besides the two kustomizations the tree has, the copy gets the two an
operator makes by switching the network-policy component on for ``base`` or off for
production. Rendering uses ``kubectl kustomize`` (or a standalone ``kustomize``); without
either the test skips, saying so (and CI=true fails the run, tests/conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

Manifest = dict[str, Any]

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
POLICIES = "components/network-policies"
NO_RENDERER = "neither kubectl nor kustomize is installed to render deploy/k8s (install kubectl)"

#: Every target, as a folder of the copy.
VARIANTS = {
    "base": "base",
    "base+policies": "variants/base-with-policies",
    "production": "overlays/production",
    "production-without-policies": "variants/production-without-policies",
}
WITH_POLICIES = {"base+policies", "production"}


@dataclass(frozen=True)
class Render:
    root: Path  # the copy of deploy/k8s it was made from (its README.md documents the Secrets)
    objects: list[Manifest]


#: ``plant(variant, file, old, new)``, the fixture of tests/deploy/conftest.py.
Plant = Callable[[str, str, str, str], Render]


def kustomize_command() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def copy_tree(dest: Path) -> Path:
    """A copy of deploy/k8s at ``dest``, to render (and to plant mistakes in)."""
    shutil.copytree(K8S, dest)
    return dest


def render(root: Path, variant: str) -> list[Manifest]:
    """The objects ``kustomize build`` makes of ``variant`` in the copy at ``root``."""
    command = kustomize_command()
    if command is None:
        pytest.skip(NO_RENDERER)
    target = root / VARIANTS[variant]
    if variant in _COMPOSED:
        _COMPOSED[variant](root, target)
    out = subprocess.run([*command, str(target)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"{variant}: {out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _base_with_policies(root: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    _write_kustomization(
        target,
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["../../base"],
            "components": [f"../../{POLICIES}"],
        },
    )


def _production_without_policies(root: Path, target: Path) -> None:
    # At the overlay's depth, so its relative paths (../../base) still resolve.
    shutil.copytree(root / VARIANTS["production"], target, dirs_exist_ok=True)
    kustomization = yaml.safe_load((target / "kustomization.yaml").read_text())
    components = kustomization.pop("components")
    assert components == [f"../../{POLICIES}"], f"production's components changed: {components}"
    _write_kustomization(target, kustomization)


def _write_kustomization(folder: Path, kustomization: Manifest) -> None:
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))


_COMPOSED: dict[str, Callable[[Path, Path], None]] = {
    "base+policies": _base_with_policies,
    "production-without-policies": _production_without_policies,
}
