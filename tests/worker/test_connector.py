"""The connector's one serializer table covers every name a configuration may give."""

from __future__ import annotations

from container import connector
from container.transports import COMPONENT_SERIALIZERS, DEFAULT_SERIALIZERS


def test_the_serializer_table_has_every_name_a_configuration_accepts() -> None:
    assert tuple(connector.SERIALIZERS) == COMPONENT_SERIALIZERS
    for name in DEFAULT_SERIALIZERS:  # always installed with autobahn[serialization]
        serializer = connector.SERIALIZERS[name]
        assert serializer is not None and name == serializer().SERIALIZER_ID
