"""The mutant catalogs (``tests/mutants/*.toml``): each entry removes one guard.

An entry has a ``name``, the ``guard`` it removes (one line), the ``tests`` that must catch
it, and either one ``file``/``find``/``replace`` or a list of ``[[mutant.edit]]`` tables
with those keys (a guard spread over several places). ``find`` must occur exactly once in
its file, so an edit can never land somewhere unintended, and a refactor that moves the
guard fails ``tests/test_mutant_catalog.py`` in ``make test`` until the entry follows it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class CatalogError(ValueError):
    pass


@dataclass(frozen=True)
class Edit:
    file: str
    find: str
    replace: str

    def check(self, root: Path) -> None:
        path = root / self.file
        if not path.is_file():
            raise CatalogError(f"{self.file}: no such file")
        count = path.read_text().count(self.find)
        if count != 1:
            raise CatalogError(f"{self.file}: find text occurs {count} times, not once")
        if self.find == self.replace:
            raise CatalogError(f"{self.file}: replace equals find (no mutation)")


@dataclass(frozen=True)
class Mutant:
    name: str
    guard: str
    tests: list[str]
    edits: list[Edit]
    catalog: str

    def check(self, root: Path) -> None:
        for edit in self.edits:
            edit.check(root)
        for test in self.tests:
            module = test.split("::", 1)[0]
            if not (root / module).exists():
                raise CatalogError(f"{self.name}: test path {module} does not exist")

    def apply(self, root: Path) -> dict[Path, str]:
        """Applies the edits under ``root``; returns each touched file's original text."""
        self.check(root)
        originals: dict[Path, str] = {}
        for edit in self.edits:
            path = root / edit.file
            originals.setdefault(path, path.read_text())
            path.write_text(path.read_text().replace(edit.find, edit.replace, 1))
        return originals


def _edits(entry: dict[str, Any], where: str) -> list[Edit]:
    raw = entry.get("edit")
    if raw is None:
        raw = [{k: entry[k] for k in ("file", "find", "replace") if k in entry}]
    elif any(k in entry for k in ("file", "find", "replace")):
        raise CatalogError(f"{where}: give either file/find/replace or [[mutant.edit]], not both")
    edits = []
    for i, e in enumerate(raw):
        missing = {"file", "find", "replace"} - set(e)
        if missing:
            raise CatalogError(f"{where}: edit {i} lacks {', '.join(sorted(missing))}")
        edits.append(Edit(str(e["file"]), str(e["find"]), str(e["replace"])))
    return edits


def load_catalogs(root: Path) -> list[Mutant]:
    mutants: list[Mutant] = []
    for path in sorted((root / "tests" / "mutants").glob("*.toml")):
        for i, entry in enumerate(tomllib.loads(path.read_text()).get("mutant", [])):
            where = f"{path.name} entry {i} ({entry.get('name', '?')})"
            for key in ("name", "guard", "tests"):
                if not entry.get(key):
                    raise CatalogError(f"{where}: {key} is required")
            tests = entry["tests"]
            if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
                raise CatalogError(f"{where}: tests must be a list of pytest ids")
            mutants.append(Mutant(str(entry["name"]), str(entry["guard"]), tests, _edits(entry, where), path.name))
    names = [m.name for m in mutants]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise CatalogError(f"mutant names used twice: {', '.join(duplicated)}")
    return mutants
