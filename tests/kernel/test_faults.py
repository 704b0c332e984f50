"""Fault points (test-only): the variable's syntax, loud rejection at start-up, and a
real process killing itself exactly at the n-th time a point is reached."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from workpulse import faults


@pytest.fixture(autouse=True)
def disarmed() -> Iterator[None]:
    yield
    faults.arm({})


def _run(code: str, fault_points: str | None, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != faults.VARIABLE}
    if fault_points is not None:
        env[faults.VARIABLE] = fault_points
    env.update(extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_an_empty_or_blank_value_arms_nothing() -> None:
    assert faults.parse("") == {}
    assert faults.parse(" , ") == {}


def test_each_point_gets_its_own_trigger() -> None:
    triggers = faults.parse(" ingest.after_commit = kill:3 ,sessions.after_apply=kill:1")
    assert {p: (t.action, t.at) for p, t in triggers.items()} == {
        "ingest.after_commit": ("kill", 3),
        "sessions.after_apply": ("kill", 1),
    }


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("ingest.after_commit", "expected <point>=kill:<n>"),
        ("ingest.after_comit=kill:1", "unknown fault point"),
        ("ingest.after_commit=exit:1", "expected <point>=kill:<n>"),
        ("ingest.after_commit=kill", "expected <point>=kill:<n>"),
        ("ingest.after_commit=kill:0", "at least 1"),
        ("ingest.after_commit=kill:-2", "at least 1"),
        ("ingest.after_commit=kill:two", "at least 1"),
        ("ingest.after_commit=kill:1,ingest.after_commit=kill:2", "named twice"),
    ],
)
def test_a_bad_value_is_refused_naming_the_problem(value: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        faults.parse(value)


def test_reaching_a_point_when_nothing_is_armed_does_nothing() -> None:
    faults.arm({})
    for _ in range(3):
        faults.reached("ingest.after_commit")


def test_a_process_kills_itself_the_nth_time_and_not_before() -> None:
    code = (
        "from workpulse import faults\n"
        "faults.arm_from_environment()\n"
        "for n in range(1, 6):\n"
        "    faults.reached('sessions.after_apply')\n"
        "    faults.reached('ingest.after_commit')\n"
        "    print(n, flush=True)\n"
    )
    result = _run(code, "ingest.after_commit=kill:3")
    assert result.returncode == -signal.SIGKILL
    assert result.stdout.split() == ["1", "2"]
    assert "fault point ingest.after_commit reached 3 time(s): SIGKILL" in result.stderr


def test_without_the_variable_a_process_runs_through_every_point() -> None:
    code = "from workpulse import faults\nfaults.arm_from_environment()\nfaults.reached('ingest.after_commit')\n"
    result = _run(code, None)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_a_service_started_with_a_bad_value_exits_2_naming_the_variable() -> None:
    result = _run(
        "from services.ingest.main import main; main()",
        "ingest.after_commit=kill:0",
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        REDIS_URL="redis://127.0.0.1:1/0",
        SESSIONS_ADDR="127.0.0.1:1",
    )
    assert result.returncode == 2
    assert f"{faults.VARIABLE}: 'ingest.after_commit=kill:0'" in result.stderr
    assert "Traceback" not in result.stderr
