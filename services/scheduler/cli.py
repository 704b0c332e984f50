"""``workpulse jobs run NAME [--as-of TIME]``: one job run by hand, recorded like any other."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

from services.scheduler.domain import job_spec
from services.scheduler.main import Settings, wire
from services.scheduler.runner import JobBusy
from workpulse.errors import WorkPulseError
from workpulse.settings import load


def parse_as_of(value: str | None) -> datetime:
    """ISO 8601; a time without an offset is read as UTC."""
    if value is None:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_job_command(name: str, as_of: str | None) -> int:
    """Exit status: 0 done, 1 the job failed after its retries, 2 bad input."""
    try:
        job_spec(name)
        moment = parse_as_of(as_of)
    except WorkPulseError as exc:
        print(f"workpulse jobs run: {exc.message}", file=sys.stderr)
        return 2
    except ValueError:
        print(f"workpulse jobs run: --as-of must be an ISO 8601 time, got {as_of!r}", file=sys.stderr)
        return 2
    settings = load(Settings)

    async def go() -> int:
        wiring = wire(settings)
        try:
            run = await wiring.runner.run(name, moment, manual=True)
        except JobBusy as exc:
            print(f"workpulse jobs run: {exc}; try again later", file=sys.stderr)
            return 1
        finally:
            await wiring.close()
        assert run is not None
        slot = run.slot.isoformat()
        if run.error:
            print(f"{name} {slot}: failed after {run.attempts} attempts: {run.error}", file=sys.stderr)
            return 1
        print(f"{name} {slot}: {run.rows} rows in {_seconds(run)} s (attempt {run.attempts})")
        return 0

    return asyncio.run(go())


def _seconds(run: object) -> str:
    started, finished = getattr(run, "started_at", None), getattr(run, "finished_at", None)
    return f"{(finished - started).total_seconds():.3f}" if started and finished else "?"
