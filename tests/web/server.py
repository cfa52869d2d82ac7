"""`snapfim serve` run for real in a child process, on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(database_url: str, data_dir: Path, *, token: str | None = None,
            host: str = "127.0.0.1") -> Iterator[str]:
    """Run ``snapfim serve`` over ``database_url`` until the block ends; yields its base URL
    once it answers."""
    port = free_port()
    env = {**os.environ, "SNAPFIM_DATABASE_URL": database_url,
           "SNAPFIM_DATA_DIR": str(data_dir)}
    env.pop("SNAPFIM_WEB_TOKEN_FILE", None)
    env.pop("SNAPFIM_WEB_TOKEN", None)
    if token is not None:
        env["SNAPFIM_WEB_TOKEN"] = token
    proc = subprocess.Popen([sys.executable, "-m", "scanner", "serve", "--host", host,
                             "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()}")
            try:
                urllib.request.urlopen(base + "/static/style.css", timeout=2)
                break
            except urllib.error.HTTPError:
                break                      # it answers (401 with a token)
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("serve did not answer within 30 s") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
