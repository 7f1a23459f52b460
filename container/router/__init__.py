"""The router tier: Crossbar.io's own router and proxy workers, hosted one per process.

Nothing here re-implements Crossbar.io. A router (or proxy) worker of a node configuration
runs in a child process of the node (``python -m container.router WORKER.json``) as
Crossbar.io's own worker controller class (``RouterController``, ``ProxyController``), joined
in-process to a small node-management router of Crossbar.io's, and configured through its own
procedures (``start_router_realm``, ``start_router_transport``, ...) by Crossbar.io's own node
code (``Node._configure_native_worker_router`` / ``_proxy``), so the order and the defaults are
exactly those of ``crossbar start``. What is ours:

* :mod:`container.router.listeners` binds a worker's listening endpoints in the node before
  the child exists (no Crossbar.io import), so clients queue in the accept backlog while the
  child imports Crossbar.io, and a port in use is reported before anything starts;
* :mod:`container.router.host` is the stand-in for Crossbar.io's node controller inside the
  child: the node key and the few ``crossbar.*`` procedures a worker calls on its node;
* :mod:`container.router.check` runs Crossbar.io's configuration checker on a node
  configuration (everything but our container workers, which our own schema checks);
* :mod:`container.router.main` is the child's command line and its ``ready`` line.

Only this package imports crossbar, and only when a child or a check needs it.
"""
