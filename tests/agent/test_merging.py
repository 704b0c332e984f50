"""Samples merge into events; durations add up to the covered time exactly."""

from __future__ import annotations

import uuid

from agent.collectors.base import WindowSample
from agent.merging import ACTIVE, IDLE, Merger

EDITOR = WindowSample("Editor", "notes.txt")
BROWSER = WindowSample("Browser", "news")


def test_same_samples_merge_and_a_change_closes_the_event() -> None:
    m = Merger(flush_seconds=10)
    assert m.observe(100.0, "s", ACTIVE, EDITOR) == []
    assert m.observe(101.0, "s", ACTIVE, EDITOR) == []
    assert m.observe(102.0, "s", ACTIVE, EDITOR) == []
    done = m.observe(103.0, "s", ACTIVE, BROWSER)
    assert [(e.app, e.title, e.duration, e.started_at) for e in done] == [("Editor", "notes.txt", 3, 100.0)]
    uuid.UUID(done[0].client_event_id)
    assert m.open is not None and m.open.app == "Browser"


def test_state_title_and_session_each_split_events() -> None:
    m = Merger()
    m.observe(0.0, "s", ACTIVE, EDITOR)
    assert [e.activity for e in m.observe(1.0, "s", IDLE, EDITOR)] == [ACTIVE]
    assert [e.activity for e in m.observe(2.0, "s", IDLE, WindowSample("Editor", "other"))] == [IDLE]
    assert [e.session_id for e in m.observe(3.0, "t", IDLE, WindowSample("Editor", "other"))] == ["s"]


def test_an_event_is_flushed_after_the_flush_interval() -> None:
    m = Merger(flush_seconds=10)
    done = []
    for t in range(0, 26):
        done += m.observe(float(t), "s", ACTIVE, EDITOR)
    assert [e.duration for e in done] == [10, 10]
    assert len({e.client_event_id for e in done}) == 2


def test_durations_add_up_whatever_the_fractions() -> None:
    m = Merger(flush_seconds=10)
    done = []
    t = 1000.37
    apps = [EDITOR, BROWSER]
    for i in range(200):
        done += m.observe(t, "s", ACTIVE, apps[(i // 7) % 2])
        t += 0.998
    done += m.pause(t)
    assert sum(e.duration for e in done) == round(t) - round(1000.37)


def test_a_gap_is_not_counted_as_activity() -> None:
    m = Merger(flush_seconds=10, interval=1.0)
    m.observe(0.0, "s", ACTIVE, EDITOR)
    m.observe(1.0, "s", ACTIVE, EDITOR)
    done = m.observe(600.0, "s", ACTIVE, EDITOR)  # the laptop slept
    assert [e.duration for e in done] == [2]
    assert m.open is not None and m.open.started_at == 600.0


def test_pause_ends_the_open_event_and_ids_are_not_reused() -> None:
    m = Merger()
    for t in range(4):
        m.observe(float(t), "s", ACTIVE, EDITOR)
    first = m.pause(4.0)
    assert [e.duration for e in first] == [4]
    assert m.pause(5.0) == []
    m.observe(5.0, "s", ACTIVE, EDITOR)
    second = m.pause(6.0)
    assert second[0].client_event_id != first[0].client_event_id


def test_an_event_shorter_than_a_second_is_not_stored() -> None:
    m = Merger()
    m.observe(10.2, "s", ACTIVE, EDITOR)
    assert m.pause(10.4) == []
