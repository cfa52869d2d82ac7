"""One hive file per registry mount: a profile folder named like a machine hive's mount
(``C:\\Users\\.DEFAULT``) does not stand in for that hive. Its NTUSER.DAT is not read (a
coverage note says so) and the DEFAULT hive is read and diffed as always, so a change to it
is reported exactly (found in review: a rescan that skips unchanged hives by their mount's
digest would otherwise flip between the two files)."""

from __future__ import annotations

from pathlib import Path

from scanner.registry.hive import REG_SZ
from scanner.storage.repository import Repository
from tests.disk.test_windows_registry_unreadable import coverage_of, events, scan_image
from tests.imaging.hives import sz
from tests.imaging.ntfs import Dir, File
from tests.imaging.windows import (
    BOB_SID,
    DEFAULT,
    RUN,
    T_USER,
    _user_hive,
    base_layout,
    build_windows_image,
    sd_user_dir,
    sd_user_file,
)


def test_a_profile_folder_named_like_the_default_hive_does_not_replace_it(
        repo: Repository, tmp_path: Path) -> None:
    first = scan_image(repo, build_windows_image(tmp_path / "base.img", base_layout()))
    assert first.baseline and first.status == "succeeded"
    layout = base_layout()
    fake = "Users/.DEFAULT/NTUSER.DAT"
    layout.files["Users/.DEFAULT"] = Dir(times=T_USER, security=sd_user_dir(BOB_SID))
    layout.files[fake] = File(times=T_USER, security=sd_user_file(BOB_SID))
    layout.hives[fake] = _user_hive(".DEFAULT", "Evil", "C:\\evil.exe")
    layout.hives[DEFAULT].key("Software\\" + RUN).value("Updater", REG_SZ,
                                                        sz("C:\\updater.exe"))
    record = scan_image(repo, build_windows_image(tmp_path / "changed.img", layout))
    registry = [e for e in events(record) if e[0] != "file"]
    assert registry == [("registry", "added", f"HKU\\.DEFAULT\\Software\\{RUN}",
                         "Updater", ())]
    assert "C:\\Users\\.DEFAULT\\NTUSER.DAT not read: HKU\\.DEFAULT is another hive's " \
           "mount" in coverage_of(repo, record)["notes"]
