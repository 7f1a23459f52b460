"""TLS for a client transport: the files it names read and parsed, each problem at its key.

One function builds Twisted's client TLS options for the connector, and the same function
checks a configuration (the worker's before a start, ``container check``'s for a node file),
so what the check accepts, the connect can use, and what it refuses is said once, in the same
words: ``transport.endpoint.tls.ca_certificates[0]: cannot read '/x/ca.pem': No such file or
directory``. pyOpenSSL is imported when a TLS transport is first seen, not before.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from container.transports import shown_text
from container.validation import Finding, JsonPath, raise_first

__all__ = ["TLS_AT", "client_tls_options", "tls_problems", "transport_tls_problems"]

#: Where a component's TLS settings are (``endpoint.tls``), and its host.
TLS_AT: JsonPath = ("transport", "endpoint", "tls")
HOST_AT: JsonPath = ("transport", "endpoint", "host")
#: A PEM file is a few kilobytes (a CA bundle a few hundred): past this it is something else.
PEM_MAX = 8 * 1024 * 1024


def client_tls_options(
    tls: Mapping[str, Any], host: str, at: JsonPath = TLS_AT, host_at: JsonPath = HOST_AT
) -> Any:
    """Twisted's client TLS options (``optionsForClientTLS``) for ``tls`` (``hostname``,
    ``ca_certificates``, ``certificate``, ``key``), ``host`` being the host name to verify
    when ``tls`` has none; raises ``InvalidConfiguration`` naming the key of the first
    problem."""
    options, problems = _build(tls, host, None, at, host_at)
    raise_first(problems)
    return options


def tls_problems(
    tls: Mapping[str, Any], host: str, base_dir: str | None = None,
    at: JsonPath = TLS_AT, host_at: JsonPath = HOST_AT,
) -> list[Finding]:
    """Every problem :func:`client_tls_options` would raise for, each at its key; relative
    file names are read from ``base_dir`` (the node directory) when one is given."""
    return _build(tls, host, base_dir, at, host_at)[1]


def _build(
    tls: Mapping[str, Any], host: str, base_dir: str | None, at: JsonPath, host_at: JsonPath
) -> tuple[Any, list[Finding]]:
    from OpenSSL import crypto
    from twisted.internet import ssl
    from twisted.internet.error import VerifyError

    problems: list[Finding] = []

    def resolved(path: str) -> str:
        return os.path.join(base_dir, path) if base_dir is not None else path

    def load(kind: str, parse: Callable[[bytes], Any], path: str, key: JsonPath) -> Any:
        shown = shown_text(resolved(path))
        try:
            return parse(_read(resolved(path)))
        except OSError as error:
            problems.append(Finding(key, f"cannot read {shown}: {_reason(error)}"))
        except (crypto.Error, ValueError):
            problems.append(Finding(key, f"{shown} holds no PEM {kind}"))
        return None

    authorities = [
        load("certificate", ssl.Certificate.loadPEM, path, (*at, "ca_certificates", index))
        for index, path in enumerate(tls.get("ca_certificates") or [])
    ]
    client = None
    if tls.get("certificate") and tls.get("key"):
        certificate = load("certificate", ssl.Certificate.loadPEM, tls["certificate"],
                           (*at, "certificate"))
        key = load("private key", lambda data: ssl.KeyPair.load(data, crypto.FILETYPE_PEM),
                   tls["key"], (*at, "key"))
        if certificate is not None and key is not None:
            try:
                pair = ssl.PrivateCertificate.fromCertificateAndKeyPair
                client = pair(certificate, key)  # type: ignore[no-untyped-call]
            except VerifyError:
                problems.append(Finding((*at, "key"), (
                    f"{shown_text(resolved(tls['key']))} does not match the certificate in "
                    f"{shown_text(resolved(tls['certificate']))} (it is another certificate's "
                    "key)")))
    if problems:
        authorities, client = [], None
    hostname, named_at = (tls["hostname"], (*at, "hostname")) if "hostname" in tls else (
        host, host_at)
    try:
        trust = (ssl.trustRootFromCertificates(authorities)  # type: ignore[no-untyped-call]
                 if authorities else None)
        options = ssl.optionsForClientTLS(hostname, trustRoot=trust, clientCertificate=client)
    except ValueError:  # idna's IDNAError is one
        problems.append(Finding(named_at, (
            f"{shown_text(hostname)} is not a valid host name for TLS (the name the router's "
            "certificate is verified against)")))
    return (None if problems else options), problems


def _read(path: str) -> bytes:
    """A regular file's bytes: never a FIFO (opening one blocks), a device or a folder."""
    try:
        mode = os.stat(path).st_mode
    except UnicodeError:
        raise OSError("the file name cannot be encoded on this system") from None
    except ValueError:
        raise OSError("the file name holds a NUL character") from None
    if not stat.S_ISREG(mode):
        raise OSError("not a regular file")
    with open(path, "rb") as handle:
        data = handle.read(PEM_MAX + 1)
    if len(data) > PEM_MAX:
        raise OSError(f"larger than {PEM_MAX // (1024 * 1024)} MiB: not a PEM file")
    return data


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def transport_tls_problems(
    transport: Mapping[str, Any], base_dir: str | None = None
) -> list[Finding]:
    """The TLS problems of a component's transport (paths relative to the component), if it
    connects with TLS: an endpoint with ``tls``, else a ``wss://`` or ``rss://`` URL."""
    endpoint = transport.get("endpoint")
    if endpoint is not None:
        if endpoint.get("type") != "tcp" or "tls" not in endpoint:
            return []
        return tls_problems(endpoint["tls"], endpoint["host"], base_dir)
    url = transport.get("url") or ""
    if not url.startswith(("wss://", "rss://")):
        return []
    host = urlsplit(url).hostname or ""
    if url.startswith("rss:") and host == "unix":  # a unix socket: no TLS
        return []
    return tls_problems({}, host, base_dir, host_at=("transport", "url"))
