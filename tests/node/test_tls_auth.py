"""Crossbar.io's WAMP-TLS authentication (TLS client certificates) under ``container run``.

tests/configs/features/tls.json runs as a real node: its router listens on a loopback TLS
endpoint that verifies client certificates against a CA, and maps the SHA1 fingerprint of one
client certificate to a principal (``auth.tls``, static). The CA, the server certificate and
the client certificates are made here, at test time, in the test's temporary directory: no key
material is in the repository.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from autobahn.twisted.rawsocket import WampRawSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
    trustRootFromCertificates,
)

from tests.support.features import TIMEOUT, Auth, Client, Corpus, leave

#: A node may take this long to come up (Crossbar.io imports, several nodes on two CPUs).
START = 60.0
#: Where tls.json reads its key and certificates from (relative to the node directory).
CERTS = "tls"
#: Stands for the SHA1 fingerprint of the client certificate of principal "client1".
FINGERPRINT_PLACEHOLDER = "CLIENT1_CERTIFICATE_SHA1"


# -------------------------------------------------------------------------------------------
# throwaway certificates


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, both also written as PEM files."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    certificate_path: Path
    key_path: Path

    def sha1(self) -> str:
        """The fingerprint as Crossbar.io compares it: upper case hex pairs joined by colons
        (autobahn's ``peer_certificate_details``, the ``sha1`` of ``peer_cert``)."""
        return ":".join(f"{b:02X}" for b in self.certificate.fingerprint(hashes.SHA1()))

    def private_certificate(self) -> PrivateCertificate:
        return PrivateCertificate.loadPEM(
            self.certificate_path.read_bytes() + self.key_path.read_bytes())


def issue(folder: Path, name: str, issuer: Issued | None = None, *, ca: bool = False,
          server: bool = False) -> Issued:
    """A P-256 certificate named ``name``, signed by ``issuer`` (self-signed without one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"wamp-container test {name}")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
    certificate = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    folder.mkdir(parents=True, exist_ok=True)
    certificate_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key_path.chmod(0o600)
    return Issued(certificate, key, certificate_path, key_path)


# -------------------------------------------------------------------------------------------
# a WAMP client over TLS


async def join_tls(port: int, ca: Issued, client: Issued | None) -> Client:
    """Join realm1 at ``127.0.0.1:port`` over TLS (the server verified against ``ca``),
    presenting ``client``'s certificate, asking for WAMP-TLS authentication only.

    Fails with the ABORT's URI and message (ApplicationError), or with ConnectionError when
    the connection closed before a WAMP session opened (the TLS handshake was refused).
    """
    session = Client(ComponentConfig(realm="realm1"), Auth(("tls",)))
    factory = WampRawSocketClientFactory(lambda: session)
    factory.noisy = False
    options = optionsForClientTLS(
        "127.0.0.1",
        trustRoot=trustRootFromCertificates([Certificate.loadPEM(ca.certificate_path.read_bytes())]),
        clientCertificate=client.private_certificate() if client is not None else None,
    )
    endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", port,
                                                         timeout=TIMEOUT))
    protocol = await endpoint.connect(factory).addTimeout(TIMEOUT, reactor)

    def closed(_: object) -> None:
        if not session.joined.called:
            session.joined.errback(ConnectionError(
                "the connection closed before the WAMP session joined"))

    protocol.is_closed.addCallback(closed)
    return await session.joined.addTimeout(TIMEOUT, reactor)


# -------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_client_certificate_principal_joins_and_other_certificates_are_refused(
        tmp_path, nodes):
    from crossbar.personality import Personality

    corpus = Corpus.copy_to(tmp_path / "corpus")
    certs = corpus.root / CERTS
    ca = issue(certs, "ca", ca=True)
    issue(certs, "server", ca, server=True)
    client1 = issue(certs, "client1", ca)
    client2 = issue(certs, "client2", ca)
    foreign_ca = issue(tmp_path / "other", "ca", ca=True)
    outsider = issue(tmp_path / "other", "client", foreign_ca)
    config_path = corpus.path("tls.json")
    text = config_path.read_text()
    assert text.count(FINGERPRINT_PLACEHOLDER) == 1
    config_path.write_text(text.replace(FINGERPRINT_PLACEHOLDER, client1.sha1()))
    Personality.check_config(Personality, corpus.config("tls.json"))
    port = corpus.port(18880)

    await nodes.ready(config_path, timeout=START)

    # the configured certificate: principal client1, role user, by WAMP-TLS (no challenge);
    # it calls what the container worker's component registered (on the plain transport)
    session = await join_tls(port, ca, client1)
    try:
        details = session.details
        assert (details.authid, details.authrole) == ("client1", "user")
        assert (details.authmethod, details.authprovider) == ("tls", "static")
        assert await session.call("com.example.add2", 20, 22) == 42
        with pytest.raises(ApplicationError) as denied:  # role user may call add2 only
            await session.call("com.example.data.get")
        assert denied.value.error == "wamp.error.not_authorized"
    finally:
        await leave(session)

    # a certificate of the same CA (the TLS handshake succeeds) that is no principal's
    with pytest.raises(ApplicationError) as refusal:
        await join_tls(port, ca, client2)
    assert refusal.value.error == "wamp.error.not_authorized"
    assert client2.sha1() in str(refusal.value.args)

    # no certificate, or one of another CA: the TLS handshake itself is refused
    for certificate in (None, outsider):
        with pytest.raises(ConnectionError):
            await join_tls(port, ca, certificate)

    # still serving the principal after the refusals
    again = await join_tls(port, ca, client1)
    try:
        assert again.details.authid == "client1"
    finally:
        await leave(again)
