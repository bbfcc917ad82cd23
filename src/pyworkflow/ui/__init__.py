"""The web UI that ``pyworkflow serve`` serves at ``/ui`` (docs/ui.md).

Pages rendered on the server with Jinja2, a small script of our own
(``static/ui.js``) for live updates; no CDN, no Node build: everything is in
the package and works offline. The UI is gated by the server's API token.
"""

from __future__ import annotations

from pyworkflow.ui.app import ui_routes

__all__ = ["ui_routes"]
