"""The fuzz harness's own logic: deterministic cases inside their regions, and the verdicts."""

from __future__ import annotations

import json

import pytest

from tests.fuzzing import Case, Edit, Region, RunResult, apply_edits, classify, make_case

REGIONS = [Region("superblock", "sb", 1024, 2048), Region("inode", "inode of /etc", 4096, 4352),
           Region("inode", "inode of /bin", 8192, 8448, endian=">")]


def test_a_seed_always_makes_the_same_case_and_seeds_differ() -> None:
    cases = [make_case("ext4", seed, REGIONS) for seed in range(200)]
    assert cases == [make_case("ext4", seed, REGIONS) for seed in range(200)]
    assert len({c.edits for c in cases}) > 150
    assert {c.kind for c in cases} == {"byte", "bit", "byte-set", "field", "run", "scatter"}
    assert {c.region for c in cases} == {"superblock", "inode"}
    assert make_case("xfs", 3, REGIONS) != make_case("ext4", 3, REGIONS)


def test_edits_stay_inside_their_region() -> None:
    for seed in range(500):
        case = make_case("t", seed, REGIONS, fixup_rate=0.5)
        region = next(r for r in REGIONS if r.what == case.what)
        for edit in case.edits:
            assert region.start <= edit.offset
            assert edit.offset + len(edit.data) <= region.end


def test_xor_and_set_edits() -> None:
    data = bytes(range(8))
    assert apply_edits(data, [Edit(1, "xor", b"\xff"), Edit(6, "set", b"\xaa\xbb\xcc")]) == \
        bytearray([0, 0xFE, 2, 3, 4, 5, 0xAA, 0xBB])


CASE = Case("ext4", 7, "inode", "inode of /etc", "", "byte", (Edit(4100, "xor", b"\x01"),),
            False)


def run(code: int, out: object = "", err: str = "", timed_out: bool = False) -> RunResult:
    stdout = out if isinstance(out, str) else json.dumps(out)
    return RunResult(code, stdout, err, 0.1, 60.0, timed_out)


def report(status: str, *removed: str) -> dict[str, object]:
    return {"status": status, "events": [
        {"ChangeCategory": "Removed", "ConfigChangeType": "Files", "FileSystemPath": p}
        for p in removed]}


@pytest.mark.parametrize(("result", "kind", "detail"), [
    (run(0, report("succeeded")), "ok", "0 events"),
    (run(0, report("partial")), "partial", "0 events"),
    (run(3, report("partial"), "warning: scan 2 is partial: 1 paths could not be read"),
     "partial", "0 events"),
    (run(1, err="snapfim: error: disk.img: no readable filesystem\n"), "failed",
     "snapfim: error: disk.img: no readable filesystem"),
    (run(1, err="Traceback (most recent call last):\n  File x\nValueError: bad\n"),
     "VIOLATION", "traceback: ValueError: bad"),
    (run(1, err="Traceback (most recent call last):\nMemoryError\n"), "VIOLATION",
     "memory bound: MemoryError"),
    (run(-9, err=""), "VIOLATION", "killed by signal 9 (peak 60 MiB): "),
    (run(1, err="snapfim: error: one\nsnapfim: error: two\n"), "VIOLATION",
     "exit 1 with 2 stderr lines: snapfim: error: one | snapfim: error: two"),
    (run(3, report("succeeded")), "VIOLATION", "exit 3 with status 'succeeded'"),
    (run(0, "not json"), "VIOLATION",
     "exit 0 without a JSON report (Expecting value: line 1 column 1 (char 0)): 'not json'"),
    (run(-9, err='  File "x.py", line 3 in loop\n', timed_out=True), "VIOLATION",
     'time bound: killed after 0 s, in File "x.py", line 3 in loop'),
])
def test_verdicts(result: RunResult, kind: str, detail: str) -> None:
    outcome = classify(CASE, result, lambda events: [])
    assert (outcome.kind, outcome.detail) == (kind, detail)


def test_a_removed_entry_is_a_violation_unless_the_checker_confirms_it() -> None:
    gone = {"/etc/gone"}
    checker = lambda events: [e["FileSystemPath"] for e in events  # noqa: E731
                              if e["FileSystemPath"] not in gone]
    ok = classify(CASE, run(0, report("succeeded", "/etc/gone")), checker)
    assert (ok.kind, ok.detail) == ("ok", "1 events (1 removed, confirmed)")
    bad = classify(CASE, run(0, report("succeeded", "/etc/gone", "/etc/a.conf")), checker)
    assert (bad.kind, bad.removed) == ("VIOLATION", ["/etc/a.conf"])
    assert bad.detail == "succeeded with 1 removed that the checker does not confirm: /etc/a.conf"
    partial = classify(CASE, run(3, report("partial", "/usr/bin/ls")), checker)
    assert (partial.kind, partial.removed) == ("VIOLATION", ["/usr/bin/ls"])
