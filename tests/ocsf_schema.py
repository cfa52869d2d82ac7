"""Validation of emitted OCSF 1.1.0 records against the schema, for the tests.

The core classes (File System Activity 1001, Scan Activity 6007) are validated by
pydantic-ocsf's models for OCSF 1.1.0. pydantic-ocsf has no model for the Windows extension
(``win``, uid 2), so Registry Key Activity (201001) and Registry Value Activity (201002) are
validated by models written here from the extension's schema files
(``extensions/windows/events/registry_key_activity.json``, ``registry_value_activity.json``,
``objects/registry_key.json``, ``objects/registry_value.json``): both classes extend
``system`` (validated by pydantic-ocsf's ``System`` model: ``actor``, ``device``, metadata,
severity), and add, ``reg_key.path``
is required, ``reg_value.name`` and ``reg_value.path`` are required, ``reg_value.type_id`` is
an enum. What pydantic-ocsf leaves unchecked (the classification attributes every event
requires, the ``at_least_one`` constraints of actor and process) is checked here too.
"""

from __future__ import annotations

import sys
from typing import Any

from ocsf.v1_1_0 import objects
from ocsf.v1_1_0.events import FileActivity, InventoryInfo, ScanActivity, System
from pydantic import BaseModel, ConfigDict

WIN_REG_TYPE_IDS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 99})
# class_uid -> (category_uid, allowed activity ids) from the schema
CLASSES: dict[int, tuple[int, frozenset[int]]] = {
    1001: (1, frozenset(range(0, 15)) | {99}),
    6007: (6, frozenset(range(0, 11)) | {99}),
    201001: (1, frozenset(range(0, 10)) | {99}),
    201002: (1, frozenset(range(0, 5)) | {99}),
    5001: (5, frozenset({0, 1, 2, 99})),
}


class RegKey(BaseModel):
    """The win extension's ``reg_key`` object."""

    model_config = ConfigDict(extra="forbid")
    path: str
    is_system: bool | None = None
    modified_time: int | None = None
    security_descriptor: str | None = None


class RegValue(BaseModel):
    """The win extension's ``reg_value`` object."""

    model_config = ConfigDict(extra="forbid")
    name: str
    path: str
    data: Any = None
    is_default: bool | None = None
    is_system: bool | None = None
    modified_time: int | None = None
    type: str | None = None
    type_id: int | None = None

    def model_post_init(self, __context: Any) -> None:
        if self.type_id is not None and self.type_id not in WIN_REG_TYPE_IDS:
            raise ValueError(f"reg_value.type_id {self.type_id} is not in the enum")


class RegistryKeyActivity(BaseModel):
    """The attributes win/registry_key_activity (201001) adds to ``system``."""

    reg_key: RegKey
    prev_reg_key: RegKey | None = None
    access_mask: int | None = None
    create_mask: str | None = None
    open_mask: str | None = None


class RegistryValueActivity(BaseModel):
    """The attributes win/registry_value_activity (201002) adds to ``system``."""

    reg_value: RegValue
    prev_reg_value: RegValue | None = None


# pydantic-ocsf builds its models on first use; System, used directly, needs its forward
# references resolved once the objects it names exist (the package's own rebuild step).
for _name in ("Enrichment", "Metadata", "Observable", "Object", "Actor", "Device"):
    getattr(objects, _name)
sys.modules["ocsf.v1_1_0"]._try_rebuild_model(System)

MODELS: dict[int, type[BaseModel]] = {
    1001: FileActivity, 6007: ScanActivity, 201001: RegistryKeyActivity,
    201002: RegistryValueActivity, 5001: InventoryInfo,
}


def validate_ocsf(record: dict[str, Any]) -> None:
    """Raise (AssertionError or pydantic's ValidationError) unless ``record`` is a valid
    OCSF 1.1.0 event of a class snapfim emits."""
    class_uid = record["class_uid"]
    assert class_uid in MODELS, f"class {class_uid} is not one snapfim emits"
    category_uid, activities = CLASSES[class_uid]
    for name in ("activity_id", "category_uid", "class_uid", "type_uid", "time", "severity_id"):
        assert isinstance(record.get(name), int), f"{name} is required (an integer)"
    assert record["category_uid"] == category_uid
    assert record["activity_id"] in activities
    assert record["type_uid"] == class_uid * 100 + record["activity_id"]
    assert record["metadata"]["version"] == "1.1.0"
    assert record["metadata"]["product"]["vendor_name"]
    if class_uid > 200_000:
        assert {"name": "win", "uid": "2", "version": "1.1.0"} in record["metadata"]["extensions"]
    if "actor" in record:          # required by 1001/2010xx: pydantic-ocsf checks presence
        actor = record["actor"]
        assert {"process", "user", "invoked_by", "session"} & actor.keys(), "actor: at least one"
        if "process" in actor:
            assert {"pid", "uid"} & actor["process"].keys(), "actor.process: pid or uid"
    if class_uid > 200_000:        # the extension's class: its base class, then its attributes
        System.model_validate(record)
    MODELS[class_uid].model_validate(record)
