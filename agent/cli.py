"""``workpulse-agent``: log in, start and stop a session, run, show status, log out.

Every command runs without a prompt when given its options (fleet roll-outs script
it); ``login`` asks for what is missing only on a terminal. Messages for the user go to
stdout, JSON log lines to stderr. Exit codes: 0 done, 1 failed, 2 bad usage, 3 not
signed in (or the sign-in was revoked), 4 the organization's collection notice not yet
accepted (``--accept``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc

from agent import status
from agent.credentials import CredentialStore
from agent.gateway import Gateway, GatewayError
from agent.outbox import DEFAULT_CAP_BYTES, Outbox
from agent.profile import OUTBOX, Profile, data_dir
from agent.runner import PolicyHolder, ingest_channel, run_agent
from agent.tokens import SignedOut, TokenKeeper
from workpulse import log

EXIT_FAILED, EXIT_USAGE, EXIT_SIGNED_OUT, EXIT_NOT_ACCEPTED = 1, 2, 3, 4


class Failure(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log.configure("workpulse-agent", args.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is noise here
    folder = data_dir(args.data_dir)
    profile = Profile.load(folder)
    if args.gateway:
        profile.gateway = args.gateway
    if args.ingest:
        profile.ingest = args.ingest
    try:
        asyncio.run(args.command(args, folder, profile))
    except Failure as exc:
        print(f"workpulse-agent: {exc}", file=sys.stderr)
        return exc.code
    except SignedOut as exc:
        print(f"workpulse-agent: {exc}", file=sys.stderr)
        return EXIT_SIGNED_OUT
    except GatewayError as exc:
        print(f"workpulse-agent: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        help="where the outbox, state and (without a keyring) credentials live "
        "(default: $WORKPULSE_AGENT_DIR, else the user's data directory)",
    )
    common.add_argument("--gateway", help="the gateway's URL (default http://127.0.0.1:3000, or what login saved)")
    common.add_argument(
        "--ingest", help="ingest's gRPC address HOST:PORT (default 127.0.0.1:50053, or what login saved)"
    )
    common.add_argument("--ingest-tls", action="store_true", help="connect to ingest over TLS (system CAs)")
    common.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser = argparse.ArgumentParser(prog="workpulse-agent", description="The WorkPulse desktop agent.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    login = commands.add_parser("login", parents=[common], help="sign in (keeps the refresh token in the keyring)")
    login.add_argument("--email")
    login.add_argument("--organization", help="the workspace name or the organization's id")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin (no prompt)")
    login.add_argument("--accept", action="store_true", help="accept what the organization collects")
    login.set_defaults(command=_login)

    run = commands.add_parser("run", parents=[common], help="record and send activity for the active session")
    run.add_argument("--accept", action="store_true", help="accept what the organization collects")
    run.add_argument(
        "--disk-cap-mb",
        type=float,
        default=DEFAULT_CAP_BYTES / 2**20,
        help="the most the unsent events may take on disk; the oldest go first (default 200)",
    )
    run.add_argument(
        "--flush-seconds",
        type=_flush_seconds,
        default=10.0,
        help="the longest an event stays open before it is stored and sent (1..10, default 10)",
    )
    run.set_defaults(command=_run)

    start = commands.add_parser("start", parents=[common], help="start a work session")
    start.add_argument("--project", help="the project's id")
    start.set_defaults(command=_start)
    commands.add_parser("stop", parents=[common], help="stop your active work session").set_defaults(command=_stop)

    show = commands.add_parser("status", parents=[common], help="connection, queue, last acknowledgement, counts")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(command=_status)
    commands.add_parser("logout", parents=[common], help="revoke the sign-in and forget it").set_defaults(
        command=_logout
    )
    return parser


async def _login(args: argparse.Namespace, folder: Path, profile: Profile) -> None:
    email = args.email or _ask("Email: ")
    organization = args.organization or _ask("Organization (workspace): ")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        raise Failure("no password: give --password-stdin or run on a terminal", EXIT_USAGE)
    gateway = Gateway(profile.gateway)
    try:
        try:
            signed = await gateway.log_in(email, password, organization)
        except GatewayError as exc:
            raise Failure(f"log-in refused: {exc.message}") from exc
        CredentialStore(folder).save(signed.refresh_token)
        if profile.user_id != signed.user_id:
            profile.accepted_policy_version = None  # another account: its organization's notice anew
        profile.email, profile.organization = signed.email, organization
        profile.user_id, profile.organization_id = signed.user_id, signed.organization_id
        profile.save(folder)
        tokens = TokenKeeper(gateway, CredentialStore(folder))
        tokens.adopt(signed.access_token, signed.expires_in)
        print(f"signed in as {signed.email} (organization {signed.organization_id})")
        await _notice(args, folder, profile, tokens)
    finally:
        await gateway.aclose()


async def _notice(args: argparse.Namespace, folder: Path, profile: Profile, tokens: TokenKeeper) -> bool:
    """Prints what the organization collects; records ``--accept``. True once accepted."""
    outbox = Outbox(folder / OUTBOX)
    channel = ingest_channel(profile.ingest, args.ingest_tls)
    holder = PolicyHolder(outbox, channel, tokens)
    try:
        try:
            await holder.refresh()
        except grpc.aio.AioRpcError as exc:
            if not holder.fetched:
                raise Failure(f"cannot read the organization's agent policy from ingest: {exc.code().name}") from exc
        if profile.accepted_policy_version is None:
            print("Your organization's WorkPulse agent records, while a work session is open:")
            for line in holder.policy.describe():
                print(f"  - {line}")
            print("Nothing is recorded without an open session; keystrokes and screen contents are never recorded.")
            if not args.accept:
                print("Accept with `workpulse-agent run --accept` (or `login --accept`).")
                return False
            profile.accepted_policy_version = holder.policy.version
            profile.save(folder)
            print("accepted.")
        return True
    finally:
        await channel.close()
        outbox.close()


async def _run(args: argparse.Namespace, folder: Path, profile: Profile) -> None:
    _require_sign_in(profile)
    gateway = Gateway(profile.gateway)
    try:
        if not await _notice(args, folder, profile, TokenKeeper(gateway, CredentialStore(folder))):
            raise Failure("the organization's collection notice is not accepted yet", EXIT_NOT_ACCEPTED)
    finally:
        await gateway.aclose()
    await run_agent(
        folder, profile, tls=args.ingest_tls, cap_bytes=int(args.disk_cap_mb * 2**20), flush_seconds=args.flush_seconds
    )


async def _start(args: argparse.Namespace, folder: Path, profile: Profile) -> None:
    _require_sign_in(profile)
    gateway = Gateway(profile.gateway)
    try:
        tokens = TokenKeeper(gateway, CredentialStore(folder))
        access = await tokens.access()
        try:
            session = await gateway.start_session(access, args.project)
        except GatewayError as exc:
            if exc.status != 409:
                raise
            active = await gateway.active_session(access, profile.user_id)
            if active is None:
                raise
            print(f"already working: session {active.id} since {active.start_time}")
            return
        print(f"session {session.id} started at {session.start_time}")
    finally:
        await gateway.aclose()


async def _stop(args: argparse.Namespace, folder: Path, profile: Profile) -> None:
    _require_sign_in(profile)
    gateway = Gateway(profile.gateway)
    try:
        tokens = TokenKeeper(gateway, CredentialStore(folder))
        access = await tokens.access()
        active = await gateway.active_session(access, profile.user_id)
        if active is None:
            print("no active session")
            return
        await gateway.stop_session(access, active.id)
        print(f"session {active.id} stopped")
    finally:
        await gateway.aclose()


async def _status(args: argparse.Namespace, folder: Path, profile: Profile) -> None:
    report = status.read(folder)
    report["account"] = profile.email or None
    report["credentials"] = CredentialStore(folder).where
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"account:      {profile.email or 'not signed in'}")
        print(status.render(report))


async def _logout(args: argparse.Namespace, folder: Path, profile: Profile) -> None:
    store = CredentialStore(folder)
    token = store.load()
    if token is not None:
        gateway = Gateway(profile.gateway)
        try:
            await gateway.log_out(token)
        except GatewayError as exc:
            print(f"could not revoke the sign-in on the server ({exc.message}); forgetting it here")
        finally:
            await gateway.aclose()
    store.delete()
    profile.user_id = profile.organization_id = ""
    profile.save(folder)
    print("signed out")


def _flush_seconds(text: str) -> float:
    value = float(text)
    if not 1 <= value <= 10:
        raise argparse.ArgumentTypeError("must be 1..10")
    return value


def _require_sign_in(profile: Profile) -> None:
    if not profile.signed_in:
        raise SignedOut("not signed in: run `workpulse-agent login`")


def _ask(prompt: str) -> str:
    if not sys.stdin.isatty():
        raise Failure(f"missing option for {prompt.rstrip(': ').lower()} (no terminal to ask on)", EXIT_USAGE)
    answer = input(prompt).strip()
    if not answer:
        raise Failure(f"{prompt.rstrip(': ')} is required", EXIT_USAGE)
    return answer
