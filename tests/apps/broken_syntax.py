from autobahn.twisted.wamp import ApplicationSession


class Broken(ApplicationSession)
    pass
