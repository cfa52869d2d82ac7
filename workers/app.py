"""The Celery application: ``celery -A workers.app worker -Q control,scan`` and
``celery -A workers.app beat`` (or ``snapfim worker`` / ``snapfim beat``).

Configuration comes from :class:`scanner.settings.Settings` (``SNAPFIM_*``), read when Celery
first needs it, not at import. Two queues: ``control`` (discovery, planning, snapshots, waits,
delivery of events and alerts, cleanup; cheap, any concurrency) and ``scan`` (reading disks;
run those workers with concurrency 1 and prefetch 1 so one scan owns a process).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Celery
from kombu import Queue

from scanner.settings import Settings


class LazyConfig:
    """Celery reads this object's attributes on first use; settings are built then."""

    def __init__(self) -> None:
        self._values: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._values is None:
            self._values = celery_config(Settings.from_env())
        return self._values

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._load()[name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    def __dir__(self) -> list[str]:
        return list(self._load())


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for snapfim: reliability first (see DESIGN.md §5)."""
    visibility = settings.scan_time_limit + 3600  # > the longest task, or Redis redelivers
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": visibility},
        "task_ignore_result": True,           # the database holds scan state, not Celery
        "task_acks_late": True,               # a task is acked when done, not when received
        "task_reject_on_worker_lost": True,   # a killed worker's task goes back to the queue
        "worker_prefetch_multiplier": 1,
        "task_default_queue": "control",
        "task_queues": (Queue("control"), Queue("scan")),
        "task_routes": {"workers.tasks.scan_machine": {"queue": "scan"}},
        "task_time_limit": settings.scan_time_limit,
        "task_soft_time_limit": settings.scan_time_limit - 60,
        "worker_max_tasks_per_child": 50,
        "include": ["workers.tasks"],
        "beat_schedule": {
            "plan": {"task": "workers.tasks.plan_cycle",
                     "schedule": timedelta(seconds=settings.plan_seconds)},
            "sweep": {"task": "workers.tasks.sweep_cycle", "schedule": timedelta(minutes=15)},
            "deliver": {"task": "workers.tasks.deliver",
                        "schedule": timedelta(seconds=settings.alerts.delivery_seconds)},
        },
        "timezone": "UTC",
    }


app = Celery("snapfim")
app.config_from_object(LazyConfig())
