"""The scheduler's rules without I/O: slots, local days across zones and DST, ranges."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.scheduler import domain
from services.scheduler.domain import DailySummary, DateRange, UserReport, UserZone
from workpulse.errors import InvalidArgument


def test_slots_are_multiples_of_the_period() -> None:
    quarter = timedelta(minutes=15)
    assert domain.slot_of(datetime(2026, 3, 1, 10, 14, 59, tzinfo=UTC), quarter) == datetime(
        2026, 3, 1, 10, 0, tzinfo=UTC
    )
    after, until = datetime(2026, 3, 1, 10, 0, tzinfo=UTC), datetime(2026, 3, 1, 10, 50, tzinfo=UTC)
    assert domain.slots_between(after, until, quarter) == [
        datetime(2026, 3, 1, 10, m, tzinfo=UTC) for m in (15, 30, 45)
    ]


def test_effective_zone_prefers_a_chosen_user_zone() -> None:
    assert UserZone.effective("o", "u", "Asia/Tokyo", "Europe/Paris").timezone == "Asia/Tokyo"
    assert UserZone.effective("o", "u", "UTC", "Europe/Paris").timezone == "Europe/Paris"
    assert UserZone.effective("o", "u", "", "").timezone == "UTC"


def test_local_days_are_23_24_or_25_hours() -> None:
    for tz, day, hours in (
        ("Europe/Berlin", date(2026, 3, 29), 23),
        ("Europe/Berlin", date(2026, 10, 25), 25),
        ("Pacific/Kiritimati", date(2026, 3, 29), 24),
    ):
        start, end = domain.local_day(tz, day)
        assert end - start == timedelta(hours=hours)


def test_days_ended_in_a_slot_pick_only_the_zones_at_midnight() -> None:
    users = [
        UserZone("o", "kiri", "Pacific/Kiritimati"),
        UserZone("o", "baker", "Etc/GMT+12"),
        UserZone("o", "kathmandu", "Asia/Kathmandu"),
    ]
    # 18:15 UTC is 00:00 in Kathmandu (UTC+5:45) the next day.
    found = domain.days_ended_between(
        users, datetime(2026, 6, 15, 18, 0, tzinfo=UTC), datetime(2026, 6, 15, 18, 15, tzinfo=UTC)
    )
    assert [(w.user_id, w.date) for w in found] == [("kathmandu", date(2026, 6, 15))]
    # A whole day back from 12:00 UTC covers every zone's latest finished day once.
    whole = domain.days_ended_between(
        users, datetime(2026, 6, 15, 12, 0, tzinfo=UTC), datetime(2026, 6, 16, 12, 0, tzinfo=UTC)
    )
    assert sorted((w.user_id, w.date) for w in whole) == [
        ("baker", date(2026, 6, 15)),
        ("kathmandu", date(2026, 6, 15)),
        ("kiri", date(2026, 6, 16)),
    ]


def test_scores_and_alert_wording() -> None:
    assert domain.productivity_score(0, 0) == 0.0
    assert domain.productivity_score(2, 1) == 66.67
    alert = domain.overtime_alert("o", "u", date(2026, 1, 2), 9 * 3600 + 1799, 9)
    assert alert.work_hours == 9.49 and "9.49 hours" in alert.message


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("", "2026-01-01", "startDate"),
        ("2026-01-01", "", "endDate"),
        ("2026-1-1", "2026-01-02", "startDate"),
        ("2026-01-03", "2026-01-02", "endDate"),
        ("2024-01-01", "2025-01-01", "endDate"),
    ],
)
def test_bad_ranges_name_their_field(start: str, end: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        domain.parse_range(start, end)
    assert raised.value.field == field


def test_unknown_job_names_list_the_known_ones() -> None:
    with pytest.raises(InvalidArgument, match="known jobs: activity_partitions, daily_summaries"):
        domain.job_spec("weekly")


def test_agent_silent_time_is_work_no_event_covers() -> None:
    day = date(2026, 11, 1)
    covered = DailySummary(
        "o",
        "u",
        day,
        "UTC",
        total_work_seconds=3600,
        active_seconds=3000,
        idle_seconds=600,
        productivity_score=83.33,
        sessions_count=1,
    )
    assert covered.agent_silent_seconds == 0
    silent = DailySummary(
        "o",
        "u",
        day,
        "UTC",
        total_work_seconds=3600,
        active_seconds=1800,
        idle_seconds=300,
        productivity_score=85.71,
        sessions_count=1,
    )
    assert silent.agent_silent_seconds == 1500
    # Events stamped into a window their session does not fully cover never make it negative.
    over = DailySummary(
        "o",
        "u",
        day,
        "UTC",
        total_work_seconds=60,
        active_seconds=90,
        idle_seconds=0,
        productivity_score=100.0,
        sessions_count=1,
    )
    assert over.agent_silent_seconds == 0
    report = UserReport("u", DateRange(day, day), [covered, silent, over])
    assert report.total_agent_silent_seconds == 1500
