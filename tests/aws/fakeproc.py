"""The local AWS of :mod:`tests.aws.fakeaws` in a process of its own, for benchmarks.

A benchmark must measure the client: a Python HTTP server in the client's process shares its
GIL and its CPU seconds. :class:`FakeAwsProcess` starts :class:`~tests.aws.fakeaws.FakeAws`
in a process of its own (moto and the EBS front, serving file-backed blocks with
``os.sendfile``: the server verifies tokens and counts every call, but copies no block
through Python) and drives its :class:`~tests.aws.fakeaws.EbsStore` through a pipe. Its CPU
seconds are read from ``/proc`` so a benchmark can report them apart from the client's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any


def _serve(fd: int) -> None:
    """The server process: start the local AWS, send its URL, then run store calls."""
    from tests.aws.fakeaws import FakeAws

    conn = Connection(fd)
    server = FakeAws().start()
    conn.send(server.url)
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            if message is None:
                conn.send(None)
                return
            name, args = message
            try:
                conn.send(("ok", getattr(server.store, name)(*args)))
            except Exception as exc:  # handed to the caller, raised there
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        server.stop()


class FakeAwsProcess:
    """:class:`~tests.aws.fakeaws.FakeAws` in its own process; ``call`` runs a method of
    its store there (arguments and results must pickle)."""

    def __init__(self) -> None:
        self._proc: Any = None
        self._conn: Any = None
        self.url = ""

    def start(self) -> FakeAwsProcess:
        """Start the process and wait for the server's URL."""
        mine, theirs = socket.socketpair()
        fd = theirs.fileno()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", f"from tests.aws.fakeproc import _serve; _serve({fd})"],
            pass_fds=[fd], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        theirs.close()
        self._conn = Connection(mine.detach())
        if not self._conn.poll(120):
            self.stop()
            raise RuntimeError("the local AWS process did not start")
        self.url = str(self._conn.recv())
        return self

    def call(self, name: str, *args: Any) -> Any:
        """``store.name(*args)`` in the server process."""
        self._conn.send((name, args))
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"local AWS: {value}")
        return value

    @property
    def pid(self) -> int:
        """The server process's id."""
        return int(self._proc.pid)

    def environment(self) -> dict[str, str]:
        """The variables that point boto3 (and so snapfim) at this server."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": "eu-west-1"}

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server process (all its threads) so far."""
        with open(f"/proc/{self._proc.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """Stop the server and its process."""
        if self._proc is None:
            return
        try:
            self._conn.send(None)
            if self._conn.poll(30):
                self._conn.recv()
        except (OSError, EOFError):
            pass
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._conn.close()
        self._proc = None
