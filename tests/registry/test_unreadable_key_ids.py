"""The collector's unreadable ids and the completeness of a log replay (issue 9, fuzz
classes F and K), on hives built by the hive writer.

* A subkey list that cannot be read while an entity's path is resolved is recorded under the
  id the state uses: the keys found so far in their on-disk spelling, then the entity's next
  segment (a plain name) or nothing more (a wildcard).
* A replay is ``replay-incomplete`` when the flush its log holds goes on past the replayed
  entries (the next entry has the next sequence number, or a damaged header), or a log was
  refused; an intact entry of an older flush after the replayed ones ends a replay normally.
"""

from __future__ import annotations

import struct

from scanner.collectors.registry import collect
from scanner.policy import make_entity
from scanner.registry.hive import HBIN_START, REG_SZ, Hive
from scanner.registry.replay import open_hive
from tests.imaging.hives import HiveBuilder, marvin32, sz, write_transaction_log

SW = "HKLM\\SOFTWARE"
NK_SUBKEY_LIST = 4 + 0x1C


def hive() -> HiveBuilder:
    b = HiveBuilder("ROOT", hive_name="SOFTWARE")
    for name in ("Alpha", "Beta"):
        b.key(f"Policy\\Secrets\\{name}").value("v", REG_SZ, sz(name))
    b.key("Policy\\Other")
    for i in range(40):  # the hive spans several pages
        b.key(f"Filler\\K{i:02d}").value("v", REG_SZ, sz("f" * 200))
    return b


def change(b: HiveBuilder) -> None:
    """Two values' data rewritten (same size) far apart, on two pages: the hive keeps its
    size and layout, so each log entry carries one page and any prefix of the entries
    replays into a readable hive."""
    b.value("Filler\\K00", "v", REG_SZ, sz("g" * 200))
    b.value("Filler\\K39", "v", REG_SZ, sz("g" * 200))


def broken(data: bytes, key_path: str) -> tuple[bytes, int]:
    """``data`` with the subkey list of ``key_path`` ('' = root) made a non-list cell."""
    h = Hive(data)
    key = h.find(key_path) if key_path else h.root
    assert key is not None
    (cell,) = struct.unpack_from("<I", data, HBIN_START + key.offset + NK_SUBKEY_LIST)
    out = bytearray(data)
    out[HBIN_START + cell + 4:HBIN_START + cell + 6] = b"XX"
    return bytes(out), cell


def test_unreadable_list_on_the_way_is_recorded_under_the_state_spelling() -> None:
    data, cell = broken(hive().build(), "Policy")
    reason = f"cell 0x{cell:x} is not a subkey list (b'XX')"
    out, unreadable = collect(open_hive(data), SW, [make_entity(f"{SW}\\POLICY\\SECRETS")])
    assert (out, unreadable) == ({}, {f"{SW}\\Policy\\SECRETS": reason})
    # one level further down: the ids of every key found, then the entity's next segment
    out, unreadable = collect(open_hive(data), SW,
                              [make_entity(f"{SW}\\policy\\secrets\\alpha", depth=0)])
    assert (out, unreadable) == ({}, {f"{SW}\\Policy\\secrets": reason})


def test_unreadable_list_under_a_wildcard_is_the_whole_parent() -> None:
    data, cell = broken(hive().build(), "Policy\\Secrets")
    out, unreadable = collect(open_hive(data), SW,
                              [make_entity(f"{SW}\\POLICY\\SECRETS\\*", depth=0)])
    assert (out, unreadable) == ({}, {f"{SW}\\Policy\\Secrets":
                                      f"cell 0x{cell:x} is not a subkey list (b'XX')"})


def test_unreadable_hive_root_list_under_a_user_wildcard() -> None:
    data, cell = broken(hive().build(), "")
    out, unreadable = collect(open_hive(data), "HKU\\bob",
                              [make_entity("HKU\\*\\Software\\Run", depth=0)])
    assert (out, unreadable) == ({}, {"HKU\\bob\\Software":
                                      f"cell 0x{cell:x} is not a subkey list (b'XX')"})


def two_entries() -> tuple[bytes, bytes, int]:
    """A dirty primary, its LOG1 with two entries (sequence 1 and 2) and the offset of the
    second entry."""
    b = hive()
    old = b.build()
    change(b)
    new = b.build()
    assert len(new) == len(old)
    logged = write_transaction_log(old, new, entries=2)
    second = 512 + struct.unpack_from("<I", logged.log1, 512 + 4)[0]
    assert logged.log1[second:second + 4] == b"HvLE"
    return logged.primary, logged.log1, second


def test_a_damaged_second_entry_makes_the_replay_incomplete() -> None:
    primary, log1, second = two_entries()
    assert open_hive(primary, log1=log1).status == "replayed"
    body = bytearray(log1)
    body[len(body) - 1] ^= 0x01  # the last byte of entry 2's pages: its body hash fails
    opened = open_hive(primary, log1=bytes(body))
    assert opened.status == "replay-incomplete"
    assert opened.status_reason == (
        "sequence numbers differ (primary 2, secondary 1); replayed LOG1 up to sequence 1; "
        f"replay incomplete: LOG1: entry 2 (at 0x{second:x}) is damaged and was not replayed")
    head = bytearray(log1)
    head[second + 8] ^= 0x01  # the flags: the header hash fails
    assert open_hive(primary, log1=bytes(head)).status_reason.endswith(
        f"LOG1: the entry after sequence 1 (at 0x{second:x}) has a damaged header")


def test_an_intact_entry_of_an_older_flush_ends_the_replay_normally() -> None:
    primary, log1, second = two_entries()
    old = bytearray(log1)
    struct.pack_into("<I", old, second + 0x0C, 0)  # sequence 0: left from an earlier flush
    struct.pack_into("<Q", old, second + 0x20, marvin32(bytes(old[second:second + 32])))
    opened = open_hive(primary, log1=bytes(old))
    assert opened.status == "replayed"
    assert opened.status_reason == ("sequence numbers differ (primary 2, secondary 1); "
                                    "replayed LOG1 up to sequence 1")


def test_a_refused_second_log_makes_the_replay_incomplete() -> None:
    b = hive()
    old = b.build()
    change(b)
    logged = write_transaction_log(old, b.build(), entries=2, dual=True)
    assert logged.log2 is not None
    assert open_hive(logged.primary, logged.log1, logged.log2).status == "replayed"
    log2 = bytearray(logged.log2)
    struct.pack_into("<I", log2, 512 + 40, 0x7FFFF000)  # its page lies far outside the bins
    opened = open_hive(logged.primary, logged.log1, bytes(log2))
    assert opened.status == "replay-incomplete"
    assert opened.status_reason.endswith("; replay incomplete: LOG2 was refused")
    assert "LOG2 unusable (entry 2: dirty page at 0x7ffff000" in opened.status_reason
