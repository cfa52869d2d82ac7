"""A hash worker forked while another thread of the scan holds a module lock of the AWS code
(the rate limiter's, taken for every block by the cache's fetch threads; the session
cache's, held while a role is assumed) must not inherit it locked."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from scanner.cloud.aws import ratelimit, session
from scanner.cloud.aws.session import AwsAccount


def use_limiter() -> None:
    ratelimit.limiter("123456789012", "eu-west-1", "get").acquire()


def use_session() -> None:
    session.session_for(AwsAccount("123456789012"))


@pytest.mark.parametrize(("module", "use"), [(ratelimit, use_limiter),
                                            (session, use_session)])
def test_a_child_forked_while_the_lock_is_held_gets_its_own(
        module: Any, use: Callable[[], None], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    use()  # the reset is registered on first use
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with module._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the lock was held at the fork by a thread it does not have
            code = 1
            try:
                use()
                code = 0
            finally:
                os._exit(code)
        for _ in range(100):  # 10 s at most
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            release.wait(0.1)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child hung on the inherited lock")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        holder.join()
