"""Every shape a ``class`` component's ``classname`` may name builds a supervised session."""

from __future__ import annotations

import pytest
from autobahn.twisted.wamp import Session
from autobahn.wamp.types import ComponentConfig

from container.worker.builders import session_builder


@pytest.mark.parametrize("name", ["published.Greeter", "component_object.component",
                                  "app_object.app"])
def test_every_hosted_shape_builds_a_supervised_session(name):
    from container.worker.loader import load_class_component
    from container.worker.session import SupervisedSession

    built = session_builder(load_class_component(name))(ComponentConfig(realm="realm1"))
    assert isinstance(built, SupervisedSession)


def test_a_session_factory_that_is_a_function_is_wrapped_too():
    from autobahn.twisted.component import Component

    from container.worker.session import SupervisedSession

    component = Component(session_factory=lambda config: Session(config))
    built = session_builder(component)(ComponentConfig(realm="realm1"))
    assert isinstance(built, SupervisedSession) and isinstance(built, Session)
    assert built._parent is component
