"""``make mutants``: remove each guard the product promises and require its tests to notice.

Every ``tests/mutants/*.toml`` catalog lists mutants: one guard removal each (one or more
exact find/replace edits) and the tests that must catch it. The runner copies the tracked
tree to a scratch folder, runs every named test there unmutated (they must pass, or a
"caught" mutant would prove nothing), then for each mutant applies its edits, runs its
tests, and restores the files. A mutant is *caught* when its tests fail; the run fails
unless every mutant is caught. See tests/mutants/README.md for adding one.

    python -m tests.mutants [--list] [--only NAME ...] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.mutants.catalog import Mutant, load_catalogs

ROOT = Path(__file__).resolve().parents[2]


def scratch_copy() -> Path:
    """The tracked files (and untracked ones not ignored) in a fresh folder, as CI would see them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    scratch = Path(tempfile.mkdtemp(prefix="wp-mutants-"))
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = scratch / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return scratch


def run_tests(scratch: Path, tests: list[str], log: Path) -> tuple[int, float]:
    """pytest on ``tests`` inside ``scratch`` (its modules shadow the installed tree)."""
    env = {**os.environ, "PYTHONPATH": str(scratch)}
    started = time.monotonic()
    with log.open("wb") as out:
        code = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
            cwd=scratch,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        ).returncode
    return code, time.monotonic() - started


def run(mutants: list[Mutant], keep: bool) -> bool:
    scratch = scratch_copy()
    logs = scratch / ".mutant-logs"
    logs.mkdir()
    print(f"scratch copy: {scratch}")
    try:
        named = sorted({t for m in mutants for t in m.tests})
        code, seconds = run_tests(scratch, named, logs / "unmutated.log")
        print(f"{'unmutated':40} {'pass' if code == 0 else 'FAIL':9} {seconds:6.1f}s  {len(named)} test ids")
        if code != 0:
            print(f"the named tests fail without any mutation; see {logs / 'unmutated.log'}")
            return False
        caught_all = True
        for mutant in mutants:
            originals = mutant.apply(scratch)
            try:
                code, seconds = run_tests(scratch, mutant.tests, logs / f"{mutant.name}.log")
            finally:
                for path, text in originals.items():
                    path.write_text(text)
            # pytest exits 1 when tests failed; anything else (usage error, nothing
            # collected, interrupted) says nothing about the guard.
            verdict = {0: "SURVIVED", 1: "caught"}.get(code, f"ERROR({code})")
            caught_all &= code == 1
            print(f"{mutant.name:40} {verdict:9} {seconds:6.1f}s  {mutant.guard}")
        return caught_all
    finally:
        if keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy and its logs")
    args = parser.parse_args()
    mutants = load_catalogs(ROOT)
    if args.only:
        unknown = set(args.only) - {m.name for m in mutants}
        if unknown:
            parser.error(f"no such mutant: {', '.join(sorted(unknown))}")
        mutants = [m for m in mutants if m.name in args.only]
    if args.list:
        for m in mutants:
            print(f"{m.name:40} {m.guard}\n{'':40} tests: {' '.join(m.tests)}")
        return 0
    ok = run(mutants, args.keep)
    print("every mutant was caught" if ok else "some mutants were not caught (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
