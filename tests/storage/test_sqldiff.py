"""The set-based SQL diff gives exactly what the in-memory reference diff gives."""

from __future__ import annotations

import random
from dataclasses import replace

from scanner.diff import diff_files
from scanner.entities import (
    FileEntity,
    RegistryEntity,
    RegistryKeyEntity,
    RegistryValueEntity,
    split_value_id,
    value_id,
)
from scanner.storage.repository import Repository
from scanner.storage.sqldiff import REGISTRY_STATE, diff_into_state

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
    return ([(e.category, e.path, e.value_name, e.fields_changed, e.previous, e.current,
              e.policies)
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


# -- registry keys and values: the same rules through REGISTRY_STATE ----------------------
RUN = "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run"
OID = "HKLM\\SOFTWARE\\Microsoft\\Cryptography\\OID\\EncodingType 0"
KEYS = [RUN, f"{OID}\\A", f"{OID}\\B", f"{OID}\\A\\{{C689}}"]
VALUES = [(RUN, "OneDrive"), (RUN, ""), (RUN, "Updater"), (f"{OID}\\A", "Dll"),
          (f"{OID}\\A\\{{C689}}", "FuncName")]
REG_POLICY_SETS = [(RUN,), ("HKLM\\SOFTWARE\\Microsoft\\Cryptography\\OID\\*",)]


def random_registry(rng: random.Random, entity_id: str) -> RegistryEntity:
    policies = rng.choice(REG_POLICY_SETS)
    split = split_value_id(entity_id)
    if split is None:
        return RegistryKeyEntity(entity_id, rng.choice([10**17, 2 * 10**17]),
                                 rng.choice([None, "O:SYG:SYD:(A;;KA;;;SY)", "O:BAG:SYD:"]),
                                 rng.randint(0, 3), rng.randint(0, 3), policies)
    key, name = split
    kind = rng.choice(["REG_SZ", "REG_EXPAND_SZ", "REG_DWORD"])
    data = rng.choice(["C:\\a.exe", "%TEMP%\\x.exe", "1"])
    return RegistryValueEntity(key, name, kind, len(data) * 2, rng.choice(["aa", "bb"]) * 32,
                               data, policies)


def test_sql_diff_matches_the_reference_diff_for_the_registry(repository: Repository) -> None:
    rng = random.Random(4)
    ids = KEYS + [value_id(k, n) for k, n in VALUES]
    with repository.transaction() as conn:
        machine_id = repository.machine_id(conn, "w", create=True)
    seen: set[tuple[str, bool]] = set()  # (category, value?) met over the rounds
    for round_ in range(25):
        before = {i: random_registry(rng, i) for i in rng.sample(ids, rng.randint(0, len(ids)))}
        after: dict[str, RegistryEntity] = {}
        for entity_id in ids:
            if entity_id in before and rng.random() < 0.8:
                after[entity_id] = (random_registry(rng, entity_id) if rng.random() < 0.4
                                    else before[entity_id])
            elif entity_id not in before and rng.random() < 0.3:
                after[entity_id] = random_registry(rng, entity_id)
        prev_policies = rng.choice([[RUN, REG_POLICY_SETS[1][0]], [RUN]])
        cur_policies = rng.choice([[RUN, REG_POLICY_SETS[1][0]], [REG_POLICY_SETS[1][0]]])
        unreadable = rng.choice([[], [f"{OID}\\A"], ["HKLM\\SOFTWARE"]])
        expected = diff_files(before, after, previous_policies=prev_policies,
                              current_policies=cur_policies, unreadable=unreadable)
        with repository.transaction() as conn:
            diff_into_state(conn, machine_id, round_, before.values(), previous_policies=None,
                            current_policies=prev_policies, spec=REGISTRY_STATE)
            got, staged = diff_into_state(conn, machine_id, round_, after.values(),
                                          previous_policies=prev_policies,
                                          current_policies=cur_policies, unreadable=unreadable,
                                          spec=REGISTRY_STATE)
            state = repository.load_registry_state(conn, machine_id)
        assert staged == len(after)
        assert comparable(got) == comparable(expected), f"round {round_}"
        assert all(e.entity_type == "registry" for e in got.events)
        seen.update((e.category, e.value_name is not None) for e in got.events)
        assert {(e.path, e.value_name) for e in got.events} <= {
            (split_value_id(i) or (i, None)) for i in ids}
        kept = {i: e for i, e in before.items() if i not in after and i not in expected.deletes}
        assert state == {**kept, **after}, f"round {round_}"
    assert seen == {(c, v) for c in ("added", "removed", "modified") for v in (False, True)}
