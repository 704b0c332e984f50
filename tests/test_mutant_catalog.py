"""The mutant catalogs stay applicable: every edit's text is still in its file exactly once
and every named test file exists, so ``make mutants`` never silently tests nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mutants.catalog import CatalogError, Edit, Mutant, load_catalogs

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = load_catalogs(ROOT)


def test_the_catalogs_hold_mutants() -> None:
    assert MUTANTS, "tests/mutants/*.toml lists no mutant"


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_each_mutant_still_applies_and_names_real_tests(mutant: Mutant) -> None:
    mutant.check(ROOT)


def test_an_edit_whose_text_moved_is_refused(tmp_path: Path) -> None:
    (tmp_path / "guarded.py").write_text("if allowed:\n    return\nif allowed:\n    return\n")
    with pytest.raises(CatalogError, match="2 times"):
        Edit("guarded.py", "if allowed:", "if True:").check(tmp_path)
    with pytest.raises(CatalogError, match="0 times"):
        Edit("guarded.py", "if denied:", "if True:").check(tmp_path)


def test_apply_returns_the_originals_to_restore(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_g.py").write_text("")
    (tmp_path / "g.py").write_text("check()\nwork()\n")
    mutant = Mutant("m", "checks", ["tests/test_g.py"], [Edit("g.py", "check()\n", "")], "x.toml")
    originals = mutant.apply(tmp_path)
    assert (tmp_path / "g.py").read_text() == "work()\n"
    assert originals == {tmp_path / "g.py": "check()\nwork()\n"}
