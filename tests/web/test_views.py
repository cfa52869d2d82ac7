"""The pure parts of the pages: chart geometry, times for people, before/after pairs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scanner.web.charts import HEIGHT, stacked_bars
from scanner.web.views import before_after, when


def test_stacked_bars_scale_and_stack_each_series() -> None:
    chart = stacked_bars("t", [{"day": "2026-12-01", "added": 2, "modified": 3},
                               {"day": "2026-12-02"}], ("added", "removed", "modified"))
    assert [(b.series, b.value, b.label) for b in chart.bars] == [
        ("added", 2, "2026-12-01"), ("modified", 3, "2026-12-01")]
    added, modified = chart.bars
    assert added.y + added.height == HEIGHT - 34            # sits on the axis
    assert modified.y + modified.height == added.y          # stacked on top
    assert modified.height == pytest.approx(1.5 * added.height)
    assert modified.y == 10                                 # the largest total: the top
    assert [t.text for t in chart.y_ticks] == ["0", "2.5", "5"]
    assert [t.text for t in chart.x_ticks] == ["12-01", "12-02"]
    assert not chart.empty and stacked_bars("t", [], ("added",)).empty


def test_times_for_people() -> None:
    assert when("2026-12-01T13:00:18.548884Z") == "2026-12-01 13:00:18 UTC"
    assert when(datetime(2026, 12, 1, 14, 0, tzinfo=UTC)) == "2026-12-01 14:00:00 UTC"
    assert when(None) == "never"


def test_before_after_of_modified_added_and_removed() -> None:
    modified = {"fields_changed": ["mode", "mtime"], "previous": {"mode": 0o755, "mtime": 0},
                "current": {"mode": 0o4755, "mtime": 1_500_000_000}}
    assert before_after(modified) == [("mode", "0755", "4755"),
                                      ("mtime", "1970-01-01T00:00:00Z",
                                       "1970-01-01T00:00:01.500000000Z")]
    state = {"type": "file", "size": 5, "acl": None, "xattrs": {}}
    assert before_after({"fields_changed": [], "previous": None, "current": state}) == [
        ("type", None, "file"), ("size", None, "5")]
    assert before_after({"fields_changed": [], "previous": state, "current": None}) == [
        ("type", "file", None), ("size", "5", None)]


def test_cursors_round_trip_any_text_and_refuse_anything_else() -> None:
    import pytest as _pytest

    from scanner.errors import ConfigError
    from scanner.storage.queries import Cursor

    key = (1, "db|01 \\u00e9\u00e9 <x>\"", 42)
    token = Cursor(key).encode()
    assert Cursor.decode(token, (int, str, int)).key == key
    assert Cursor.decode(Cursor(("2026-12-01 10:00:00+00:00", 7)).encode(), (str, int)).key == (
        "2026-12-01 10:00:00+00:00", 7)
    for bad, kinds in ((token, (int, str)), (token, (int, int, int)), ("!!", (int,)),
                       (Cursor((True,)).encode(), (int,)), ("x" * 5000, (int,))):
        with _pytest.raises(ConfigError, match="invalid cursor"):
            Cursor.decode(bad, kinds)
