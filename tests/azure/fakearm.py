"""A local Azure Resource Manager (the compute part snapfim calls) and a managed-identity token
endpoint, for tests.

No emulator of the compute API exists (FACTS.md), so this one implements exactly what the
Azure provider calls, the way the REST specification says, over TLS (azure-core refuses bearer
tokens over plain HTTP):

- ``GET .../virtualMachines`` (with ``statusOnly=true``: the instance views), ``GET .../disks``,
  ``GET .../snapshots`` (subscription and resource group): paged with ``nextLink``;
- snapshots: ``PUT`` (202, ``Azure-AsyncOperation`` + ``Location``; the disk's bytes copied at
  that moment, provisioning until the first ``GET`` after ``pending_polls`` more), ``GET``,
  ``DELETE`` (202, or 204 when absent), ``beginGetAccess`` / ``endGetAccess`` (202 and the
  operation's status and final result at those URLs, done at the first poll, so clients never
  sleep); a grant hands out the URL ``publish(name, path, lineage)`` returns (Azurite in the tests);
  at most 5 open grants per disk family (the 6th is refused with 409, as Azure does);
- every request needs a bearer token the token endpoint issued for this server's resource;
  each request is counted under its RBAC action (:attr:`FakeArm.actions`), for the role test;
- faults on request (:class:`Fault`): an ARM error with a status, code and ``Retry-After``.

The token endpoint is App Service's managed identity protocol (``IDENTITY_ENDPOINT`` +
``IDENTITY_HEADER``), which ``DefaultAzureCredential`` uses with no code of snapfim's.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

API = "Microsoft.Compute"
MAX_GRANTS = 5
PAGE = 2  # items per page of a listing: paging is exercised with a handful of resources

Publish = Callable[[str, Path, str], str]  # (blob name, bytes, lineage) -> read SAS URL


@dataclass(slots=True)
class Fault:
    """Make ``count`` requests of ``action`` (an RBAC action such as
    ``Microsoft.Compute/snapshots/write``; ``*`` for any) whose path contains ``match``
    fail with HTTP ``status``, ARM error ``code`` and ``message`` (and ``Retry-After``)."""

    action: str
    status: int
    code: str
    message: str = "injected fault"
    count: int = 1
    match: str = ""
    retry_after: int | None = None


@dataclass(slots=True)
class Disk:
    """A managed disk whose bytes are an image file (replaced by the test between cycles)."""

    id: str
    location: str
    image: Path
    os_type: str | None = None

    @property
    def name(self) -> str:
        return self.id.rsplit("/", 1)[1]


@dataclass(slots=True)
class Vm:
    """A virtual machine: its OS disk, data disks by LUN, power state and tags."""

    id: str
    location: str
    os_type: str
    os_disk: str
    data_disks: dict[int, str] = field(default_factory=dict)
    power: str = "running"
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.id.rsplit("/", 1)[1]


@dataclass(slots=True)
class Snap:
    """A snapshot: a copy of its disk's bytes when it was made."""

    id: str
    location: str
    tags: dict[str, str]
    source: str
    data: Path
    size: int
    created: datetime
    incremental: bool
    pending_polls: int = 0
    granted: str | None = None     # the SAS URL while read access is open
    published: str | None = None   # the URL publish() returned (uploaded once)

    @property
    def name(self) -> str:
        return self.id.rsplit("/", 1)[1]


def rid(subscription: str, group: str, kind: str, name: str) -> str:
    """A Microsoft.Compute resource id."""
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{API}/{kind}/{name}"


class ArmError(Exception):
    """An ARM error reply."""

    def __init__(self, status: int, code: str, message: str,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = (status, code, message,
                                                                  retry_after)


class FakeArm:
    """The server's state (subscriptions, VMs, disks, snapshots, grants), its counters and
    faults, and the two HTTP servers."""

    def __init__(self, context: ssl.SSLContext, workdir: Path,
                 publish: Publish | None = None) -> None:
        self.context = context
        self.workdir = workdir
        self.publish = publish
        self.identity_secret = secrets.token_hex(16)
        self.lock = threading.RLock()
        self.reset()

    # -- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every resource, call and fault (between tests)."""
        with self.lock:
            self.subscriptions: set[str] = set()
            self.disks: dict[str, Disk] = {}
            self.vms: dict[str, Vm] = {}
            self.snaps: dict[str, Snap] = {}
            self.faults: list[Fault] = []
            self.actions: Counter[str] = Counter()
            self.requests: list[tuple[str, str]] = []
            self.operations: dict[str, dict[str, Any]] = {}
            self.tokens: dict[str, str] = {}   # token -> resource it was issued for
            self.max_grants: Counter[str] = Counter()
            self.pending_polls = 0
            self.stall_grants = False  # grant operations stay in progress for ever
            self.nonce = secrets.token_hex(4)  # blob names of this test

    def add_vm(self, subscription: str, group: str, name: str, disks: list[Path], *,
               location: str = "westeurope", os_type: str = "Linux", power: str = "running",
               tags: dict[str, str] | None = None) -> Vm:
        """A VM whose OS disk holds ``disks[0]`` and whose data disks (LUN 0, 1...) the rest."""
        with self.lock:
            self.subscriptions.add(subscription)
            ids = []
            for n, image in enumerate(disks):
                disk_name = f"{name}_{'OsDisk' if n == 0 else f'DataDisk_{n - 1}'}"
                disk = Disk(rid(subscription, group, "disks", disk_name), location, image,
                            os_type if n == 0 else None)
                self.disks[disk.id.lower()] = disk
                ids.append(disk.id)
            vm = Vm(rid(subscription, group, "virtualMachines", name), location, os_type,
                    ids[0], dict(enumerate(ids[1:])), power, dict(tags or {}))
            self.vms[vm.id.lower()] = vm
            return vm

    def set_disk(self, disk_id: str, image: Path) -> None:
        """Replace a disk's bytes (what the machine wrote since)."""
        with self.lock:
            self.disks[disk_id.lower()].image = image

    def inject(self, fault: Fault) -> None:
        """Add a fault."""
        with self.lock:
            self.faults.append(fault)

    def open_grants(self) -> list[str]:
        """The snapshots whose read access is open."""
        with self.lock:
            return sorted(s.id for s in self.snaps.values() if s.granted)

    def tagged(self, scan: str | None = None) -> list[Snap]:
        """Snapshots carrying snapfim's scan tag (with this value, if given)."""
        with self.lock:
            return sorted((s for s in self.snaps.values() if "snapfim:scan" in s.tags
                           and (scan is None or s.tags["snapfim:scan"] == scan)),
                          key=lambda s: s.id)

    def add_snapshot(self, subscription: str, group: str, name: str, disk_id: str,
                     tags: dict[str, str], created: datetime | None = None) -> Snap:
        """A snapshot made by someone else (the customer), or backdated."""
        with self.lock:
            disk = self.disks[disk_id.lower()]
            return self._copy(rid(subscription, group, "snapshots", name), disk, tags,
                              created or datetime.now(UTC), True, 0)

    def _copy(self, snap_id: str, disk: Disk, tags: dict[str, str], created: datetime,
              incremental: bool, pending: int) -> Snap:
        target = self.workdir / f"{len(self.snaps)}-{snap_id.rsplit('/', 1)[1]}.img"
        shutil.copyfile(disk.image, target)
        snap = Snap(snap_id, disk.location, tags, disk.id, target, target.stat().st_size,
                    created, incremental, pending)
        self.snaps[snap_id.lower()] = snap
        return snap

    # -- servers -------------------------------------------------------------------------
    def start(self) -> FakeArm:
        """Start the ARM (TLS) and token (plain HTTP) servers on free 127.0.0.1 ports."""
        arm = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, self._arm))
        arm.socket = self.context.wrap_socket(arm.socket, server_side=True)
        token = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, self._token))
        self.servers = [arm, token]
        for server in self.servers:
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.url = f"https://127.0.0.1:{arm.server_address[1]}"
        self.identity_url = f"http://127.0.0.1:{token.server_address[1]}/msi/token"
        return self

    def stop(self) -> None:
        """Stop both servers."""
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def environment(self) -> dict[str, str]:
        """What points snapfim (and DefaultAzureCredential) at these servers."""
        return {"SNAPFIM_AZURE_ARM_ENDPOINT": self.url,
                "SNAPFIM_AZURE_AUTHORITY": "127.0.0.1",
                "IDENTITY_ENDPOINT": self.identity_url,
                "IDENTITY_HEADER": self.identity_secret}

    # -- the token endpoint --------------------------------------------------------------
    def _token(self, method: str, path: str, query: dict[str, str], headers: Any,
               body: bytes) -> tuple[int, dict[str, str], Any]:
        if method != "GET" or headers.get("X-IDENTITY-HEADER") != self.identity_secret:
            return 400, {}, {"error": "invalid_request"}
        resource = query.get("resource", "")
        token = "tok-" + secrets.token_hex(8)
        with self.lock:
            self.tokens[token] = resource
        return 200, {}, {"access_token": token, "expires_on": str(int(time.time()) + 3600),
                         "resource": resource, "token_type": "Bearer"}

    # -- ARM -----------------------------------------------------------------------------
    def _arm(self, method: str, path: str, query: dict[str, str], headers: Any,
             body: bytes) -> tuple[int, dict[str, str], Any]:
        auth = headers.get("Authorization", "")
        with self.lock:
            resource = self.tokens.get(auth.removeprefix("Bearer "))
        if not auth.startswith("Bearer ") or resource is None:
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if resource.rstrip("/") != self.url:
            raise ArmError(401, "InvalidAuthenticationTokenAudience",
                           f"The access token has an invalid audience {resource!r}.")
        parts = [p for p in path.split("/") if p]
        low = [p.lower() for p in parts]
        if len(parts) < 2 or low[0] != "subscriptions":
            raise ArmError(404, "NotFound", f"no route {path}")
        subscription = parts[1]
        action, handler = self._route(method, low, query)
        with self.lock:
            self.requests.append((method, path))
            if action:
                self.actions[action] += 1
            for fault in self.faults:
                if fault.count > 0 and fault.action in (action, "*") and fault.match in path:
                    fault.count -= 1
                    raise ArmError(fault.status, fault.code, fault.message, fault.retry_after)
            if subscription not in self.subscriptions:
                raise ArmError(404, "SubscriptionNotFound",
                               f"The subscription '{subscription}' could not be found.")
            return handler(method, parts, query, body)

    def _route(self, method: str, low: list[str], query: dict[str, str]
               ) -> tuple[str, Callable[..., tuple[int, dict[str, str], Any]]]:
        tail = low[2:]
        if tail[:2] == ["providers", API.lower()] and len(tail) == 3 and method == "GET":
            kind = tail[2]
            if kind in ("virtualmachines", "disks", "snapshots"):
                name = {"virtualmachines": "virtualMachines"}.get(kind, kind)
                return f"{API}/{name}/read", self._list
        if tail[:2] == ["providers", API.lower()] and "operations" in tail:
            return f"{API}/locations/operations/read", self._operation
        if len(tail) >= 5 and tail[0] == "resourcegroups" and tail[4] == "snapshots":
            if len(tail) == 5 and method == "GET":
                return f"{API}/snapshots/read", self._list
            if len(tail) == 6:
                verb = {"GET": "read", "PUT": "write", "DELETE": "delete"}.get(method)
                if verb:
                    return f"{API}/snapshots/{verb}", self._snapshot
            if len(tail) == 7 and method == "POST" and tail[6] in ("begingetaccess",
                                                                    "endgetaccess"):
                name = "beginGetAccess" if tail[6] == "begingetaccess" else "endGetAccess"
                return f"{API}/snapshots/{name}/action", self._access
        raise ArmError(404, "NotFound", f"no route {method} /{'/'.join(low)}")

    # listings
    def _list(self, method: str, parts: list[str], query: dict[str, str], body: bytes
              ) -> tuple[int, dict[str, str], Any]:
        subscription, kind = parts[1], parts[-1].lower()
        prefix = f"/subscriptions/{subscription}/".lower()
        if parts[2].lower() == "resourcegroups":
            prefix += f"resourcegroups/{parts[3].lower()}/"
        items: list[dict[str, Any]]
        if kind == "virtualmachines":
            status_only = query.get("statusOnly") == "true"
            items = [self._vm_json(v, status_only) for k, v in sorted(self.vms.items())
                     if k.startswith(prefix)]
        elif kind == "disks":
            items = [self._disk_json(d) for k, d in sorted(self.disks.items())
                     if k.startswith(prefix)]
        else:
            items = [self._snap_json(s) for k, s in sorted(self.snaps.items())
                     if k.startswith(prefix)]
        start = int(query.get("$skiptoken", "0"))
        page: dict[str, Any] = {"value": items[start:start + PAGE]}
        if start + PAGE < len(items):
            rest = {k: v for k, v in query.items() if k != "$skiptoken"}
            page["nextLink"] = (f"{self.url}/{'/'.join(parts)}?"
                                + urlencode({**rest, "$skiptoken": str(start + PAGE)}))
        return 200, {}, page

    def _vm_json(self, vm: Vm, status_only: bool) -> dict[str, Any]:
        view = {"statuses": [{"code": "ProvisioningState/succeeded"},
                             {"code": f"PowerState/{vm.power}"}]}
        if status_only:
            return {"id": vm.id, "name": vm.name, "properties": {"instanceView": view}}

        def disk_json(disk_id: str) -> dict[str, Any]:
            disk = self.disks[disk_id.lower()]
            return {"name": disk.name, "managedDisk": {"id": disk.id},
                    "diskSizeGB": -(-_size(disk.image) // (1 << 30))}

        return {"id": vm.id, "name": vm.name, "location": vm.location, "tags": vm.tags,
                "type": f"{API}/virtualMachines",
                "properties": {"provisioningState": "Succeeded", "storageProfile": {
                    "osDisk": {**disk_json(vm.os_disk), "osType": vm.os_type,
                               "createOption": "FromImage"},
                    "dataDisks": [{**disk_json(d), "lun": lun, "createOption": "Attach"}
                                  for lun, d in sorted(vm.data_disks.items())]}}}

    def _disk_json(self, disk: Disk) -> dict[str, Any]:
        size = _size(disk.image)
        return {"id": disk.id, "name": disk.name, "location": disk.location,
                "type": f"{API}/disks",
                "properties": {"diskSizeBytes": size, "diskSizeGB": -(-size // (1 << 30)),
                               "provisioningState": "Succeeded", "diskState": "Attached",
                               **({"osType": disk.os_type} if disk.os_type else {})}}

    def _snap_json(self, snap: Snap) -> dict[str, Any]:
        done = snap.pending_polls <= 0
        return {"id": snap.id, "name": snap.name, "location": snap.location,
                "tags": snap.tags, "type": f"{API}/snapshots",
                "properties": {
                    "creationData": {"createOption": "Copy", "sourceResourceId": snap.source},
                    "incremental": snap.incremental, "diskSizeBytes": snap.size,
                    "timeCreated": snap.created.isoformat().replace("+00:00", "Z"),
                    "provisioningState": "Succeeded" if done else "Creating",
                    "completionPercent": 100.0 if done else 0.0,
                    "diskState": "ActiveSAS" if snap.granted else "Unattached"}}

    # snapshots
    def _snapshot(self, method: str, parts: list[str], query: dict[str, str], body: bytes
                  ) -> tuple[int, dict[str, str], Any]:
        snap_id = "/" + "/".join(parts)
        snap = self.snaps.get(snap_id.lower())
        if method == "GET":
            if snap is None:
                raise ArmError(404, "ResourceNotFound", f"snapshot {parts[-1]} not found")
            reply = self._snap_json(snap)
            snap.pending_polls -= 1
            return 200, {}, reply
        if method == "DELETE":
            if snap is None:
                return 204, {}, None
            if snap.granted:
                raise ArmError(409, "OperationNotAllowed", "The snapshot has an active SAS "
                               "URI; revoke access first.")
            del self.snaps[snap_id.lower()]
            snap.data.unlink(missing_ok=True)
            return self._accepted(parts, None)
        payload = json.loads(body or b"{}")
        props = payload.get("properties") or {}
        creation = props.get("creationData") or {}
        source = self.disks.get(str(creation.get("sourceResourceId", "")).lower())
        if creation.get("createOption") != "Copy":
            raise ArmError(400, "InvalidParameter", "creationData.createOption must be Copy")
        if source is None:
            raise ArmError(404, "ResourceNotFound", f"The Resource "
                           f"'{creation.get('sourceResourceId')}' was not found.")
        if payload.get("location", "").lower() != source.location:
            raise ArmError(400, "InvalidParameter", "the snapshot must be in the disk's region")
        if len(parts[-1]) > 80 or not re.fullmatch(r"[A-Za-z0-9_.-]*[A-Za-z0-9_]", parts[-1]):
            raise ArmError(400, "InvalidResourceName", f"snapshot name {parts[-1]!r} is invalid")
        if snap is not None and snap.source.lower() != source.id.lower():
            raise ArmError(409, "PropertyChangeNotAllowed", "Changing property "
                           "'sourceResourceId' is not allowed.")
        if snap is not None:  # PUT again: the same resource (tags updated)
            snap.tags = dict(payload.get("tags") or {})
            return 200, {}, self._snap_json(snap)
        snap = self._copy(snap_id, source, dict(payload.get("tags") or {}), datetime.now(UTC),
                          bool(props.get("incremental")), self.pending_polls)
        return self._accepted(parts, None, self._snap_json(snap))

    def _access(self, method: str, parts: list[str], query: dict[str, str], body: bytes
                ) -> tuple[int, dict[str, str], Any]:
        snap_id = "/" + "/".join(parts[:-1])
        snap = self.snaps.get(snap_id.lower())
        if snap is None:
            raise ArmError(404, "ResourceNotFound", f"snapshot {parts[-2]} not found")
        if parts[-1].lower() == "endgetaccess":
            snap.granted = None
            return self._accepted(parts, None)
        request = json.loads(body or b"{}")
        seconds = request.get("durationInSeconds")
        if request.get("access") != "Read" or not isinstance(seconds, int) or seconds <= 0:
            raise ArmError(400, "InvalidParameter", "access must be Read with a duration")
        if not snap.granted:
            family = snap.source.lower()
            open_now = sum(1 for s in self.snaps.values()
                           if s.granted and s.source.lower() == family)
            if open_now >= MAX_GRANTS:
                raise ArmError(409, "OperationNotAllowed",
                               f"At most {MAX_GRANTS} snapshots of a disk can have an active "
                               "SAS at a time.")
            if snap.published is None:
                if self.publish is None:
                    raise ArmError(500, "InternalServerError", "no blob server to publish to")
                snap.published = self.publish(f"{self.nonce}-{snap.name.lower()}", snap.data,
                                              f"{self.nonce}-{family.rsplit('/', 1)[1]}")
            snap.granted = snap.published
            self.max_grants[family] = max(self.max_grants[family], open_now + 1)
        return self._accepted(parts, {"accessSAS": snap.granted}, stalled=self.stall_grants)

    def _accepted(self, parts: list[str], output: dict[str, Any] | None,
                  body: Any = None, stalled: bool = False) -> tuple[int, dict[str, str], Any]:
        """202 with the operation's status (``Azure-AsyncOperation``) and result
        (``Location``) URLs; the operation is done when first polled (a ``stalled`` one is
        in progress for ever)."""
        op_id = secrets.token_hex(8)
        self.operations[op_id] = {"output": output, "stalled": stalled}
        base = f"{self.url}/subscriptions/{parts[1]}/providers/{API}/locations/westeurope"
        headers = {"Azure-AsyncOperation": f"{base}/operations/{op_id}?api-version=1",
                   "Location": f"{base}/operations/{op_id}?monitor=true&api-version=1",
                   "Retry-After": "1"}
        return 202, headers, body

    def _operation(self, method: str, parts: list[str], query: dict[str, str], body: bytes
                   ) -> tuple[int, dict[str, str], Any]:
        op = self.operations.get(parts[-1])
        if op is None:
            raise ArmError(404, "NotFound", "no such operation")
        if query.get("monitor") == "true":  # the final result
            return (200, {}, op["output"]) if op["output"] is not None else (200, {}, None)
        if op.get("stalled"):
            return 200, {"Retry-After": "1"}, {"name": parts[-1], "status": "InProgress"}
        status: dict[str, Any] = {"name": parts[-1], "status": "Succeeded",
                                  "startTime": datetime.now(UTC).isoformat()}
        if op["output"] is not None:
            status["properties"] = {"output": op["output"]}
        return 200, {}, status


def _size(path: Path) -> int:
    return path.stat().st_size


def _handler(arm: FakeArm, serve: Callable[..., tuple[int, dict[str, str], Any]]
             ) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            try:
                status, headers, payload = serve(self.command, split.path, query,
                                                 self.headers, body)
            except ArmError as exc:
                status, payload = exc.status, {"error": {"code": exc.code,
                                                         "message": exc.message}}
                headers = {} if exc.retry_after is None else {
                    "Retry-After": str(exc.retry_after)}
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

    return Handler
