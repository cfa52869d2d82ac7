"""Module state that a forked hash worker must not inherit as it was: a lock another thread
of the parent held at the fork stays locked in the child forever (only the forking thread
goes on there). Modules register a reset, once, on first use (never at import)."""

from __future__ import annotations

import os
from collections.abc import Callable

_registered: set[Callable[[], None]] = set()


def reset_in_child(reset: Callable[[], None]) -> None:
    """Run ``reset`` in every process forked from now on (registered once per function)."""
    if reset not in _registered:
        _registered.add(reset)
        os.register_at_fork(after_in_child=reset)
