"""Azurite over TLS behind the page-range diff front: the local blob server of the Azure tests.

Azurite is the npm package pinned in ``tests/azure/node/package.json`` (installed by
``scripts/setup.sh`` into ``tests/azure/node/node_modules``), started in memory on a free port
with the test CA's server certificate. :class:`AzureBlobs` adds the front
(:mod:`tests.azure.diffproxy`) and what tests and the fake Resource Manager need: page blobs
holding a disk as a fixed VHD, read SAS URLs (through the front), faults and counters.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, unquote_plus, urlsplit

from tests.azure.diffproxy import DiffFront, Fault
from tests.azure.tls import TestCa
from tests.imaging.vhd import vhd_footer

NODE_DIR = Path(__file__).resolve().parent / "node"
AZURITE_BIN = NODE_DIR / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented, not a secret)
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")
CONTAINER = "disks"
CHUNK = 4 << 20   # the most one Put Page may write
SUB = 512 << 10   # the granularity of written pages (an unwritten piece is not uploaded)
PAGE = 512


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _padded(chunks: Iterable[bytes], padded: int) -> Iterator[bytes]:
    """The chunks, then zeros up to ``padded`` bytes in all."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        yield chunk
    yield bytes(padded - total)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Azurite:
    """One ``azurite-blob`` process: in memory, TLS, on 127.0.0.1."""

    def __init__(self, ca: TestCa, workdir: Path) -> None:
        if not AZURITE_BIN.exists():
            raise RuntimeError(f"{AZURITE_BIN} is missing: run scripts/setup.sh (npm ci in "
                               f"{NODE_DIR})")
        self.ca = ca
        self.port = _free_port()
        self._log = (workdir / "azurite.log").open("wb")
        self._process = subprocess.Popen(
            [str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
             "--inMemoryPersistence", "--skipApiVersionCheck", "--disableProductStyleUrl",
             "--disableTelemetry",
             "--cert", str(ca.cert), "--key", str(ca.key)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=workdir)
        self._wait()

    def _wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        context = self.ca.client_context()
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"azurite exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw, \
                        context.wrap_socket(raw, server_hostname="127.0.0.1"):
                    return
            except (OSError, ssl.SSLError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"azurite did not listen on {self.port} within {timeout} s")

    @property
    def url(self) -> str:
        """The account URL straight at Azurite (no front)."""
        return f"https://127.0.0.1:{self.port}/{ACCOUNT}"

    def stop(self) -> None:
        """Terminate the process (killed if it lingers) and close its log."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._log.close()


class AzureBlobs:
    """Azurite + the diff front, and helpers to put disks there and hand out SAS URLs."""

    def __init__(self, ca: TestCa, workdir: str | os.PathLike[str]) -> None:
        from azure.storage.blob import BlobServiceClient

        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.ca = ca
        self.azurite = Azurite(ca, workdir)
        try:
            self.front = DiffFront(("127.0.0.1", self.azurite.port), ca).start()
            self.service = BlobServiceClient(
                self.azurite.url, credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY},
                connection_verify=str(ca.ca_bundle))
            self.service.create_container(CONTAINER)
        except BaseException:
            self.azurite.stop()
            raise

    # -- what the interface promises -----------------------------------------------------------
    @property
    def ca_bundle(self) -> Path:
        """The CA certificate clients must trust (REQUESTS_CA_BUNDLE)."""
        return self.ca.ca_bundle

    @property
    def account_url(self) -> str:
        """The account URL through the front (what SAS URLs point at)."""
        return f"https://127.0.0.1:{self.front.port}/{ACCOUNT}"

    def upload_disk(self, name: str, data: bytes | os.PathLike[str], lineage: str | None = None,
                    footer: bytes | None = None) -> str:
        """Store ``data`` (a disk's bytes, or an image file, read in chunks) as page blob
        ``name`` holding a fixed VHD (the bytes, zero-padded to 512, then a ``conectix``
        footer, or ``footer`` when given: b"" for none) and return a read SAS URL through the
        front. Blobs of one ``lineage`` (default: the name) can be diffed like snapshots of
        one managed disk."""
        if isinstance(data, bytes):
            size = len(data)
            chunks: Iterator[bytes] = (data[o:o + CHUNK] for o in range(0, size, CHUNK))
        else:
            size = Path(data).stat().st_size
            chunks = _file_chunks(Path(data))
        padded = size + -size % PAGE
        tail = vhd_footer(padded) if footer is None else footer
        self.put_page_blob(name, padded + len(tail), [*_padded(chunks, padded), tail])
        self.front.set_lineage(self.blob_path(name), lineage or name)
        return self.sas_url(name)

    def put_page_blob(self, name: str, size: int, chunks: Iterable[bytes]) -> None:
        """Blob ``name`` as a page blob of ``size`` bytes (a multiple of 512) written with
        ``chunks`` in order (each a multiple of 512 bytes but the last); only the 4 MiB
        pieces that hold data are written, so its page ranges are sparse like a disk's."""
        blob = self.service.get_blob_client(CONTAINER, name)
        if blob.exists():
            blob.delete_blob()
        blob.create_page_blob(size)
        offset = 0
        pending = b""
        for chunk in chunks:
            pending += chunk
            while len(pending) >= CHUNK:
                offset = self._put(blob, offset, pending[:CHUNK])
                pending = pending[CHUNK:]
        if pending:
            self._put(blob, offset, pending)

    @staticmethod
    def _put(blob: Any, offset: int, piece: bytes) -> int:
        """Write the runs of 512 KiB pieces of ``piece`` that hold data (a disk's unwritten
        blocks stay unwritten pages, as on a managed disk)."""
        run_start = -1
        for at in range(0, len(piece) + SUB, SUB):
            data = at < len(piece) and any(piece[at:at + SUB])
            if data and run_start < 0:
                run_start = at
            elif not data and run_start >= 0:
                blob.upload_page(piece[run_start:at], offset=offset + run_start,
                                 length=min(at, len(piece)) - run_start)
                run_start = -1
        return offset + len(piece)

    def rewrite_disk(self, name: str, image: os.PathLike[str]) -> None:
        """Write ``image`` over the disk in page blob ``name`` in place (its pieces that hold
        data), as a VM writes to its disk: the blob's snapshots keep what they had."""
        blob = self.service.get_blob_client(CONTAINER, name)
        offset = 0
        for chunk in _file_chunks(Path(image)):
            offset = self._put(blob, offset, chunk + bytes(-len(chunk) % PAGE))

    def snapshot(self, name: str) -> str:
        """Take a snapshot of blob ``name``; its timestamp (the ``snapshot`` parameter)."""
        return str(self.service.get_blob_client(CONTAINER, name).create_snapshot()["snapshot"])

    def snapshot_url(self, name: str, snapshot: str) -> str:
        """A read SAS URL of snapshot ``snapshot`` of blob ``name`` through the front."""
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        now = datetime.now(UTC)
        token = generate_blob_sas(ACCOUNT, CONTAINER, name, snapshot=snapshot,
                                  account_key=ACCOUNT_KEY,
                                  permission=BlobSasPermissions.from_string("r"),
                                  start=now - timedelta(minutes=5), expiry=now + timedelta(hours=2))
        return f"{self.account_url}/{CONTAINER}/{name}?snapshot={quote(snapshot)}&{token}"

    def put_block_blob(self, name: str, data: bytes) -> str:
        """Blob ``name`` as a block blob (any size); a read SAS URL through the front."""
        self.service.get_blob_client(CONTAINER, name).upload_blob(data, overwrite=True)
        return self.sas_url(name)

    def blob_path(self, name: str) -> str:
        """The request path of blob ``name``."""
        return f"/{ACCOUNT}/{CONTAINER}/{name}"

    def sas_url(self, name: str, expiry: timedelta = timedelta(hours=2),
                permission: str = "r") -> str:
        """A SAS URL of blob ``name`` through the front (``expiry`` from now; negative:
        already expired)."""
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        now = datetime.now(UTC)
        token = generate_blob_sas(ACCOUNT, CONTAINER, name, account_key=ACCOUNT_KEY,
                                  permission=BlobSasPermissions.from_string(permission),
                                  start=now - timedelta(minutes=5) if expiry.total_seconds() > 0
                                  else now - timedelta(hours=2), expiry=now + expiry)
        return f"{self.account_url}/{CONTAINER}/{name}?{token}"

    def read_blob(self, name: str) -> bytes:
        """The stored bytes of blob ``name`` (straight from Azurite)."""
        return bytes(self.service.get_blob_client(CONTAINER, name).download_blob().readall())

    def delete(self, name: str) -> None:
        """Delete blob ``name`` if it exists."""
        blob = self.service.get_blob_client(CONTAINER, name)
        if blob.exists():
            blob.delete_blob()

    @staticmethod
    def unique(prefix: str = "disk") -> str:
        """A blob name no other test uses."""
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    # -- faults and counters ---------------------------------------------------------------------
    def inject(self, fault: Fault) -> Fault:
        """Arm a fault on the front."""
        return self.front.inject(fault)

    @property
    def state(self) -> Any:
        """The front's counters and settings (:class:`tests.azure.diffproxy.FrontState`)."""
        return self.front.state

    def environment(self) -> dict[str, str]:
        """The variables that make snapfim (requests, azure-core) trust the test CA."""
        return self.ca.environment()

    def stop(self) -> None:
        """Stop the front, the SDK client and Azurite."""
        self.front.stop()
        self.service.close()
        self.azurite.stop()


def signature_forms(url: str) -> list[str]:
    """The SAS signature of ``url`` (decoded), with and without its ``=`` padding; [] when
    ``url`` has none. Each is at least 20 characters (a signature has 43 or 44)."""
    values = [v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)
              if k.lower() == "sig"]
    forms = {form for value in values for form in (value, value.rstrip("="))}
    assert all(len(form) >= 20 for form in forms), "a signature too short to look for"
    return sorted(forms)


def assert_no_signature(text: str, *urls: str) -> None:
    """Neither signature of ``urls`` appears in ``text``: as is, URL-encoded (once or twice,
    either case of hex digits) or form-encoded."""
    variants = (text, unquote(text), unquote(unquote(text)), unquote_plus(text))
    for url in urls:
        forms = signature_forms(url)
        assert forms, f"{url.split('?')[0]} has no signature to look for"
        leaked = [form for form in forms if any(form in v for v in variants)]
        assert leaked == [], "the SAS signature leaked"
