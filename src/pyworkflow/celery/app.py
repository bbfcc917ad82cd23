"""Alias of :mod:`pyworkflow_celery.app` (``celery -A pyworkflow.celery.app worker``)."""

from __future__ import annotations

from typing import Any

try:
    from pyworkflow_celery.app import app as _app
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "pyworkflow.celery needs the Celery plugin: pip install pyworkflow-celery "
        f"(or ./plugins/pyworkflow-celery in a checkout); import failed with: {exc}"
    ) from exc

app: Any = _app
celery = app

__all__ = ["app", "celery"]
