"""Opening a registry hive: the primary file brought up to date from its transaction logs.

    hive = open_hive(software_bytes, log1=log1_bytes, log2=log2_bytes)

A dirty hive (sequence numbers differ, or a bad base-block checksum) is replayed from its
``.LOG1``/``.LOG2`` with python-registry's ``RegistryLog``, in a copy, after each log has been
checked against the hive's bounds (:func:`check_log`); the result says whether it is clean,
replayed, replayed in part, or read as is (:attr:`scanner.registry.hive.Hive.status`).
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO

from Registry.RegistryLog import RegistryLog
from Registry.RegistryParse import HvLEBlock

from scanner.limits import Limits
from scanner.registry.hive import Hive, HiveError, parse_header

__all__ = ["open_hive", "check_log"]


def _read(source: bytes | bytearray | memoryview | BinaryIO) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    return source.read()


def open_hive(data: bytes | BinaryIO, log1: bytes | BinaryIO | None = None,
              log2: bytes | BinaryIO | None = None, limits: Limits | None = None) -> Hive:
    """Open a primary hive (bytes or a binary file object), replaying its transaction logs
    when it is dirty.

    ``hive.status`` is ``'clean'``, ``'replayed'`` (dirty, brought up to date from LOG1/LOG2
    with python-registry's ``RegistryLog``, in a copy) or ``'dirty-not-replayed'`` (read as
    is: no usable log) or ``'replay-incomplete'`` (replayed in part: a log was refused, an
    entry of the flush is damaged, or a log starts after a gap; see :func:`_replay`: the hive
    may be part old, part new, so removals under it are not to be trusted);
    ``hive.status_reason`` says why. A log is checked before it is replayed
    (:func:`check_log`): one whose pages lie outside what the hive can grow to, or that holds
    more than ``limits.log_pages`` pages, is unusable (the reason is in ``status_reason``).

    Raises:
        HiveError: not a hive, truncated, unsupported version, or no readable root key.
    """
    limits = limits or Limits()
    raw = _read(data)
    header = parse_header(raw)
    if not header.dirty:
        return Hive(raw, limits=limits)
    why = (f"sequence numbers differ (primary {header.primary_sequence}, secondary "
           f"{header.secondary_sequence})" if header.checksum_ok
           else "base block checksum mismatch")
    logs = [(name, _read(log)) for name, log in (("LOG1", log1), ("LOG2", log2))
            if log is not None]
    if not logs:
        return Hive(raw, status="dirty-not-replayed",
                    status_reason=f"{why}; no transaction log given", limits=limits)
    try:
        replayed, detail, incomplete = _replay(raw, header.hbins_size, logs, limits)
    except Exception as exc:  # python-registry raises many kinds on bad logs
        return Hive(raw, status="dirty-not-replayed",
                    status_reason=f"{why}; replay failed: {type(exc).__name__}: {exc}",
                    limits=limits)
    if replayed is None:
        return Hive(raw, status="dirty-not-replayed", status_reason=f"{why}; {detail}",
                    limits=limits)
    if incomplete is not None:
        status, detail = "replay-incomplete", f"{detail}; replay incomplete: {incomplete}"
    else:
        status = "replayed"
    try:
        return Hive(replayed, status=status, status_reason=f"{why}; {detail}", limits=limits)
    except HiveError as exc:
        return Hive(raw, status="dirty-not-replayed",
                    status_reason=f"{why}; {detail}; replayed hive unreadable ({exc})",
                    limits=limits)


_LOG_ENTRY = struct.Struct("<4sIIIII")  # HvLE, size, flags, sequence, hbins size, page count
_PAGE = 4096


def check_log(log: bytes, hbins_size: int, limits: Limits, other_logs: int = 0
              ) -> str | None:
    """Why a new-format (``HvLE``) transaction log must not be replayed into a hive whose
    bins are ``hbins_size`` bytes, or None when its entries stay in bounds.

    Every entry is checked the way a replay would use it, before anything is written: its
    new bins size can grow the hive by no more than the logs hold (this one, and
    ``other_logs`` bytes of the other log replayed with it), each dirty page lies
    inside that size, and all entries together hold at most ``limits.log_pages`` pages.
    (python-registry writes each page at its offset into a growing buffer: a page claimed at
    0xFFFFE000 would make it allocate 4 GiB.)
    """
    most = hbins_size + len(log) + other_logs  # logs add no more than the pages they hold
    pages = 0
    at = 512
    while at + 40 <= len(log) and log[at:at + 4] == b"HvLE":
        _sig, size, _flags, sequence, bins, count = _LOG_ENTRY.unpack_from(log, at)
        if size <= 40 or size % 512 or bins % _PAGE:
            break  # python-registry stops at such an entry: nothing after it is replayed
        if at + size > len(log) or 40 + 8 * count > size:  # it would not stop: refuse
            return (f"entry {sequence} claims {size} bytes and {count} dirty pages, more "
                    "than the log holds")
        if bins == 0 or bins > most:
            return (f"entry {sequence} gives the hive 0x{bins:x} bytes of bins, impossible "
                    f"from 0x{hbins_size:x} with this log")
        for offset, length in struct.iter_unpack("<II", log[at + 40:at + 40 + 8 * count]):
            if offset % _PAGE or length == 0 or length % _PAGE or offset + length > bins:
                return (f"entry {sequence}: dirty page at 0x{offset:x} ({length} bytes) "
                        f"outside the 0x{bins:x} bytes of bins")
            pages += length // _PAGE
            if pages > limits.log_pages:
                return (f"more than {limits.log_pages} dirty pages, the bound "
                        "(SNAPFIM_MAX_LOG_PAGES)")
        at += size
    return None


def _stopped_early(log: bytes, first: int, last: int) -> str | None:
    """Why a log whose entries ``first``..``last`` were replayed holds more of the same
    flush that was not, or None when the replay used all of it.

    The entry that follows the replayed ones (python-registry stops at the first entry with
    an unexpected sequence number, a bad size or a bad hash) is a refused part of the flush
    when it has the next sequence number, or when its header hash is wrong (its sequence
    number cannot be trusted); an intact header with another sequence number is what is
    left of an older flush, where a replay rightly ends."""
    at = 512
    for _ in range(last - first + 1):
        if at + 40 > len(log) or log[at:at + 4] != b"HvLE":
            return None
        at += _LOG_ENTRY.unpack_from(log, at)[1]
    if at + 40 > len(log) or log[at:at + 4] != b"HvLE":
        return None
    entry = HvLEBlock(log, at, None)
    expected = (last + 1) & 0xFFFFFFFF
    if entry.hash_2() != entry.calculate_hash_2():
        return f"the entry after sequence {last} (at 0x{at:x}) has a damaged header"
    if entry.sequence() == expected:
        return f"entry {expected} (at 0x{at:x}) is damaged and was not replayed"
    return None


def _replay(raw: bytes, hbins_size: int, logs: list[tuple[str, bytes]], limits: Limits
            ) -> tuple[bytes | None, str, str | None]:
    """Replay the usable logs into a copy of ``raw``: (the replayed bytes or None, what was
    done, why the replay is incomplete or None). A replay is incomplete when a log was
    refused (:func:`check_log`) while another was replayed, when it stopped before the end
    of the flush its last log holds (:func:`_stopped_early`), or when a log that should
    continue it starts after a gap: the hive is then part old, part new."""
    primary = io.BytesIO(raw)
    opened = []
    skipped = []  # a log that cannot be parsed (empty, garbage) is left out, not fatal
    refused = []  # a log check_log refuses: what it holds is missing from the replay
    total = sum(len(log) for _, log in logs)
    for name, log in logs:
        problem = check_log(log, hbins_size, limits, total - len(log))
        if problem is not None:
            skipped.append(f"{name} unusable ({problem})")
            refused.append(name)
            continue
        primary.seek(0)
        try:
            parsed = RegistryLog(primary, io.BytesIO(log))
            usable = parsed.is_eligible_log()
        except Exception as exc:  # python-registry raises many kinds on bad logs
            skipped.append(f"{name} unusable ({type(exc).__name__})")
            continue
        if usable:
            opened.append((name, parsed, log))
        else:
            skipped.append(f"{name} older than the hive")
    eligible = opened
    if not eligible:
        return None, "no usable transaction log: " + ", ".join(skipped), None
    if len(eligible) == 2 and not eligible[0][1].is_starting_log(eligible[1][1]):
        eligible.reverse()
    (first_name, first, first_log), rest = eligible[0], eligible[1:]
    last = first.recover_hive()
    if last is None:
        return None, f"{first_name} has nothing to replay", None
    applied = [first_name]
    ended = (first_name, first_log, first.first_log_sequence())
    missing = [f"{name} was refused" for name in refused]
    for name, log, data in rest:
        start = log.first_log_sequence()
        more = log.recover_hive_continue(last + 1)
        if more is not None:
            last = more
            applied.append(name)
            ended = (name, data, start)
        elif start > last + 1:
            missing.append(f"{name} starts at sequence {start}, after a gap")
    stop = _stopped_early(ended[1], ended[2], last)
    if stop is not None:
        missing.insert(0, f"{ended[0]}: {stop}")
    note = f" ({', '.join(skipped)})" if skipped else ""
    return (primary.getvalue(), f"replayed {' then '.join(applied)} up to sequence {last}{note}",
            "; ".join(missing) or None)
