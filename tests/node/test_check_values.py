"""``container check`` finds in a node file the component values a worker would refuse at
start (the worker's own check, :func:`container.components.component_value_problems`): a TLS
file that cannot be read, a URL without a host or with port 0, a unix socket path too long;
each at its position, with relative file names read from the node directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from container.node.check import check_main
from container.transports import UNIX_PATH_MAX


def component(transport: dict[str, Any], component_id: str) -> dict[str, Any]:
    return {"id": component_id, "type": "class", "classname": "hello.Quiet",
            "realm": "realm1", "transport": transport}


def write_node(folder: Path, components: list[dict[str, Any]]) -> Path:
    document = {"version": 2, "controller": {"id": "node1"}, "workers": [
        {"type": "container", "id": "container1", "components": components}]}
    path = folder / "node.json"
    path.write_text(json.dumps(document, indent=4), encoding="utf-8")
    return path


def line_of(path: Path, text: str) -> int:
    """The line (1-based) of the one line of ``path`` that holds ``text``."""
    lines = [number for number, line in enumerate(path.read_text().splitlines(), 1)
             if text in line]
    assert len(lines) == 1, (text, lines)
    return lines[0]


def test_component_values_a_worker_would_refuse_are_found_at_their_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "junk.pem").write_text("not a certificate\n")
    long_path = "/tmp/" + "u" * UNIX_PATH_MAX
    node = write_node(tmp_path, [
        component({"type": "rawsocket", "endpoint": {
            "type": "tcp", "host": "127.0.0.1", "port": 8080,
            "tls": {"ca_certificates": ["certs/missing.pem", "certs/junk.pem"]}}}, "tls"),
        component({"type": "websocket", "url": "ws://127.0.0.1:0/ws"}, "portzero"),
        component({"type": "websocket", "url": "ws:///ws"}, "nohost"),
        component({"type": "rawsocket", "endpoint": {"type": "unix", "path": long_path}},
                  "longpath"),
    ])
    file = str(node)
    assert check_main([file]) == 1
    out = capsys.readouterr().out.splitlines()
    at = "workers[0].components"
    missing, junk = tmp_path / "certs" / "missing.pem", tmp_path / "certs" / "junk.pem"
    expected = [
        (line_of(node, "certs/missing.pem"),
         f"{at}[0].transport.endpoint.tls.ca_certificates[0]: cannot read '{missing}': "
         "No such file or directory"),
        (line_of(node, "certs/junk.pem"),
         f"{at}[0].transport.endpoint.tls.ca_certificates[1]: '{junk}' holds no PEM "
         "certificate"),
        (line_of(node, "ws://127.0.0.1:0/ws"),
         f"{at}[1].transport.url: 'ws://127.0.0.1:0/ws': port 0 is not a port to connect to "
         "(1 to 65535)"),
        (line_of(node, "ws:///ws"), f"{at}[2].transport.url: 'ws:///ws' names no host"),
        (line_of(node, long_path),
         f"{at}[3].transport.endpoint.path: '{long_path}' is too long for a unix socket "
         f"({len(long_path)} > {UNIX_PATH_MAX} bytes)"),
    ]
    problems = [line for line in out if line.startswith(f"{file}:") and ": invalid" not in line]
    assert len(problems) == len(expected), out
    for line, (number, message) in zip(problems, expected, strict=True):
        assert line.startswith(f"{file}:{number}:"), line
        assert line.endswith(f": {message}"), line
    assert out[-1] == f"{file}: invalid (5 problems)"


def test_tls_files_are_read_from_the_node_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A relative TLS file name is the node directory's (where the node reads it), whatever
    folder ``container check`` runs in."""
    node = write_node(tmp_path, [component({"type": "rawsocket", "endpoint": {
        "type": "tcp", "host": "127.0.0.1", "port": 8080,
        "tls": {"ca_certificates": ["ca.pem"]}}}, "tls")])
    check_main([str(node)])
    out = capsys.readouterr().out
    assert f"cannot read '{tmp_path / 'ca.pem'}'" in out
