"""Real local receivers for the delivery tests: a UDP and a TCP syslog listener, an HTTPS
server with scripted answers, and a private CA (made with ``cryptography``) to trust it.

Everything listens on 127.0.0.1 only, on ports the kernel picks.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# RFC 5424: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
RFC5424 = re.compile(rb"<(?P<pri>\d{1,3})>(?P<version>\d) (?P<timestamp>\S+) (?P<hostname>\S+) "
                     rb"(?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
                     rb"(?P<sd>(?:\[(?:[^\]\\]|\\.)*\])+|-)(?: (?P<msg>.*))?\Z", re.DOTALL)
SD_ELEMENT = re.compile(r'\[([^ \]]+)((?: [^= ]+="(?:[^"\\]|\\.)*")*)\]')
SD_PARAM = re.compile(r' ([^= ]+)="((?:[^"\\]|\\.)*)"')


@dataclass
class SyslogMessage:
    """One parsed RFC 5424 message."""

    pri: int
    version: int
    timestamp: str
    hostname: str
    app: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, str]]
    msg: bytes

    @property
    def json(self) -> Any:
        """The message body: a UTF-8 BOM, then JSON."""
        assert self.msg.startswith(b"\xef\xbb\xbf"), "MSG-UTF8 starts with a BOM"
        return json.loads(self.msg[3:].decode("utf-8"))


def parse_rfc5424(data: bytes) -> SyslogMessage:
    """Parse one message strictly (AssertionError if it is not RFC 5424)."""
    match = RFC5424.match(data)
    assert match, f"not an RFC 5424 message: {data[:200]!r}"
    sd: dict[str, dict[str, str]] = {}
    text = match["sd"].decode()
    if text != "-":
        assert "".join(m.group(0) for m in SD_ELEMENT.finditer(text)) == text, text
        for element in SD_ELEMENT.finditer(text):
            sd[element.group(1)] = {
                p.group(1): re.sub(r'\\(["\\\]])', r"\1", p.group(2))
                for p in SD_PARAM.finditer(element.group(2))}
    return SyslogMessage(int(match["pri"]), int(match["version"]), match["timestamp"].decode(),
                         match["hostname"].decode(), match["app"].decode(),
                         match["procid"].decode(), match["msgid"].decode(), sd,
                         match["msg"] or b"")


def split_octet_counted(stream: bytes) -> list[bytes]:
    """RFC 6587 octet-counting framing: ``LEN SP MSG`` repeated, covering the whole stream."""
    out, pos = [], 0
    while pos < len(stream):
        space = stream.index(b" ", pos)
        length = int(stream[pos:space])
        assert stream[pos:space] == str(length).encode(), "MSG-LEN has no leading zeros"
        out.append(stream[space + 1:space + 1 + length])
        pos = space + 1 + length
        assert pos <= len(stream), "a frame is cut short"
    return out


class SyslogListener:
    """A syslog receiver on 127.0.0.1: UDP datagrams or TCP connections (octet counting)."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.packets: list[bytes] = []         # UDP: datagrams; TCP: one entry per connection
        self._lock = threading.Lock()
        self._stop = False
        if transport == "tcp":
            self.sock.listen(8)
        self.sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.transport}://127.0.0.1:{self.port}"

    def _run(self) -> None:
        while not self._stop:
            try:
                if self.transport == "udp":
                    data, _ = self.sock.recvfrom(70_000)
                else:
                    conn, _ = self.sock.accept()
                    data = self._read_all(conn)
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.packets.append(data)

    @staticmethod
    def _read_all(conn: socket.socket) -> bytes:
        chunks = []
        conn.settimeout(5)
        with conn:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)

    def messages(self, count: int, timeout: float = 10) -> list[SyslogMessage]:
        """Wait until ``count`` messages arrived; return them parsed, in arrival order."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                raw = [m for p in self.packets for m in (
                    [p] if self.transport == "udp" else split_octet_counted(p))]
            if len(raw) >= count or time.monotonic() > deadline:
                return [parse_rfc5424(m) for m in raw]
            time.sleep(0.02)

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.sock.close()


# -- a private CA and an HTTPS server ----------------------------------------------------------
def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A CA certificate and a server certificate it signed for 127.0.0.1 / localhost;
    returns (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "snapfim test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@dataclass
class Request:
    """One request the HTTPS receiver got, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpsReceiver:
    """An HTTPS server on 127.0.0.1 answering POSTs by a script: each entry is a status code
    or ``("hang", seconds)`` (answer nothing for that long); once the script is used up it
    answers 200. ``on_request`` runs before each answer (to look at the database then)."""

    cert: Path
    key: Path
    script: list[Any] = field(default_factory=list)
    on_request: Callable[[Request], None] | None = None
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = Request(self.path, {k.lower(): v for k, v in self.headers.items()},
                                  body)
                receiver.requests.append(request)
                if receiver.on_request is not None:
                    receiver.on_request(request)
                answer = receiver.script.pop(0) if receiver.script else 200
                if isinstance(answer, tuple):
                    time.sleep(answer[1])
                    request.answered = None
                    return
                request.answered = answer
                self.send_response(answer)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/ingest?source=snapfim"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def records(requests: list[Request]) -> Iterator[Any]:
    """Every record of every request body, in order."""
    for request in requests:
        yield from request.json
