"""Window titles: checked like the other text of an event, stored through every write path,
and dropped by the server (with URLs) when the sender's agent policy does not collect them."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.admission import Admission, EventCollection, admit, derive_client_event_id
from services.ingest.domain import IncomingEvent, RejectReason, SessionWindow
from tests.ingest.conftest import Stack, User, UserFactory, event
from workpulse.ingest.v1 import ingest_pb2 as pb

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
WINDOW = SessionWindow("org", "sess", "user", NOW - timedelta(hours=1), None)
NO_TITLES = EventCollection(titles=False, urls=True)
EVERYTHING = EventCollection()


def _admit(events: list[IncomingEvent], collection: EventCollection = EVERYTHING) -> Admission:
    return admit(events, WINDOW, now=NOW, skew=timedelta(seconds=5), require_timestamp=True, collection=collection)


@pytest.mark.parametrize("chosen_ids", [True, False], ids=["agent batch", "mixed batch"])
def test_a_title_is_checked_like_app_name_and_kept_on_the_admitted_event(chosen_ids: bool) -> None:
    def e(n: int, title: str) -> IncomingEvent:
        return IncomingEvent(
            "active",
            5,
            timestamp=NOW - timedelta(seconds=n),
            client_event_id=f"e{n}" if chosen_ids else "",
            title=title,
        )

    fine = _admit([e(1, "Inbox — Mail"), e(2, "")])
    assert [ev.title for ev in fine.events] == ["Inbox — Mail", None] and not fine.rejected
    refused = _admit([e(1, "ok"), e(2, "x" * 1025), e(3, "bell\x07"), e(4, "tabs\tare text")])
    assert [(o.index, o.reason, o.message) for o in refused.rejected] == [
        (1, RejectReason.FIELD_TOO_LONG, "title: at most 1024 characters"),
        (2, RejectReason.INVALID_TEXT, "title: must not contain control characters"),
    ]
    assert [ev.title for ev in refused.events] == ["ok", "tabs\tare text"]


def test_text_the_policy_does_not_collect_is_dropped_before_it_is_checked() -> None:
    events = [
        IncomingEvent("active", 5, url="https://bank.example/", timestamp=NOW, title="x" * 2000),
        IncomingEvent("idle", 5, url="https://mail.example/", timestamp=NOW - timedelta(seconds=1), title="\x1b[31m"),
    ]
    kept = _admit(events, NO_TITLES)
    assert not kept.rejected and [(e.title, e.url) for e in kept.events] == [
        (None, "https://bank.example/"),
        (None, "https://mail.example/"),
    ]
    neither = _admit(events, EventCollection(titles=False, urls=False))
    assert [(e.title, e.url) for e in neither.events] == [(None, None), (None, None)]
    # A derived id is made of what is kept: no hash of an uncollected URL is stored either.
    blank = IncomingEvent("active", 5, timestamp=NOW)
    assert neither.events[0].client_event_id == derive_client_event_id("sess", blank, NOW)


def test_an_event_without_a_title_keeps_the_id_it_was_derived_before_titles() -> None:
    plain = IncomingEvent("active", 60, app_name="Editor", url="https://a/", timestamp=NOW)
    content = "\x1f".join(("sess", NOW.isoformat(), "active", "60", "Editor", "https://a/"))
    assert derive_client_event_id("sess", plain, NOW) == "sha256:" + hashlib.sha256(content.encode()).hexdigest()[:40]
    titled = IncomingEvent("active", 60, app_name="Editor", url="https://a/", timestamp=NOW, title="Doc")
    assert derive_client_event_id("sess", titled, NOW) != derive_client_event_id("sess", plain, NOW)


async def _stored(engine: AsyncEngine, session_id: str) -> dict[str, tuple[str | None, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("select client_event_id, title, url from ingest.activity_logs where session_id = :s"),
            {"s": session_id},
        )
        return {cid: (title, url) for cid, title, url in rows}


def _titled(cid: str, title: str, url: str = "https://example.com/x", at: datetime | None = None) -> pb.ActivityEvent:
    message = event(5, at=at or datetime.now(UTC), client_id=cid)
    message.title, message.url = title, url
    return message


async def _stream(
    stack: Stack, user: User, session_id: str, events: list[pb.ActivityEvent]
) -> pb.StreamActivityResponse:
    async def batches() -> AsyncIterator[pb.StreamActivityRequest]:
        yield pb.StreamActivityRequest(batch_id=uuid.uuid4().hex, session_id=session_id, events=events)

    (ack,) = [a async for a in stack.ingest.StreamActivity(batches(), metadata=user.md)]
    return ack


async def test_titles_are_stored_through_every_write_path(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    user = make_user()
    session = await stack.start(user)
    one = pb.RecordActivityRequest(session_id=session.id, event=_titled("single", "Report.docx — Word"))
    await stack.ingest.RecordActivity(one, metadata=user.md)
    batch = pb.RecordActivityBatchRequest(session_id=session.id, events=[_titled("batch", "Ünïcode ✓ title")])
    await stack.ingest.RecordActivityBatch(batch, metadata=user.md)
    ack = await _stream(
        stack, user, session.id, [_titled("s1", "Stream one"), _titled("s2", ""), _titled("s3", "x" * 1025)]
    )
    assert (ack.accepted, ack.rejected, ack.results[0].reason) == (2, 1, pb.REJECT_REASON_FIELD_TOO_LONG)
    assert await _stored(owner_engine, session.id) == {
        "single": ("Report.docx — Word", "https://example.com/x"),
        "batch": ("Ünïcode ✓ title", "https://example.com/x"),
        "s1": ("Stream one", "https://example.com/x"),
        "s2": (None, "https://example.com/x"),
    }
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        bad = pb.RecordActivityRequest(session_id=session.id, event=_titled("bad", "a\x00b"))
        await stack.ingest.RecordActivity(bad, metadata=user.md)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "event.title: must not contain control characters"


async def test_titles_and_urls_are_dropped_when_the_senders_policy_does_not_collect_them(
    stack: Stack, make_user: UserFactory, owner_engine: AsyncEngine
) -> None:
    admin = make_user("admin")
    private, watched = make_user(org=admin.org), make_user(org=admin.org)
    put = pb.PutOrganizationAgentPolicyRequest(
        defaults=pb.AgentPolicy(collect_titles=False),
        users=[
            pb.UserAgentPolicy(user_id=private.id, policy=pb.AgentPolicy(collect_urls=False)),
            pb.UserAgentPolicy(user_id=watched.id, policy=pb.AgentPolicy(collect_titles=True)),
        ],
    )
    await stack.ingest.PutOrganizationAgentPolicy(put, metadata=admin.md)
    found = {}
    for user in (private, watched):
        session = await stack.start(user)
        ack = await _stream(stack, user, session.id, [_titled("s", "Salary review.xlsx"), _titled("long", "y" * 5000)])
        one = pb.RecordActivityRequest(session_id=session.id, event=_titled("single", "Diary"))
        await stack.ingest.RecordActivity(one, metadata=user.md)
        found[user.id] = (ack, await _stored(owner_engine, session.id))
    ack, stored = found[private.id]
    # The organization collects no titles and this user's override no URLs: neither is stored,
    # and a title that would be refused is dropped, not refused.
    assert (ack.accepted, ack.rejected, ack.policy_version) == (2, 0, 1)
    assert stored == {"s": (None, None), "long": (None, None), "single": (None, None)}
    ack, stored = found[watched.id]
    assert (ack.accepted, ack.rejected) == (1, 1)  # titles collected: the long one is checked
    assert stored == {
        "s": ("Salary review.xlsx", "https://example.com/x"),
        "single": ("Diary", "https://example.com/x"),
    }
