"""``container check``: every problem a user sees is located as FILE:LINE:COLUMN: path: message.

Each broken file under ``configs/`` holds one problem (``several_problems.json`` holds many);
the lines asserted here are exactly what a person reads in the terminal. Our schema checks
container workers; Crossbar.io's own checker checks everything else: what it accepts
(``configs/crossbar/``, the ``crossbar init`` template) passes, what it refuses
(``configs/refused/``) is refused at the key it is about.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from container.errors import ConfigFileUnreadable, InvalidConfiguration, NodeConfigError
from container.node import config as nodeconfig
from container.node.check import check_main
from container.node.config import load_node_config, node_validator
from container.positions import Problem
from container.router.check import crossbar_view
from container.validation import format_key_path, load_schema
from tests.support.paths import ROOT, TESTS

VALID = "configs/valid/node.json"
CROSSBAR_VALID = sorted(path.name for path in (TESTS / "configs" / "crossbar").glob("*.json"))


@pytest.fixture(autouse=True)
def _in_tests_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """File names in problems are shown as given: run from a fixed folder so they are stable."""
    monkeypatch.chdir(TESTS)


def check_lines(capsys: pytest.CaptureFixture[str], *files: str) -> tuple[int, list[str]]:
    code = check_main(list(files))
    return code, capsys.readouterr().out.splitlines()


SINGLE_PROBLEMS = {
    "syntax error: its line and column": (
        "configs/syntax_error.json",
        "configs/syntax_error.json:5:9: (root): invalid JSON: Expecting ',' delimiter"),
    "unknown key: the close match suggested": (
        "configs/unknown_key.json",
        "configs/unknown_key.json:7:17: workers[0].options.restrat: "
        "unknown key 'restrat' (did you mean 'restart'?)"),
    # in a container worker (ours); the same mistake in a router is Crossbar.io's to say
    "wrong type: expected and actual type": (
        "configs/wrong_type.json",
        "configs/wrong_type.json:8:110: workers[0].components[0].transport.endpoint.port: "
        "wrong type: expected integer, got string '8080'"),
    "invalid restart mode: the valid ones listed": (
        "configs/bad_restart_mode.json",
        "configs/bad_restart_mode.json:6:36: workers[0].options.restart: "
        "invalid value 'restart-sometimes' "
        "(valid: restart-never, restart-always, restart-failed, restart-on-failed)"),
    "missing realm: the component named": (
        "configs/missing_realm.json",
        "configs/missing_realm.json:7:17: workers[0].components[0]: missing required key 'realm'"),
    "duplicate component ids within a worker": (
        "configs/duplicate_component_ids.json",
        "configs/duplicate_component_ids.json:12:44: workers[0].components[1].id: "
        "duplicate component id 'hello' (also used by workers[0].components[0])"),
    # guest and proxy workers are supported now; Crossbar.io's others are still refused
    "Crossbar.io-only worker type: not supported": (
        "configs/unsupported_worker.json",
        "configs/unsupported_worker.json:5:18: workers[1].type: worker type 'websocket-testee' "
        "is not supported by wamp-container (supported: router, proxy, container, guest)"),
    "impossible restart/shutdown combination": (
        "configs/impossible_shutdown.json",
        "configs/impossible_shutdown.json:8:29: workers[0].options.shutdown: "
        "'shutdown-on-last-component-stopped' can never trigger with restart 'restart-always' "
        "and no restart_limit (every such component is restarted); "
        "set restart_limit or another restart or shutdown mode"),
}


def assert_single_problem(capsys: pytest.CaptureFixture[str], file: str, line: str) -> None:
    code, lines = check_lines(capsys, file)
    assert lines == [line, f"{file}: invalid (1 problem)"]
    assert code == 1


@pytest.mark.parametrize("case", sorted(SINGLE_PROBLEMS))
def test_a_file_with_one_problem_gets_one_located_line(capsys: Any, case: str) -> None:
    assert_single_problem(capsys, *SINGLE_PROBLEMS[case])


def test_every_problem_is_reported_in_file_order_without_branch_noise(capsys: Any) -> None:
    """A wrong ``type`` hides what the branch chosen for it would demand (only the type is said).

    The router's port 70000 is not reported: Crossbar.io's checker, whose finding it would be,
    is not asked while the document is of the wrong shape outside its container workers.
    """
    code, lines = check_lines(capsys, "configs/several_problems.json")
    file = "configs/several_problems.json"
    assert code == 1
    assert lines == [
        f"{file}:2:16: version: invalid value 3 (must be 2)",
        f"{file}:3:5: controler: unknown key 'controler' (did you mean 'controller'?)",
        f"{file}:14:19: workers[1].id: duplicate worker id 'w1' (also used by workers[0])",
        f"{file}:15:36: workers[1].options.restart: invalid value 'restart-alway' "
        "(did you mean 'restart-always'? "
        "valid: restart-never, restart-always, restart-failed, restart-on-failed)",
        f"{file}:15:65: workers[1].options.shutdown: invalid value 'shutdown-never' "
        "(valid: shutdown-manual, shutdown-on-last-component-stopped, "
        "shutdown-on-any-component-stopped, shutdown-on-any-component-failed)",
        f"{file}:18:29: workers[1].components[0].type: invalid value 'clas' "
        "(did you mean 'class'? valid: class, function)",
        f"{file}:21:77: workers[1].components[0].transport.endpoint.type: invalid value 'tcpp' "
        "(did you mean 'tcp'? valid: tcp, unix, twisted, tor)",
        f"{file}:28:68: workers[1].components[1].transport.endpoint: missing required key 'path'",
        f"{file}:30:21: workers[1].components[1].classname: unknown key 'classname' "
        "(allowed: id, type, realm, transport, extra, restart, auth, role, callbacks, ready_grace)",
        f"{file}: invalid (9 problems)",
    ]


def problems_in(tmp_path: Path, text: str) -> tuple[Path, list[Problem]]:
    """Write ``text`` as ``tmp_path/node.json``: the problems loading it raises."""
    config = tmp_path / "node.json"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(NodeConfigError) as caught:
        load_node_config(config)
    return config, caught.value.problems


def test_load_raises_node_config_error_holding_every_problem() -> None:
    with pytest.raises(NodeConfigError) as caught:
        load_node_config("configs/several_problems.json")
    error = caught.value
    assert isinstance(error, InvalidConfiguration)
    assert error.uri == "crossbar.error.invalid_configuration"
    assert len(error.problems) == 9
    first = error.problems[0]
    assert first == Problem("configs/several_problems.json", 2, 16, ("version",), first.message)
    assert str(first) in str(error)


def test_problems_inside_the_text_are_located(tmp_path: Path) -> None:
    """Duplicate keys, a wrong alternative of a oneOf, and non-ASCII keys get precise lines."""
    config, problems = problems_in(tmp_path, (
        '{"version": 2,\n'
        ' "workers": [{"type": "container",\n'
        '              "options": {"env": {"inherit": ["HOME", 5]}}}],\n'
        ' "version": 2,\n'
        ' "zähler": 1}\n'
    ))
    lines = [str(problem).removeprefix(f"{config}:") for problem in problems]
    assert lines == [
        "3:55: workers[0].options.env.inherit[1]: wrong type: expected string, got integer 5",
        "4:2: version: duplicate key 'version' (also on line 1; only the last one counts)",
        '5:2: ["zähler"]: unknown key \'zähler\' (allowed: $schema, version, controller, workers)',
    ]


def test_a_router_only_node_is_valid(tmp_path: Path, capsys: Any) -> None:
    """Components can be added later with ``ctl start``: a node needs no container worker."""
    config = tmp_path / "node.json"
    config.write_text(
        '{"version": 2, "workers": [{"type": "router", "realms": [{"name": "realm1"}]}]}',
        encoding="utf-8",
    )
    node = load_node_config(config)
    assert ([w.id for w in node.routers], node.containers) == (["worker001"], [])
    assert check_lines(capsys, str(config)) == (
        0,
        [f"{config}: OK (1 router, 0 containers, 0 components)"],
    )


def test_generated_ids_count_as_duplicates(tmp_path: Path) -> None:
    _, problems = problems_in(tmp_path, (
        '{"version": 2, "workers": [{"type": "container"},'
        ' {"type": "container", "id": "worker001"}]}'
    ))
    assert [p.message for p in problems] == [
        "duplicate worker id 'worker001' (also used by workers[0])"
    ]


def test_worker_ids_are_generated_as_crossbar_does(tmp_path: Path) -> None:
    """Crossbar.io numbers only the workers without an id: the container is worker001."""
    config, problems = problems_in(tmp_path, (
        '{"version": 2, "workers": [{"type": "router", "id": "edge_router"},\n'
        ' {"type": "container"},\n'
        ' {"type": "container", "id": "worker001"}]}'
    ))
    assert [str(p) for p in problems] == [
        f"{config}:3:30: workers[2].id: duplicate worker id 'worker001' (also used by workers[1])"
    ]


def test_component_ids_are_counted_node_wide_as_crossbar_does(tmp_path: Path) -> None:
    """The router's component takes component001, so the container's first is component002
    and the container's explicit component001 clashes with nothing."""
    component = '{"type": "class", "classname": "hello.AppSession", "realm": "realm1"'
    transport = '"transport": {"type": "websocket", "url": "ws://127.0.0.1:8080/ws"}'
    config, problems = problems_in(tmp_path, (
        '{"version": 2, "workers": [\n'
        f' {{"type": "router", "components": [{component}}}]}},\n'
        f' {{"type": "container", "components": [{component}, {transport}}},\n'
        f'   {component}, "id": "component001", {transport}}},\n'
        f'   {component}, "id": "component002", {transport}}}]}}]}}'
    ))
    assert [str(p) for p in problems] == [
        f"{config}:5:80: workers[1].components[2].id: duplicate component id 'component002' "
        "(also used by workers[1].components[0])"
    ]


def test_a_component_id_the_api_would_refuse_is_reported_at_its_value(tmp_path: Path) -> None:
    """``container check`` applies the management API's id rule to configured ids: a '.' or
    a newline (which would forge a line of ``container run``'s output) is found before
    anything runs; ids as Crossbar.io's examples write them pass."""
    component = ('"type": "class", "classname": "hello.AppSession", "realm": "realm1", '
                 '"transport": {"type": "websocket", "url": "ws://127.0.0.1:8080/ws"}')
    config, problems = problems_in(tmp_path, (
        '{"version": 2, "workers": [{"type": "container", "components": [\n'
        f'  {{"id": "backend.1", {component}}},\n'
        f'  {{"id": "c1\\nnode: ready", {component}}},\n'
        f'  {{"id": "backend-1", {component}}}, {{"id": "hello", {component}}}]}}]}}'
    ))
    rule = ("a component id is 1 to 255 characters, with no whitespace, no control characters "
            "and no '.' or '#' (it must be valid as one component of a WAMP URI)")
    assert [str(p) for p in problems] == [
        f"{config}:2:10: workers[0].components[0].id: invalid value \"backend.1\": "
        f"holds '.'; {rule}",
        f"{config}:3:10: workers[0].components[1].id: invalid value \"c1\\nnode: ready\": "
        f"holds a control character (U+000A); {rule}",
    ]


def test_unreadable_file_exits_2(capsys: Any) -> None:
    code, lines = check_lines(capsys, "configs/does-not-exist.json")
    assert code == 2
    assert lines == ["configs/does-not-exist.json: cannot read: No such file or directory"]
    with pytest.raises(ConfigFileUnreadable):
        load_node_config("configs/does-not-exist.json")


def test_worst_result_of_several_files_is_the_exit_code(capsys: Any) -> None:
    code, lines = check_lines(capsys, VALID, "configs/unknown_key.json")
    assert code == 1
    assert lines[0] == f"{VALID}: OK (1 router, 1 container, 2 components)"
    assert lines[-1] == "configs/unknown_key.json: invalid (1 problem)"


def test_valid_config_loads_with_typed_values_and_absolute_paths() -> None:
    """Container paths are made absolute; a router's stay as written, relative to the node
    directory, where Crossbar.io's own worker resolves them."""
    config = load_node_config(VALID)
    here = (TESTS / "configs" / "valid").absolute()
    assert config.path == here / "node.json"
    assert config.config_dir == here
    assert config.controller_id == "testnode"
    assert (config.title, config.management) == ("test node", None)
    [router] = config.routers
    assert (router.id, router.type) == ("router1", "router")
    assert router.config["options"]["pythonpath"] == ["lib"]
    assert router.config["transports"][1]["endpoint"]["path"] == "run/router.sock"
    [container] = config.containers
    assert container.id == "container1"
    assert container.options == {
        "pythonpath": [str(here), str(here / "components")],
        "restart": "restart-failed",
    }
    assert [component["id"] for component in container.components] == ["hello", "component001"]
    unix = container.components[1]["transport"]["endpoint"]
    assert unix["path"] == str(here / "run/router.sock")
    assert config.component_count == 2
    assert config.raw["workers"][1]["options"]["pythonpath"] == [".", "../valid/components"]


def test_management_section_selects_external_router_mode(tmp_path: Path) -> None:
    config = tmp_path / "node.json"
    config.write_text(
        '{"version": 2, "controller": {"management": {'
        '"transport": {"type": "rawsocket", "endpoint": {"type": "unix", "path": "mgmt.sock"}},'
        '"auth": {"ticket": {"authid": "node", "ticket": "s3cret"}}}},'
        '"workers": [{"type": "container"}]}',
        encoding="utf-8",
    )
    node = load_node_config(config)
    assert node.management is not None
    assert node.management.realm == "crossbar"
    assert node.management.transport["endpoint"]["path"] == str(tmp_path / "mgmt.sock")
    assert node.management.auth == {"ticket": {"authid": "node", "ticket": "s3cret"}}
    assert (node.routers, node.containers[0].id) == ([], "worker001")


def test_options_problems_from_container_options_are_placed_under_the_worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The path ``container.options`` reports is relative to the options object."""
    problem = types.SimpleNamespace(path=("restart_backoff", "max"), message="too small")
    monkeypatch.setattr(nodeconfig, "container_options_problems", lambda options: [problem])
    config, problems = problems_in(tmp_path, (
        '{"version": 2, "workers": [{"type": "container",\n'
        '  "options": {"restart_backoff": {"max": 0.1}}}]}'
    ))
    assert [str(p) for p in problems] == [
        f"{config}:2:42: workers[0].options.restart_backoff.max: too small"
    ]


def test_schemas_are_valid_draft_2020_12() -> None:
    validator = node_validator()
    validator.check_schema(load_schema("node.schema.json"))
    validator.check_schema(load_schema("component.schema.json"))


def test_format_key_path() -> None:
    assert format_key_path(()) == "(root)"
    assert format_key_path(("workers", 1, "options", "restart")) == "workers[1].options.restart"
    assert format_key_path(("websocket", "ws/v2")) == 'websocket["ws/v2"]'


@pytest.mark.skipif(
    not (ROOT / "container" / "__main__.py").exists(),
    reason="container/__main__.py (the lead's CLI entry point) does not exist yet",
)
def test_container_check_as_a_real_command() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "container", "check", "configs/unknown_key.json", VALID],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "configs/unknown_key.json:7:17: workers[0].options.restrat: "
        "unknown key 'restrat' (did you mean 'restart'?)",
        "configs/unknown_key.json: invalid (1 problem)",
        f"{VALID}: OK (1 router, 1 container, 2 components)",
    ]


def test_check_refuses_what_run_would_refuse_and_writes_nothing(
    tmp_path: Path, capsys: Any
) -> None:
    """The node's plan refuses a management connection it cannot make (RawSocket over TLS)."""
    config = tmp_path / "node.json"
    config.write_text(
        '{"version": 2, "controller": {"management": {"transport": {"type": "rawsocket",\n'
        ' "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": 8081,\n'
        ' "tls": {"hostname": "localhost"}}}}},\n'
        ' "workers": [{"type": "container", "components": []}]}\n',
        encoding="utf-8",
    )
    code, lines = check_lines(capsys, str(config))
    assert code == 1
    assert lines == [
        f"{config}: controller.management.transport: RawSocket over TLS cannot be used for the "
        "management connection; use a websocket transport with a wss:// url",
        f"{config}: invalid (1 problem)",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.json"]


# ---------------------------------------------------------------------------------------------
# What Crossbar.io accepts passes; what it refuses is refused at the key it is about


@pytest.mark.parametrize("name", CROSSBAR_VALID)
def test_what_crossbar_accepts_passes(name: str, capsys: Any) -> None:
    """Each file of the corpus passes Crossbar.io's own ``check_config`` (asserted here too,
    so the corpus stays truthful as Crossbar.io changes) and therefore ``container check``."""
    from crossbar.personality import Personality

    file = f"configs/crossbar/{name}"
    document = json.loads((TESTS / file).read_text(encoding="utf-8"))
    Personality.check_config(Personality, crossbar_view(document))
    code, lines = check_lines(capsys, file)
    assert (code, len(lines)) == (0, 1), lines
    assert lines[0].startswith(f"{file}: OK (")


def test_the_crossbar_init_template_passes(tmp_path: Path, capsys: Any) -> None:
    """The configuration ``crossbar init`` writes, taken from the installed Crossbar.io."""
    template = resources.files("crossbar") / "node/templates/default/.crossbar/config.json"
    config = tmp_path / ".crossbar" / "config.json"
    config.parent.mkdir()
    with resources.as_file(template) as source:
        shutil.copyfile(source, config)
    code, lines = check_lines(capsys, str(config))
    assert (code, lines) == (0, [f"{config}: OK (1 router, 0 containers, 0 components)"])


def test_proxies_guests_and_components_inside_routers_are_counted(capsys: Any) -> None:
    code, lines = check_lines(capsys, "configs/crossbar/proxy.json", "configs/crossbar/guest.json",
                              "configs/crossbar/router_components.json")
    assert code == 0
    embedded = len(json.loads((TESTS / "configs/crossbar/router_components.json").read_text())
                   ["workers"][0]["components"])
    assert lines == [
        "configs/crossbar/proxy.json: OK (1 router, 1 proxy, 0 containers, 0 components)",
        "configs/crossbar/guest.json: OK (1 router, 0 containers, 2 guests, 0 components)",
        f"configs/crossbar/router_components.json: OK (1 router, {embedded} router "
        f"component{'s' if embedded != 1 else ''}, 0 containers, 0 components)",
    ]


REFUSED = {
    "bad_controller_id.json": '4:9: controller.id: invalid configuration item ID "hello-node" '
    "- must match regular expression ^[a-z][a-z0-9_]{2,63}$",
    "unknown_transport_key.json": "11:21: workers[0].transports[1].serialisers: "
    "encountered unknown attribute 'serialisers' in WebSocket transport configuration",
    "bad_realm_name.json": "8:18: workers[0].realms[1].name: Invalid router realm "
    'configuration: the name "my realm" is not a valid WAMP realm name',
    "bad_permission_match.json": "14:58: workers[0].realms[0].roles[0].permissions[1].match: "
    "invalid value 'regex' for 'match' attribute in role permissions",
    "permission_per_action.json": "14:34: workers[0].realms[0].roles[0].permissions[0].call: "
    "invalid grant in role permissions - encountered unknown attribute 'call'",
    "worker_option_reactor.json": "8:17: workers[0].options.reactor: "
    "encountered unknown attribute 'reactor' in 'options' in worker configuration",
    "router_port_as_string.json": "7:67: workers[0].transports[0].endpoint.port: "
    "listening endpoint configuration - environment variable name '8080' does not match "
    "pattern '^\\$([a-zA-Z_][a-zA-Z0-9_]*)$'",
    "checker_crash.json": "7:17: workers[0].transports[0]: "
    "Crossbar.io's checker failed: KeyError: 'port'",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_crossbar_refuses_is_refused_at_its_key(name: str, capsys: Any) -> None:
    """Crossbar.io's wording, on one line, at the line and column of the key it is about
    (or of the item at fault when it names none).

    Per-action permissions (``"call": true`` beside ``uri``) and the worker option
    ``reactor`` are in this list because Crossbar.io's checker refuses them.
    """
    file = f"configs/refused/{name}"
    assert_single_problem(capsys, file, f"{file}:{REFUSED[name]}")


def test_container_problems_are_reported_beside_crossbars(capsys: Any) -> None:
    """Our schema's findings in container workers and Crossbar.io's elsewhere, one list."""
    file = "configs/refused/with_container_problems.json"
    code, lines = check_lines(capsys, file)
    assert code == 1
    assert lines == [
        f'{file}:3:20: controller.id: invalid configuration item ID "Node1" '
        "- must match regular expression ^[a-z][a-z0-9_]{2,63}$",
        f"{file}:7:36: workers[0].options.restart: invalid value 'restart-sometimes' "
        "(valid: restart-never, restart-always, restart-failed, restart-on-failed)",
        f"{file}:12:25: workers[1].options.stdot: "
        "Guest process configuration - encountered unknown attribute 'stdot'",
        f"{file}:16:28: workers[2].components[0]: missing required key 'transport'",
        f"{file}: invalid (4 problems)",
    ]


def test_the_node_can_leave_crossbars_check_to_its_routers() -> None:
    """``container run`` loads with ``crossbar=False``: its router processes run the check."""
    config = load_node_config("configs/refused/bad_controller_id.json", crossbar=False)
    assert config.controller_id == "hello-node"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (RuntimeError("boom"), "Crossbar.io's checker failed: RuntimeError: boom"),
        (
            ModuleNotFoundError("No module named 'crossbar'"),
            "Crossbar.io's checker is not available (No module named 'crossbar'): "
            "install wamp-container[router]",
        ),
    ],
)
def test_a_failing_crossbar_checker_is_one_problem_at_the_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception, message: str
) -> None:
    def failing(document: dict[str, Any]) -> list[Any]:
        raise error

    monkeypatch.setattr(nodeconfig, "crossbar_findings", failing)
    config, problems = problems_in(tmp_path, '{"version": 2, "workers": [{"type": "router"}]}')
    assert [str(p) for p in problems] == [f"{config}:1:1: (root): {message}"]


def test_crossbar_is_shown_everything_but_our_container_workers_and_management() -> None:
    document = {
        "version": 2,
        "controller": {"id": "node1", "management": {"transport": {}}},
        "workers": [{"type": "container"}, {"type": "router", "id": "r1"}, {"type": "guest"}],
    }
    view = crossbar_view(document)
    assert view == {
        "version": 2,
        "controller": {"id": "node1"},
        "workers": [{"type": "router", "id": "r1"}, {"type": "guest"}],
    }
    assert document["controller"]["management"] == {"transport": {}}
    assert len(document["workers"]) == 3


def test_loading_a_configuration_module_does_not_import_crossbar() -> None:
    """The node imports these modules; Crossbar.io (seconds to import) only when checking."""
    code = (
        "import sys, container.node.config, container.router.check; "
        "sys.exit('crossbar' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
