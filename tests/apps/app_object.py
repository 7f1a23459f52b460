"""autobahn's decorator API, ``autobahn.twisted.wamp.Application``, as in
examples/twisted/wamp/app/hello/hello.py (with ``return`` for Twisted's deprecated
``returnValue``)."""

from autobahn.twisted.wamp import Application
from twisted.internet.defer import inlineCallbacks

app = Application("com.test.app_object")


@app.register()
def add2(a, b):
    return a + b


@app.register("com.test.app_object.hello")
@inlineCallbacks
def hello():
    res = yield app.session.call("com.test.app_object.add2", 2, 3)
    return f"Hello {res}"
