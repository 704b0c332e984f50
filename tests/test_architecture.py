"""The boundaries of ARCHITECTURE.md and STYLE.md, checked on the source itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _sources(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.py") if "_pb2" not in p.name]


def test_a_service_imports_no_other_service() -> None:
    for service in SERVICES:
        for path in _sources(ROOT / "services" / service):
            for module in _imports(path):
                if module.startswith("services.") and not module.startswith(f"services.{service}"):
                    raise AssertionError(f"{path.relative_to(ROOT)} imports {module}")


def test_domain_modules_import_neither_grpc_nor_sqlalchemy() -> None:
    for path in ROOT.glob("services/*/domain*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in {"grpc", "sqlalchemy", "psycopg", "redis"}}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_ingest_use_cases_import_only_the_domain_and_the_kernel() -> None:
    """Issue 9: the write path reads top to bottom; the use cases see adapters only
    through their own protocols (the other services follow in issue 15)."""
    path = ROOT / "services" / "ingest" / "use_cases.py"
    ours = {m for m in _imports(path) if m.startswith("services.")}
    assert ours <= {"services.ingest.domain", "services.ingest.admission"}, sorted(ours)
    third_party = {m.split(".")[0] for m in _imports(path)} - {"services", "workpulse", "__future__"}
    assert third_party <= {"collections", "dataclasses", "datetime", "typing"}, sorted(third_party)


def test_kernel_imports_no_service_and_no_gateway() -> None:
    for path in _sources(ROOT / "workpulse"):
        if path.name == "supervisor.py" or path.name == "cli.py":
            continue  # the supervisor and CLI start services by module name, never import them
        bad = {m for m in _imports(path) if m.startswith(("services", "gateway"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_gateway_reaches_services_only_through_stubs() -> None:
    for path in _sources(ROOT / "gateway"):
        bad = {m for m in _imports(path) if m.startswith("services")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_agent_talks_to_the_mesh_only_through_stubs() -> None:
    """Issue 12: the desktop agent is a client; of the server side it may use only the
    generated stubs and the kernel's client-safe modules (its JSON log lines)."""
    allowed_kernel = {
        "workpulse",
        "workpulse.log",
        "workpulse.ingest.v1",
        "workpulse.ingest.v1.ingest_pb2",
        "workpulse.ingest.v1.ingest_pb2_grpc",
    }
    for path in _sources(ROOT / "agent"):
        for module in _imports(path):
            assert not module.startswith(("services", "gateway")), f"{path.relative_to(ROOT)} imports {module}"
            if module.startswith("workpulse"):
                assert module in allowed_kernel, f"{path.relative_to(ROOT)} imports {module}"


def test_the_agent_loads_no_server_machinery() -> None:
    """The agent runs on every employee's machine (its memory goal is 60 MiB): no database
    drivers, no web framework, no server runtime."""
    probe = "import sys, agent.cli, agent.runner; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    for heavy in ("sqlalchemy", "psycopg", "redis", "starlette", "uvicorn", "pydantic", "services", "gateway"):
        assert f"'{heavy}'" not in loaded.stdout, f"the agent loads {heavy}"


@pytest.mark.parametrize("root", ["gateway.main", "services.realtime.main"])
def test_processes_without_tables_load_no_sqlalchemy(root: str) -> None:
    """Issue 9 (memory): the gateway and realtime own no tables, and SQLAlchemy with its
    dialect is 20-25 MiB of an idle process; checked on the modules the started process
    really loads."""
    probe = f"import sys, {root}; print(sorted({{m.split('.')[0] for m in sys.modules}}))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert "'sqlalchemy'" not in loaded.stdout, loaded.stdout


def test_modules_stay_small() -> None:
    for folder in ("workpulse", "services", "gateway", "agent"):
        for path in _sources(ROOT / folder):
            if "migrations/versions" in str(path):
                continue
            lines = len(path.read_text().splitlines())
            assert lines <= 450, f"{path.relative_to(ROOT)} has {lines} lines; split it"
