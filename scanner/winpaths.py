"""Windows paths of one scanned system drive (pure, no I/O).

The walker works in posix paths inside the volume (``/Windows/explorer.exe``); entities and
events name Windows files the way Windows does (``C:\\Windows\\explorer.exe``). Policy paths
may start with a drive letter or a ``%variable%`` (``%windir%\\system.ini``); variables come
from the detected Windows directory (:func:`system_variables`) and are matched
case-insensitively, like drive letters and path segments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from scanner.errors import PolicyError
from scanner.policy import WILDCARDS, EntityKind, PolicyEntity

__all__ = ["drive_of", "expand", "fixed_prefix", "system_variables", "to_posix", "to_windows",
           "walk_entity"]

_VARIABLE = re.compile(r"%([A-Za-z_][A-Za-z0-9_()]*)%")
_DRIVE = re.compile(r"([A-Za-z]:)(?:\\(.*))?\Z", re.DOTALL)


def to_windows(posix_path: str, drive: str = "C:") -> str:
    """``/Windows/explorer.exe`` -> ``C:\\Windows\\explorer.exe``; ``/`` -> ``C:\\``."""
    segments = [s for s in posix_path.split("/") if s]
    return drive + "\\" + "\\".join(segments)


def to_posix(windows_path: str, drive: str = "C:") -> str | None:
    """``C:\\Windows\\*.exe`` -> ``/Windows/*.exe`` when the path is on ``drive`` (letters
    compared case-insensitively; ``/`` accepted as a separator); None on another drive or
    without a drive letter."""
    match = _DRIVE.match(windows_path.replace("/", "\\"))
    if match is None or match.group(1).casefold() != drive.casefold():
        return None
    segments = [s for s in (match.group(2) or "").split("\\") if s]
    return "/" + "/".join(segments)


def system_variables(windows_dir: str, drive: str = "C:") -> dict[str, str]:
    """The machine-wide environment variables of a Windows installation (Vista and later
    layout) whose Windows directory is ``windows_dir`` (posix, on-disk spelling such as
    ``/Windows`` or ``/WINNT``). Keys are lower-case, values Windows paths."""
    root = drive + "\\"
    windir = to_windows(windows_dir, drive)
    program_files = root + "Program Files"
    program_files_x86 = root + "Program Files (x86)"
    program_data = root + "ProgramData"
    return {
        "windir": windir,
        "systemroot": windir,
        "systemdrive": drive,
        "programfiles": program_files,
        "programfiles(x86)": program_files_x86,
        "programw6432": program_files,
        "programdata": program_data,
        "allusersprofile": program_data,
        "public": root + "Users\\Public",
        "commonprogramfiles": program_files + "\\Common Files",
        "commonprogramfiles(x86)": program_files_x86 + "\\Common Files",
        "commonprogramw6432": program_files + "\\Common Files",
    }


def expand(path: str, variables: Mapping[str, str]) -> str:
    """Replace every ``%name%`` with its value, names compared case-insensitively. An unknown
    variable raises :class:`PolicyError` naming it; a lone ``%`` stays as it is."""
    folded = {k.casefold(): v for k, v in variables.items()}

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = folded.get(name.casefold())
        if found is None:
            raise PolicyError(f"unknown variable %{name}% in {path}")
        return found

    return _VARIABLE.sub(value, path)


def drive_of(entity: PolicyEntity, variables: Mapping[str, str]) -> tuple[str, str]:
    """The drive letter (upper case, ``"D:"``) of a Windows file entity's path and that path
    with its variables expanded (its letter in upper case). Raises :class:`PolicyError` for
    an unknown variable or a path that does not start with a drive once expanded."""
    path = expand(entity.path, variables).replace("/", "\\")
    match = _DRIVE.match(path)
    if match is None:
        raise PolicyError(f"{path}: no drive letter")
    letter = match.group(1).upper()
    return letter, letter + path[2:]


def fixed_prefix(windows_path: str) -> str:
    """The part of a Windows path that names one place: the path above a last segment with a
    wildcard (``D:\\app\\*.ini`` -> ``D:\\app``), else the whole path (trailing
    separators dropped; ``D:\\`` -> ``D:``)."""
    head, _, last = windows_path.rstrip("\\").rpartition("\\")
    if head and any(ch in WILDCARDS for ch in last):
        return head
    return windows_path.rstrip("\\")


def walk_entity(entity: PolicyEntity, variables: Mapping[str, str],
                drive: str = "C:") -> PolicyEntity | str:
    """A Windows file entity translated for the walker: the same entity with ``path`` and
    ``excludes`` expanded and made posix paths on the system drive ``drive``, or a one-line
    reason when it cannot apply to this disk (another drive, an unknown variable). Excludes
    on another drive are dropped (they exclude nothing here). The kind stays
    ``WINDOWS_FILE``, so the walker matches names case-insensitively.
    Raises ValueError for an entity of another kind."""
    if entity.kind is not EntityKind.WINDOWS_FILE:
        raise ValueError(f"{entity.name}: not a Windows file entity ({entity.kind})")
    try:
        path = expand(entity.path, variables)
        excludes = [expand(e, variables) for e in entity.excludes]
    except PolicyError as exc:
        return str(exc)
    posix = to_posix(path, drive)
    if posix is None:
        return f"{path} is not on the system drive {drive}"
    posix_excludes = tuple(p for p in (to_posix(e, drive) for e in excludes) if p is not None)
    return replace(entity, path=posix, excludes=posix_excludes)
