"""The command line itself: help on every command, bad options, status with no agent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = ("login", "run", "start", "stop", "status", "logout")


def _agent(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args, "--data-dir", str(data_dir)]
        if args
        else [sys.executable, "-m", "agent"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_naming_the_common_options(command: str, tmp_path: Path) -> None:
    done = _agent(command, "--help", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    for option in ("--data-dir", "--gateway", "--ingest"):
        assert option in done.stdout
    if command == "login":
        assert "--password-stdin" in done.stdout and "--accept" in done.stdout


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "agent"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "COMMAND" in done.stderr


def test_a_bad_option_value_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    done = _agent("run", "--flush-seconds", "30", data_dir=tmp_path)
    assert done.returncode == 2 and "--flush-seconds: must be 1..10" in done.stderr


def test_status_without_an_agent_says_so(tmp_path: Path) -> None:
    done = _agent("status", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "not signed in" in done.stdout and "not running" in done.stdout and "queue:        0 event(s)" in done.stdout


def test_the_data_folder_comes_from_the_environment_without_the_option(tmp_path: Path) -> None:
    folder = tmp_path / "from-env"
    done = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "WORKPULSE_AGENT_DIR": str(folder)},
    )
    assert done.returncode == 0, done.stderr
    assert (folder / "outbox.sqlite3").exists()
