"""What the tests share, and only that: no test module imports another test module.

- ``paths``: where the project, the test apps and the example configurations are.
- ``ports``: the one ``free_port`` and the one ``port_is_free``.
- ``processes``: the one helper for child processes (spawned on the reactor, or a ``Popen``
  stopped by pid), and the tracker the fixtures stop them with.
- ``routerproc``: a Crossbar.io router process (``python -m container.router``) and
  ``Routers``, the tracker behind the ``router`` and ``routers`` fixtures.
- ``router``: the shared test router's configuration, credentials and addresses.
- ``workers``: container workers in the test process, each with a management client.
- ``wampclient``: a WAMP client that joins over a real socket, calls and awaits events.
- ``node``: ``container run`` as a child process, and the hello example's configuration.
- ``features``: the Crossbar.io feature corpus on free ports, its WAMP and HTTP clients.
- ``sessions``: the session-run tests' fakes (a component spec, owner, log, session) and
  ``Harness``, a session run on a ``task.Clock`` with a transport the test closes.
- ``fake_reactor``: a ``task.Clock`` that spawns fake processes, for the node's supervision.
"""
