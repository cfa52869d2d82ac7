"""The set-based SQL diff gives exactly what the in-memory reference diff gives."""

from __future__ import annotations

import random
from dataclasses import replace

from scanner.diff import diff_files
from scanner.entities import FileEntity
from scanner.storage.repository import Repository
from scanner.storage.sqldiff import diff_into_state

PATHS = [f"/etc/f{i}.conf" for i in range(12)] + [f"/usr/bin/b{i}" for i in range(12)]
POLICY_SETS = [("/etc/*.conf",), ("/usr/bin",), ("/bin", "/usr/bin")]


def random_entity(rng: random.Random, path: str) -> FileEntity:
    return FileEntity(
        path=path, type=rng.choice(["file", "file", "symlink", "directory"]),
        size=rng.choice([0, 3, 4096]), mode=rng.choice([0o644, 0o755, 0o4755]),
        uid=rng.choice([0, 1000]), gid=0, mtime=rng.choice([None, 10**18, 2 * 10**18]),
        ctime=10**18, crtime=None, atime=rng.choice([1, 2]), inode=rng.randint(11, 14),
        nlink=rng.choice([1, 2]), link_target=rng.choice([None, "x"]),
        sha256=rng.choice([None, "aa" * 32, "bb" * 32]), acl=rng.choice([None, "user::rw-"]),
        capability=rng.choice([None, "cap_net_raw=ep"]),
        xattrs=rng.choice([{}, {"user.a": "1"}, {"user.a": "2", "user.b": "0x00"}]),
        policies=rng.choice(POLICY_SETS))


def mutate(rng: random.Random, entity: FileEntity) -> FileEntity:
    other = random_entity(rng, entity.path)
    fields = rng.sample(["size", "mode", "sha256", "xattrs", "atime", "policies", "type"],
                        rng.randint(1, 3))
    return replace(entity, **{f: getattr(other, f) for f in fields})


def comparable(diff):  # type: ignore[no-untyped-def]
    return ([(e.category, e.path, e.fields_changed, e.previous, e.current, e.policies)
             for e in diff.events], sorted(diff.deletes), diff.kept_unreadable,
            diff.quiet_added, diff.quiet_dropped)


def test_sql_diff_matches_the_reference_diff(repository: Repository) -> None:
    rng = random.Random(20261121)
    with repository.transaction() as conn:
        machine_id = repository.machine_id(conn, "m", create=True)
    for round_ in range(25):
        before = {p: random_entity(rng, p) for p in rng.sample(PATHS, rng.randint(0, 20))}
        after: dict[str, FileEntity] = {}
        for path in PATHS:
            if path in before and rng.random() < 0.8:
                after[path] = mutate(rng, before[path]) if rng.random() < 0.4 else before[path]
            elif path not in before and rng.random() < 0.3:
                after[path] = random_entity(rng, path)
        prev_policies = rng.choice([["/etc/*.conf", "/usr/bin", "/bin"], ["/usr/bin"]])
        cur_policies = rng.choice([["/etc/*.conf", "/usr/bin", "/bin"], ["/etc/*.conf"]])
        unreadable = rng.choice([[], ["/usr/bin"], ["/etc/f1.conf"]])
        expected = diff_files(before, after, previous_policies=prev_policies,
                              current_policies=cur_policies, unreadable=unreadable)
        with repository.transaction() as conn:
            diff_into_state(conn, machine_id, round_, before.values(), previous_policies=None,
                            current_policies=prev_policies)
            got, staged = diff_into_state(conn, machine_id, round_, after.values(),
                                          previous_policies=prev_policies,
                                          current_policies=cur_policies, unreadable=unreadable)
            state = repository.load_file_state(conn, machine_id)
        assert staged == len(after)
        assert comparable(got) == comparable(expected), f"round {round_}"
        kept = {p: e for p, e in before.items() if p not in after and p not in expected.deletes}
        assert state == {**kept, **after}, f"round {round_}"
