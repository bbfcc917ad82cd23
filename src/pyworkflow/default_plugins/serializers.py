"""Built-in plugin providing the ``json`` (default) and ``pickle`` serializers."""

from __future__ import annotations

from pyworkflow.hookspecs import SerializerRegister, hookimpl
from pyworkflow.serialization import JsonSerializer, PickleSerializer


@hookimpl
def pyworkflow_register_serializers(register: SerializerRegister) -> None:
    """Provide ``json`` (the default) and ``pickle`` through the plugin hook."""
    register("json", JsonSerializer())
    register("pickle", PickleSerializer())
