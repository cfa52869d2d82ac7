"""A local AWS for tests and benchmarks: moto's ThreadedMotoServer behind a small front.

moto serves EC2 and STS well but its ``ebs`` API falls short (FACTS.md: BlockSize 512,
no checksums or block tokens checked, unwritten block -> HTTP 500, no pagination, wrong
ListChangedBlocks, EC2 snapshots not readable). The front (:class:`FakeAws`) listens on its own
127.0.0.1 port and

- serves the EBS direct APIs itself (ListSnapshotBlocks, ListChangedBlocks, GetSnapshotBlock)
  over volume bytes the test seeds (:meth:`EbsStore.seed_volume`): 512 KiB blocks, SHA-256
  checksums, expiring block tokens, paginated listings (with an empty first page, as AWS may
  send), 4xx for unknown snapshots and blocks, and lineage (changed blocks only between
  snapshots of one volume);
- passes every other request to moto, recording the volumes' bytes when an EC2
  CreateSnapshot(s) reply names new snapshots (so a snapshot is the volume at that moment);
- injects faults on request (:class:`Fault`): an error code for an operation (throttling,
  AccessDenied), a corrupt block body, latency per GetSnapshotBlock.

snapfim is pointed at it through boto3's standard configuration only (``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from moto.server import ThreadedMotoServer

BLOCK = 512 * 1024
GIB = 1 << 30
_ZERO = bytes(BLOCK)


@dataclass(frozen=True, slots=True)
class BlockRef:
    """One written block: its bytes, or where in a file they lie; and its SHA-256."""

    digest: bytes
    data: bytes | None = None
    path: str | None = None
    offset: int = 0

    def read(self) -> bytes:
        """The block's bytes."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            return handle.read(BLOCK).ljust(BLOCK, b"\0")


@dataclass(slots=True)
class Volume:
    """A volume's written blocks (index -> block) and size in GiB."""

    size_gib: int
    blocks: dict[int, BlockRef] = field(default_factory=dict)


@dataclass(slots=True)
class Snap:
    """A snapshot: the volume's blocks when it was taken."""

    volume_id: str
    size_gib: int
    blocks: dict[int, BlockRef]


def blocks_of(path: str | os.PathLike[str], in_memory: bool = True) -> dict[int, BlockRef]:
    """The non-zero 512 KiB blocks of an image file."""
    out: dict[int, BlockRef] = {}
    with open(path, "rb") as handle:
        index = 0
        while chunk := handle.read(BLOCK):
            chunk = chunk.ljust(BLOCK, b"\0")
            if chunk != _ZERO:
                digest = hashlib.sha256(chunk).digest()
                out[index] = (BlockRef(digest, data=chunk) if in_memory
                              else BlockRef(digest, path=str(path), offset=index * BLOCK))
            index += 1
    return out


@dataclass(slots=True)
class Fault:
    """Make ``count`` requests of ``operation`` (an EBS operation name, or an EC2/STS
    ``Action``) whose path or body contains ``match`` fail with ``code`` (HTTP ``status``),
    or, with ``corrupt``, serve a block whose bytes do not match its checksum."""

    operation: str
    code: str = ""
    status: int = 400
    count: int = 1
    match: str = ""
    corrupt: bool = False
    message: str = "injected fault"


class EbsStore:
    """Volumes seeded by the test and the snapshots taken of them; counters of calls."""

    def __init__(self, token_lifetime: float = 7 * 24 * 3600.0, page_size: int = 10000) -> None:
        self.reset(token_lifetime, page_size)

    def reset(self, token_lifetime: float = 7 * 24 * 3600.0, page_size: int = 10000) -> None:
        """Forget everything (between tests)."""
        self.volumes: dict[str, Volume] = {}
        self.snapshots: dict[str, Snap] = {}
        self.faults: list[Fault] = []
        self.calls: dict[str, int] = {}
        self.block_gets: dict[str, int] = {}
        self.block_log: list[tuple[str, int]] = []
        self.token_lifetime = token_lifetime
        self.page_size = page_size
        self.block_latency = 0.0
        self.expiry_skew = 0.0  # announced ExpiryTime minus the real one (a skewed clock)
        # DescribeSnapshots lags: snapshots made less than this many seconds ago are not
        # listed yet (EC2's eventual consistency)
        self.describe_lag = 0.0
        self.made_at: dict[str, float] = {}
        self.lock = threading.Lock()
        self.inflight = 0
        self.inflight_seconds = 0.0
        self.inflight_stamp = time.monotonic()

    # -- test side ---------------------------------------------------------------------------
    def seed_volume(self, volume_id: str, image: str | os.PathLike[str], size_gib: int = 1,
                    in_memory: bool = True) -> None:
        """The volume's bytes are now the image's (zeros past it)."""
        blocks = blocks_of(image, in_memory)
        with self.lock:
            self.volumes[volume_id] = Volume(size_gib, blocks)

    def add_snapshot(self, snapshot_id: str, volume_id: str, size_gib: int = 1) -> None:
        """Record a snapshot of a volume as it is now (zeros if it was never seeded)."""
        with self.lock:
            volume = self.volumes.get(volume_id, Volume(size_gib))
            self.snapshots[snapshot_id] = Snap(volume_id, volume.size_gib, dict(volume.blocks))
            self.made_at[snapshot_id] = time.monotonic()

    def written(self, snapshot_id: str) -> int:
        """How many blocks the snapshot has written."""
        with self.lock:
            return len(self.snapshots[snapshot_id].blocks)

    def changed_written(self, first: str, second: str) -> int:
        """How many blocks ListChangedBlocks names with a SecondBlockToken (changed, and
        written in ``second``): what an incremental read of ``second`` must fetch."""
        with self.lock:
            one, two = self.snapshots[first].blocks, self.snapshots[second].blocks
            return sum(1 for i, ref in two.items()
                       if (old := one.get(i)) is None or old.digest != ref.digest)

    def gauge(self, step: int) -> None:
        """One GetSnapshotBlock starts (+1) or ends (-1): integrates the calls in flight."""
        with self.lock:
            now = time.monotonic()
            self.inflight_seconds += self.inflight * (now - self.inflight_stamp)
            self.inflight_stamp = now
            self.inflight += step

    def in_flight(self) -> float:
        """Seconds x GetSnapshotBlock calls in flight, integrated so far (the average
        number in flight over an interval is its growth divided by the interval)."""
        self.gauge(0)
        with self.lock:
            return self.inflight_seconds

    def counts(self) -> dict[str, int]:
        """GetSnapshotBlock calls served, per snapshot."""
        with self.lock:
            return dict(self.block_gets)

    def set_latency(self, seconds: float) -> None:
        """Seconds added to every GetSnapshotBlock from now on."""
        self.block_latency = seconds

    def lagging(self, snapshot_id: str) -> bool:
        """Whether DescribeSnapshots does not list this snapshot yet."""
        with self.lock:
            made = self.made_at.get(snapshot_id)
            return made is not None and time.monotonic() - made < self.describe_lag

    def inject(self, fault: Fault) -> None:
        """Arm a fault."""
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, operation: str, text: str) -> Fault | None:
        """The first armed fault matching this request (consumed)."""
        with self.lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            for fault in self.faults:
                if fault.operation == operation and fault.match in text and fault.count > 0:
                    fault.count -= 1
                    return fault
        return None

    # -- tokens --------------------------------------------------------------------------------
    def token(self, snapshot_id: str, index: int, expiry: float) -> str:
        """An opaque block token that names its block and expiry."""
        raw = json.dumps([snapshot_id, index, expiry]).encode()
        return base64.urlsafe_b64encode(raw).decode()

    def check_token(self, snapshot_id: str, index: int, token: str) -> str | None:
        """Why a token is not good for this block (None when it is)."""
        try:
            snap, idx, expiry = json.loads(base64.urlsafe_b64decode(token.encode()))
        except (ValueError, TypeError):
            return "The block token is not valid"
        if snap != snapshot_id or idx != index:
            return "The block token is not valid for this block"
        if time.time() > expiry:
            return "The block token has expired"
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FrontServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _service(self) -> str:
        auth = self.headers.get("Authorization", "")
        found = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", auth)
        return found.group(1) if found else ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        body = self._body()
        if self._service() == "ebs":
            self._ebs(method)
        else:
            self._proxy(method, body)

    # -- EBS direct APIs -----------------------------------------------------------------------
    def _ebs_error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"message": message, "Message": message}).encode()
        self._send(status, body, {"x-amzn-ErrorType": code,
                                  "Content-Type": "application/json"})

    def _ebs(self, method: str) -> None:
        store = self.server.store
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        if method != "GET" or len(parts) < 3 or parts[0] != "snapshots":
            self._ebs_error(400, "ValidationException", f"unsupported {method} {url.path}")
            return
        if len(parts) == 4 and parts[2] == "blocks":
            operation = "GetSnapshotBlock"
        elif parts[2] == "blocks":
            operation = "ListSnapshotBlocks"
        elif parts[2] == "changedblocks":
            operation = "ListChangedBlocks"
        else:
            self._ebs_error(400, "ValidationException", f"unsupported path {url.path}")
            return
        fault = store.take_fault(operation, self.path)
        if fault is not None and not fault.corrupt:
            self._ebs_error(fault.status, fault.code, fault.message)
            return
        snapshot_id = parts[1]
        snap = store.snapshots.get(snapshot_id)
        if snap is None:
            self._ebs_error(404, "ResourceNotFoundException",
                            f"The snapshot '{snapshot_id}' does not exist.")
            return
        if operation == "GetSnapshotBlock":
            self._get_block(snapshot_id, snap, parts[3], query, fault)
        elif operation == "ListSnapshotBlocks":
            self._list(snapshot_id, snap, query, None)
        else:
            first = store.snapshots.get(query.get("firstSnapshotId", ""))
            if first is None:
                self._ebs_error(404, "ResourceNotFoundException",
                                f"The snapshot '{query.get('firstSnapshotId')}' does not exist.")
                return
            if first.volume_id != snap.volume_id:
                self._ebs_error(400, "ValidationException",
                                "The snapshots are not of the same lineage")
                return
            self._list(snapshot_id, snap, query, (query["firstSnapshotId"], first))

    def _list(self, snapshot_id: str, snap: Snap, query: dict[str, str],
              first: tuple[str, Snap] | None) -> None:
        store = self.server.store
        try:
            limit = int(query.get("maxResults", str(store.page_size)))
            start = int(query.get("startingBlockIndex", "0"))
        except ValueError:
            self._ebs_error(400, "ValidationException", "bad maxResults or startingBlockIndex")
            return
        if not 100 <= limit <= 10000:
            self._ebs_error(400, "ValidationException", "maxResults must be 100 to 10000")
            return
        limit = min(limit, store.page_size)
        token = query.get("pageToken")
        expiry = time.time() + store.token_lifetime
        if first is None:
            indices = sorted(snap.blocks)
        else:
            other = first[1].blocks
            indices = sorted(i for i in set(snap.blocks) | set(other)
                             if (a := snap.blocks.get(i)) is None or (b := other.get(i)) is None
                             or a.digest != b.digest)
        if token is None:  # AWS may answer with an empty page and a NextToken
            page: list[int] = []
            next_at: int | None = start
        else:
            begin = int(json.loads(base64.urlsafe_b64decode(token.encode()))["at"])
            rest = [i for i in indices if i >= begin]
            page = rest[:limit]
            next_at = rest[limit] if len(rest) > limit else None
        out: dict[str, Any] = {"ExpiryTime": expiry + store.expiry_skew,
                               "VolumeSize": snap.size_gib,
                               "BlockSize": BLOCK}
        if first is None:
            out["Blocks"] = [{"BlockIndex": i, "BlockToken": store.token(snapshot_id, i, expiry)}
                             for i in page]
        else:
            first_id, first_snap = first
            out["ChangedBlocks"] = [
                {"BlockIndex": i,
                 **({"FirstBlockToken": store.token(first_id, i, expiry)}
                    if i in first_snap.blocks else {}),
                 **({"SecondBlockToken": store.token(snapshot_id, i, expiry)}
                    if i in snap.blocks else {})} for i in page]
        if next_at is not None:
            out["NextToken"] = base64.urlsafe_b64encode(
                json.dumps({"at": next_at}).encode()).decode()
        self._send(200, json.dumps(out).encode(), {"Content-Type": "application/json"})

    def _get_block(self, snapshot_id: str, snap: Snap, raw_index: str, query: dict[str, str],
                   fault: Fault | None) -> None:
        store = self.server.store
        try:
            index = int(raw_index)
        except ValueError:
            self._ebs_error(400, "ValidationException", "bad block index")
            return
        why = store.check_token(snapshot_id, index, query.get("blockToken", ""))
        if why is not None:
            self._ebs_error(400, "ValidationException", why)
            return
        ref = snap.blocks.get(index)
        if ref is None:
            self._ebs_error(400, "ValidationException",
                            f"The block {index} has not been written in the snapshot")
            return
        with store.lock:
            store.block_gets[snapshot_id] = store.block_gets.get(snapshot_id, 0) + 1
            store.block_log.append((snapshot_id, index))
        store.gauge(+1)
        try:
            if store.block_latency:
                time.sleep(store.block_latency)
            self._send_block(ref, fault)
        finally:
            store.gauge(-1)

    def _send_block(self, ref: BlockRef, fault: Fault | None) -> None:
        headers = {"x-amz-Checksum": base64.b64encode(ref.digest).decode(),
                   "x-amz-Checksum-Algorithm": "SHA256", "x-amz-Data-Length": str(BLOCK),
                   "Content-Type": "application/octet-stream"}
        if fault is None and ref.data is None and self._send_file(ref, headers):
            return
        data = ref.read()
        if fault is not None and fault.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        self._send(200, data, headers)

    def _send_file(self, ref: BlockRef, headers: dict[str, str]) -> bool:
        """Send a file-backed block straight from the page cache (``os.sendfile``: no copy
        through Python, so a benchmark's server costs little CPU); False when the block is
        not a whole 512 KiB of the file (the caller pads it)."""
        assert ref.path is not None
        fd = self.server.file(ref.path)
        if os.fstat(fd).st_size < ref.offset + BLOCK:
            return False
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(BLOCK))
        self.end_headers()
        sent, socket_fd = 0, self.connection.fileno()
        while sent < BLOCK:
            done = os.sendfile(socket_fd, fd, ref.offset + sent, BLOCK - sent)
            if done <= 0:
                raise ConnectionError("sendfile sent nothing")
            sent += done
        return True

    # -- everything else: moto ----------------------------------------------------------------
    def _proxy(self, method: str, body: bytes) -> None:
        store = self.server.store
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        action = form.get("Action") or parse_qs(urlsplit(self.path).query).get(
            "Action", [""])[0]
        fault = store.take_fault(action, self.path + "?" + body.decode("utf-8", "replace"))
        if fault is not None:
            xml = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{fault.code}</Code>"
                   f"<Message>{fault.message}</Message></Error><RequestId>x</RequestId>"
                   "</ErrorResponse>")
            if self._service() == "ec2":
                xml = (f"<Response><Errors><Error><Code>{fault.code}</Code><Message>"
                       f"{fault.message}</Message></Error></Errors><RequestID>x</RequestID>"
                       "</Response>")
            self._send(fault.status, xml.encode(), {"Content-Type": "text/xml"})
            return
        conn = http.client.HTTPConnection("127.0.0.1", self.server.moto_port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("connection", "keep-alive", "transfer-encoding")}
            conn.request(method, self.path, body=body, headers=headers)
            reply = conn.getresponse()
            data = reply.read()
            out = {k: v for k, v in reply.getheaders()
                   if k.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                        "content-length")}
        finally:
            conn.close()
        if action in ("CreateSnapshot", "CreateSnapshots") and reply.status == 200:
            self._record_snapshots(data)
        if action == "DescribeSnapshots" and reply.status == 200 and store.describe_lag:
            data = self._hide_lagging(data)
        self._send(reply.status, data, out)

    def _hide_lagging(self, data: bytes) -> bytes:
        root = ET.fromstring(data)
        namespace = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
        ET.register_namespace("", namespace)
        for parent in root.iter():
            if parent.tag.split("}")[-1] != "snapshotSet":
                continue
            for item in list(parent):
                ids = [c.text or "" for c in item if c.tag.split("}")[-1] == "snapshotId"]
                if ids and self.server.store.lagging(ids[0]):
                    parent.remove(item)
        return ET.tostring(root, xml_declaration=True, encoding="UTF-8")

    def _record_snapshots(self, data: bytes) -> None:
        root = ET.fromstring(data)
        for element in root.iter():
            if element.tag.split("}")[-1] not in ("CreateSnapshotResponse", "item"):
                continue
            values = {c.tag.split("}")[-1]: (c.text or "") for c in element}
            if "snapshotId" in values and "volumeId" in values:
                size = int(values.get("volumeSize") or 1)
                self.server.store.add_snapshot(values["snapshotId"], values["volumeId"], size)


class _FrontServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, store: EbsStore, moto_port: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.store = store
        self.moto_port = moto_port
        self._files: dict[str, int] = {}
        self._files_lock = threading.Lock()

    def file(self, path: str) -> int:
        """A descriptor of an image file blocks are served from (opened once)."""
        with self._files_lock:
            fd = self._files.get(path)
            if fd is None:
                fd = self._files[path] = os.open(path, os.O_RDONLY)
            return fd

    def server_close(self) -> None:
        super().server_close()
        with self._files_lock:
            for fd in self._files.values():
                os.close(fd)
            self._files.clear()


class FakeAws:
    """moto on a random 127.0.0.1 port with the front before it; ``url`` is what
    ``AWS_ENDPOINT_URL`` should say."""

    def __init__(self, store: EbsStore | None = None) -> None:
        self.store = store or EbsStore()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._front: _FrontServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeAws:
        """Start moto and the front."""
        self._moto.start()
        _host, port = self._moto.get_host_and_port()
        self._front = _FrontServer(self.store, port)
        self._thread = threading.Thread(target=self._front.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        """The front's endpoint URL."""
        assert self._front is not None
        return f"http://127.0.0.1:{self._front.server_address[1]}"

    @property
    def moto_url(self) -> str:
        """moto's own endpoint (no ebs extension, no faults)."""
        host, port = self._moto.get_host_and_port()
        return f"http://{host}:{port}"

    def environment(self) -> dict[str, str]:
        """The variables that point boto3 (and so snapfim) at this server."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": "eu-west-1"}

    def stop(self) -> None:
        """Stop both servers."""
        if self._front is not None:
            self._front.shutdown()
            self._front.server_close()
            self._front = None
        self._moto.stop()


def reset_moto(url: str) -> None:
    """Forget every resource moto holds (between tests)."""
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port or 80,
                                      timeout=30)
    try:
        conn.request("POST", "/moto-api/reset")
        conn.getresponse().read()
    finally:
        conn.close()


def image_volume(ec2: Any, store: EbsStore, image: Path, zone: str = "eu-west-1a",
                 size_gib: int = 1) -> str:
    """Create an EC2 volume in moto whose bytes are ``image``; returns its id."""
    volume_id = str(ec2.create_volume(Size=size_gib, AvailabilityZone=zone)["VolumeId"])
    store.seed_volume(volume_id, image, size_gib)
    return volume_id
