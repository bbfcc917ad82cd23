"""The built-in plugins: memory, SQLite and File storage, the local executor, the serializers."""

from __future__ import annotations
