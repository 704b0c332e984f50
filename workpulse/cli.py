"""The ``workpulse`` command line."""

from __future__ import annotations

import argparse
import os
import sys

from workpulse.settings import load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workpulse", description="WorkPulse mesh control")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start every service and the gateway; Ctrl-C stops them")
    commands.add_parser("migrate", help="apply every service's migrations (idempotent)")
    jobs = commands.add_parser("jobs", help="the scheduler's jobs").add_subparsers(dest="jobs_command", required=True)
    run_job = jobs.add_parser("run", help="run one job now (recorded like a scheduled run)")
    run_job.add_argument("name", help="daily_summaries, idle_check, overtime_check or activity_partitions")
    run_job.add_argument("--as-of", dest="as_of", help="ISO 8601 time to run as of (default: now; no offset: UTC)")
    args = parser.parse_args(argv)

    if args.command == "up":
        from workpulse.supervisor import up

        return up()
    if args.command == "migrate":
        from workpulse.migrate import upgrade_all
        from workpulse.supervisor import SupervisorSettings

        settings = load(SupervisorSettings)
        if not settings.database_url:
            print("workpulse migrate: DATABASE_URL is not set", file=sys.stderr)
            return 2
        for service in upgrade_all(settings.database_url):
            print(f"migrated {service}")
        return 0
    if args.command == "jobs":
        if "DATABASE_URL" not in os.environ:
            from workpulse.supervisor import SupervisorSettings, running_mesh_environment

            found = running_mesh_environment(load(SupervisorSettings).data_dir)
            if found is None:
                print(
                    "workpulse jobs run: no mesh is running from this data folder; start it with "
                    "`make run`, or set DATABASE_URL, REDIS_URL and the services' addresses",
                    file=sys.stderr,
                )
                return 2
            os.environ.update(found)
        from services.scheduler.cli import run_job_command

        return run_job_command(args.name, args.as_of)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
