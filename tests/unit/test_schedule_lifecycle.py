"""Due planning and lifecycle transitions (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scanner.errors import IllegalTransition
from scanner.lifecycle import check_scan, check_snapshot
from scanner.schedule import MachineSchedule, due_machines, is_due, last_slot, slot_offset

DAY = timedelta(hours=24)
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_slots_are_stable_and_spread_over_the_day() -> None:
    offsets = [slot_offset(str(i), DAY) for i in range(1000)]
    assert offsets == [slot_offset(str(i), DAY) for i in range(1000)]
    hours = {int(o.total_seconds() // 3600) for o in offsets}
    assert hours == set(range(24))  # every hour of the day gets machines
    assert all(timedelta(0) <= o < DAY for o in offsets)


def test_last_slot_is_at_most_one_cadence_ago() -> None:
    offset = slot_offset("7", DAY)
    slot = last_slot(NOW, offset, DAY)
    assert NOW - DAY < slot <= NOW
    assert last_slot(slot, offset, DAY) == slot


def test_never_scanned_is_due_now() -> None:
    assert is_due(MachineSchedule("1", None, False), NOW, DAY)


def test_in_flight_or_disabled_is_never_due() -> None:
    assert not is_due(MachineSchedule("1", None, True), NOW, DAY)
    assert not is_due(MachineSchedule("1", None, False, enabled=False), NOW, DAY)


def test_due_once_per_cadence_at_its_slot() -> None:
    key = "42"
    slot = last_slot(NOW, slot_offset(key, DAY), DAY)
    just_after = MachineSchedule(key, slot + timedelta(seconds=1), False)
    assert not is_due(just_after, NOW, DAY)
    assert not is_due(just_after, slot + DAY - timedelta(seconds=1), DAY)
    assert is_due(just_after, slot + DAY, DAY)
    before_slot = MachineSchedule(key, slot - timedelta(seconds=1), False)
    assert is_due(before_slot, NOW, DAY)


def test_short_cadence_is_honoured() -> None:
    hour = timedelta(hours=1)
    machine = MachineSchedule("x", NOW - timedelta(minutes=90), False)
    assert is_due(machine, NOW, hour)
    assert not is_due(MachineSchedule("x", NOW, False), NOW, hour)
    assert is_due(MachineSchedule("x", NOW, False), NOW + hour, hour)


def test_due_machines_orders_new_then_longest_waiting() -> None:
    machines = [MachineSchedule("a", NOW - 3 * DAY, False), MachineSchedule("b", None, False),
                MachineSchedule("c", NOW - 2 * DAY, False), MachineSchedule("d", None, True)]
    assert [m.key for m in due_machines(machines, NOW, DAY)] == ["b", "a", "c"]
    assert [m.key for m in due_machines(machines, NOW, DAY, limit=1)] == ["b"]


def test_scan_lifecycle() -> None:
    assert check_scan("snapshotting", "queued") == "queued"
    assert check_scan("running", "running") == "running"  # redelivered after a worker died
    for done in ("succeeded", "partial", "failed"):
        assert check_scan("running", done) == done
        with pytest.raises(IllegalTransition):
            check_scan(done, "running")
    with pytest.raises(IllegalTransition):
        check_scan("snapshotting", "succeeded")


def test_snapshot_lifecycle() -> None:
    state = "requested"
    for new in ("pending", "ready", "scanning", "scanned", "deleted"):
        state = check_snapshot(state, new)
    with pytest.raises(IllegalTransition):
        check_snapshot("deleted", "ready")
    with pytest.raises(IllegalTransition):
        check_snapshot("scanned", "scanning")


def test_a_failed_machine_is_retried_after_an_hour_not_a_day() -> None:
    key = "9"
    slot = last_slot(NOW, slot_offset(key, DAY), DAY)
    failed = MachineSchedule(key, slot + timedelta(minutes=1), False, last_failed=True)
    assert not is_due(failed, slot + timedelta(minutes=30), DAY)
    assert is_due(failed, slot + timedelta(minutes=61), DAY)
    succeeded = MachineSchedule(key, slot + timedelta(minutes=1), False)
    assert not is_due(succeeded, slot + timedelta(minutes=61), DAY)
    assert is_due(failed, slot + timedelta(minutes=11), DAY, retry_after=timedelta(minutes=10))
