"""Minimal stand-ins for pytsk3 attribute objects, for tests that drive NtfsMeta without an
image (read errors, attribute layouts that libntfs-3g cannot produce)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeAttrInfo:
    """The ``info`` of a pytsk3 attribute: type, name, size and id."""

    type: int
    name: bytes | None
    size: int
    id: int


@dataclass
class FakeAttr:
    """A pytsk3 attribute as NtfsMeta iterates it."""

    info: FakeAttrInfo
