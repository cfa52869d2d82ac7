"""A hash worker forked while another thread of the scan holds the rate limiter's lock (the
cache's fetch threads take it for every block) must not inherit it locked."""

from __future__ import annotations

import os
import threading

from scanner.cloud.aws import ratelimit


def test_a_child_forked_while_the_lock_is_held_gets_its_own() -> None:
    ratelimit.limiter("123456789012", "eu-west-1", "get").acquire()  # the fork hook is set
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with ratelimit._lock:
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
                ratelimit.limiter("123456789012", "eu-west-1", "get").acquire()
                code = 0
            finally:
                os._exit(code)
        deadline = threading.Event()
        for _ in range(100):  # 10 s at most
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            deadline.wait(0.1)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child hung on the inherited lock")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        holder.join()
