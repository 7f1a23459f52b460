"""wamp-container: a WAMP component container worker on autobahn, Twisted and Crossbar.io."""

__version__ = "0.1.0"
