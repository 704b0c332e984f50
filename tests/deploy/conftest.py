"""Fixtures of the manifest tests: every kustomize target rendered once, and renders of a
copy with one planted mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.kustomize import NO_RENDERER, VARIANTS, Plant, Render, copy_tree, render


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Render]:
    """Every target of the tree as it is."""
    root = copy_tree(tmp_path_factory.mktemp("rendered") / "k8s")
    return {variant: Render(root, render(root, variant)) for variant in VARIANTS}


@pytest.fixture
def plant(tmp_path: Path) -> Plant:
    """``plant(variant, file, old, new)``: ``variant`` rendered from a copy where ``file``
    has its one occurrence of ``old`` replaced by ``new``."""

    def planted(variant: str, file: str, old: str, new: str) -> Render:
        root = copy_tree(tmp_path / "k8s")
        text = (root / file).read_text()
        assert text.count(old) == 1, f"{file}: the text to replace must occur exactly once: {old!r}"
        (root / file).write_text(text.replace(old, new))
        return Render(root, render(root, variant))

    return planted


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Says why the rendered manifests went unchecked even without ``-rs``."""
    for report in terminalreporter.stats.get("skipped", []):
        if isinstance(report.longrepr, tuple) and NO_RENDERER in str(report.longrepr[2]):
            terminalreporter.write_line(f"manifest tests skipped: {NO_RENDERER}", yellow=True)
            return
