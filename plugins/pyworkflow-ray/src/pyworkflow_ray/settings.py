"""``[tool.pyworkflow.ray]``: the Ray executor's options."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from pyworkflow.config import Settings
from pyworkflow.plugin_options import (
    option_bool,
    option_seconds,
    option_text,
    parse_plugin_table,
)

__all__ = ["RaySettings"]


def option_address(value: Any) -> str:
    """A Ray address: ``""`` (start a local Ray), ``"auto"``, ``host:port`` or ``ray://host:port``."""
    if not isinstance(value, str):
        raise TypeError('a string: "" (start a local Ray), "auto", or "ray://host:port"')
    return value.strip()


def option_runtime_env(value: Any) -> dict[str, Any]:
    """A table (or a JSON object, as ``PYWORKFLOW_RAY__RUNTIME_ENV`` sets it)."""
    expected = "a table (or a JSON object) of Ray runtime_env fields"
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except ValueError:
            raise TypeError(expected) from None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise TypeError(expected)
    return dict(value)


@attrs.frozen(kw_only=True)
class RaySettings:
    """Options of the Ray executor, from ``[tool.pyworkflow.ray]``.

    Every option can also come from ``PYWORKFLOW_RAY__<OPTION>`` or
    ``configure(ray={...})``.
    """

    #: Where the Ray cluster is: ``""`` starts a local Ray inside this process
    #: (it ends with the process), ``"auto"`` joins the cluster ``ray start``
    #: made on this machine, ``"ray://host:port"`` connects through Ray Client.
    address: str = ""
    #: Ray namespace of the connection (``None``: Ray's anonymous one).
    namespace: str | None = None
    #: Passed to Ray as the ``runtime_env`` of every step task (``pip``,
    #: ``working_dir``, ``env_vars``...); PyWorkflow adds its own ``env_vars``.
    runtime_env: Mapping[str, Any] = attrs.field(factory=dict)
    #: Seconds a dispatched step may wait for a Ray worker (resources) before it
    #: is dispatched again; a step whose worker died is dispatched again once its
    #: lease (``lease_seconds``) runs out.
    dispatch_timeout: float = 300.0
    #: Whether the storage URL goes to the Ray workers in the tasks' ``runtime_env``
    #: (``PYWORKFLOW_STORAGE``; dispatched steps record themselves). Ray shows a
    #: task's ``runtime_env`` in its dashboard and state API: with a password in
    #: the URL, set this to false and give the Ray nodes ``PYWORKFLOW_STORAGE``
    #: themselves (a Kubernetes Secret, as ``deploy/k8s/ray`` does).
    forward_storage: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> RaySettings:
        """Parse the ``ray`` plugin table; a bad key or value is a ConfigError naming it."""
        values = parse_plugin_table(
            settings,
            "ray",
            {
                "address": option_address,
                "namespace": _option_namespace,
                "runtime_env": option_runtime_env,
                "dispatch_timeout": option_seconds,
                "forward_storage": option_bool,
            },
        )
        return cls(**values)


def _option_namespace(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return option_text(value)
