"""A throwaway test certificate authority and a server certificate for 127.0.0.1/localhost.

The local Azure servers of the tests (Azurite, the page-range diff front, the fake Resource
Manager) speak TLS with the server certificate; snapfim trusts them the standard way, through
the CA bundle in ``REQUESTS_CA_BUNDLE`` (and ``SSL_CERT_FILE``): :meth:`TestCa.environment`.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TestCa:
    """The files of a test CA and of one server certificate it signed."""

    __test__ = False  # not a pytest test class

    ca_bundle: Path   # the CA certificate (PEM): what clients trust
    cert: Path        # the server certificate (PEM), for 127.0.0.1, ::1 and localhost
    key: Path         # its private key (PEM, unencrypted)

    def server_context(self) -> ssl.SSLContext:
        """An ``ssl`` context for a Python server socket presenting the server certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """An ``ssl`` context for a Python client trusting (only) the test CA."""
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def environment(self) -> dict[str, str]:
        """The variables that make requests, azure-core and Python's ``ssl`` trust the CA."""
        return {"REQUESTS_CA_BUNDLE": str(self.ca_bundle), "SSL_CERT_FILE": str(self.ca_bundle)}


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "snapfim tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_test_ca(directory: str | Path, days: int = 2) -> TestCa:
    """Write a new CA and a server certificate for 127.0.0.1, ::1 and localhost (valid
    ``days`` days from an hour ago) into ``directory``; return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC) - timedelta(hours=1)
    until = now + timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("snapfim test CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost")).issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))

    ca_path, cert_path, key_path = (directory / "ca.pem", directory / "server.pem",
                                    directory / "server-key.pem")
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    key_path.chmod(0o600)
    return TestCa(ca_bundle=ca_path, cert=cert_path, key=key_path)
