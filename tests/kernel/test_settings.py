"""A bad setting stops the process with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys


def test_bad_value_names_the_variable() -> None:
    env = {**os.environ, "DATABASE_URL": "mysql://x", "REDIS_URL": "redis://localhost", "DB_POOL_SIZE": "0"}
    code = "from workpulse.settings import CommonSettings, load; load(CommonSettings)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr and "DB_POOL_SIZE" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_required_variable_is_named() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    code = "from workpulse.settings import CommonSettings, load; load(CommonSettings)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr and "REDIS_URL" in result.stderr
