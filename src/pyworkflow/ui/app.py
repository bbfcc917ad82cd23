"""Routes of the UI: the shell, login, list pages; the run page's come from ``run_page``.

:func:`render` is the one way a page is answered: Jinja2 templates from the
package (autoescape on), the session's ``csrf``/``auth_on``/``signed_in`` in the
context, security headers (a Content-Security-Policy that allows our own
script and stylesheet only: no inline ``<script>``, no ``on*=`` attributes;
inline ``style=""`` attributes are allowed, the timeline positions bars with
them), and a body that always encodes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import quote, unquote

import jinja2
from loguru import logger
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from pyworkflow.errors import ConfigError
from pyworkflow.server.options import ServerOptions
from pyworkflow.server.wire import replace_lone_surrogates
from pyworkflow.ui import auth
from pyworkflow.ui.run_page import run_routes

__all__ = [
    "FLASH_COOKIE",
    "SECURITY_HEADERS",
    "environment",
    "flash",
    "fragment_etag",
    "render",
    "render_fragment",
    "static_url",
    "ui_routes",
]

#: The cookie carrying a one-shot message to the next page (see :func:`flash`).
FLASH_COOKIE = "pyworkflow_ui_flash"
#: Headers of every rendered page.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
#: The sections of the navigation: ``(nav key, label, path)``.
SECTIONS = (
    ("runs", "Runs", "/ui/runs"),
    ("workflows", "Workflows", "/ui/workflows"),
    ("schedules", "Schedules", "/ui/schedules"),
    ("queues", "Queues", "/ui/queues"),
)

_log = logger.bind(component="ui")


# ----- templates -----


@functools.cache
def _static_version(name: str) -> str:
    """A short hash of a static file's content (cache busting: ``?v=...``)."""
    try:
        data = resources.files("pyworkflow.ui").joinpath("static", name).read_bytes()
    except (FileNotFoundError, OSError):
        return "0"
    return hashlib.sha256(data).hexdigest()[:12]


def static_url(name: str, root: str = "") -> str:
    """The URL of ``static/<name>`` with a content hash, under the app's ``root`` path."""
    return f"{root}/ui/static/{quote(name)}?v={_static_version(name)}"


def _when(moment: datetime | None) -> str:
    """A UTC time to the second (``2026-11-29 00:50:10``), or an empty string."""
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _segment(value: object) -> str:
    return quote(str(value), safe="")


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja2 environment of the package's templates (autoescape always on).

    Filters: ``when`` (a datetime as ``YYYY-MM-DD HH:MM:SS`` UTC), ``iso`` and
    ``segment`` (a value quoted as one URL path segment: ``/ui/runs/{{ id |
    segment }}``). Globals: ``static(name, root)``, ``fragment_etag(value)``
    and ``sections``.
    """
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pyworkflow.ui", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.Undefined,
    )
    env.filters["when"] = _when
    env.filters["iso"] = _iso
    env.filters["segment"] = _segment
    env.globals["static"] = static_url
    env.globals["fragment_etag"] = fragment_etag
    env.globals["sections"] = SECTIONS
    return env


def _section(path: str) -> str:
    for key, _label, prefix in SECTIONS:
        if path == prefix or path.startswith(prefix + "/"):
            return key
    return ""


def _encode(html: str) -> bytes:
    try:
        return html.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate stored through the Python API
        return replace_lone_surrogates(html).encode("utf-8")


def _state(request: Request) -> auth.UiAuth:
    state = getattr(request.state, "ui", None)
    if isinstance(state, auth.UiAuth):
        return state
    # A page outside guard(): no session known; forms on it will not validate.
    return auth.UiAuth(auth_on=True, signed_in=False, csrf="")


def _take_flash(request: Request) -> tuple[str | None, str]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None, "ok"
    kind, _, message = unquote(raw).partition(":")
    return message[:500] or None, "error" if kind == "error" else "ok"


def render(
    request: Request,
    template_name: str,
    context: Mapping[str, Any] | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The page ``template_name`` rendered with ``context`` plus the shell's variables.

    Added to the context (a key given in ``context`` wins): ``request``,
    ``csrf`` (the value for hidden ``csrf`` inputs), ``auth_on``,
    ``signed_in``, ``nav`` (the current section: runs, workflows, schedules,
    queues), ``root`` (the mount prefix, ``""`` at the root: write links as
    ``{{ root }}/ui/runs``), ``path`` (the request's path and query) and
    ``flash``/``flash_kind`` (the message :func:`flash` left for this page,
    shown by base.html in ``data-testid="flash"``; it is consumed here).
    """
    state = _state(request)
    root = auth.root_path(request)
    path = request.url.path[len(root) :] if request.url.path.startswith(root) else request.url.path
    message, kind = _take_flash(request)
    full: dict[str, Any] = {
        "request": request,
        "csrf": state.csrf,
        "auth_on": state.auth_on,
        "signed_in": state.signed_in,
        "nav": _section(path),
        "root": root,
        "path": path + (f"?{request.url.query}" if request.url.query else ""),
        "flash": message,
        "flash_kind": kind,
    }
    full.update(context or {})
    html = environment().get_template(template_name).render(full)
    response = HTMLResponse(_encode(html), status_code=status_code)
    for name, value in {**SECURITY_HEADERS, "Cache-Control": "no-store", **(headers or {})}.items():
        response.headers[name] = value
    if message is not None:
        response.delete_cookie(FLASH_COOKIE, path=f"{root}/ui", samesite="strict")
    return response


def fragment_etag(value: str) -> str:
    """The quoted ETag of a live fragment whose state is described by ``value``."""
    return '"' + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32] + '"'


def render_fragment(
    request: Request,
    template_name: str,
    context: Mapping[str, Any],
    etag: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A live fragment (``X-Fragment`` requests of ui.js) with its ETag; 304 if unchanged.

    ``etag`` is a value that changes whenever the fragment would (it is hashed
    and quoted here, as :func:`fragment_etag` does: give the page's live
    element ``data-live-etag="{{ fragment_etag(value) }}"`` so the first poll
    can be a 304). ``headers`` are added (``X-Live-Final: 1`` stops the
    polling). The flash message is not consumed.
    """
    tag = fragment_etag(etag)
    base = {"ETag": tag, "Cache-Control": "no-cache", "Vary": "X-Fragment", **(headers or {})}
    given = request.headers.get("if-none-match", "")
    if any(hmac.compare_digest(t.strip(), tag) for t in given.split(",") if t.strip()):
        return Response(status_code=304, headers=base)
    state = _state(request)
    full: dict[str, Any] = {
        "request": request,
        "csrf": state.csrf,
        "auth_on": state.auth_on,
        "signed_in": state.signed_in,
        "root": auth.root_path(request),
    }
    full.update(context)
    html = environment().get_template(template_name).render(full)
    response = HTMLResponse(_encode(html))
    for name, value in {**SECURITY_HEADERS, **base}.items():
        response.headers[name] = value
    return response


def flash(response: Response, message: str, kind: str = "ok", *, root: str = "") -> Response:
    """Leave ``message`` for the next page rendered (``kind``: ``ok`` or ``error``).

    Use on the 303 that follows an action: ``flash(RedirectResponse(...),
    "Run cancelled")``. The next :func:`render` shows it in
    ``data-testid="flash"`` and clears it.
    """
    value = quote(f"{'error' if kind == 'error' else 'ok'}:{message[:500]}", safe="")
    response.set_cookie(
        FLASH_COOKIE, value, path=f"{root}/ui", httponly=True, samesite="strict", max_age=60
    )
    return response


# ----- shell routes -----


def _login_routes(options: Callable[[], ServerOptions]) -> list[BaseRoute]:
    async def login(request: Request) -> Response:
        try:
            opts = options()
        except ConfigError as exc:
            return auth.misconfigured(exc)
        root = auth.root_path(request)
        target = auth.safe_next(request.query_params.get("next"))
        state = auth.prepare(request, opts)
        if not state.auth_on or state.signed_in:
            return RedirectResponse(f"{root}{target}", status_code=303)
        context = {"next": target, "error": None}
        if request.method == "GET":
            return render(request, "login.html", context)
        form = await auth.read_form(request, opts)
        if isinstance(form, Response):
            return form
        if not auth.check_csrf(form, state.csrf):
            return auth.forbidden("missing or wrong csrf field: reload the page and try again")
        token = opts.api_token
        assert token is not None
        given = form.get("token", "").strip()
        if not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode()):
            _log.bind(client=request.client.host if request.client else None).info(
                "UI sign-in refused: wrong token"
            )
            return render(request, "login.html", {**context, "error": "Wrong token"}, 401)
        _log.info("UI sign-in")
        return auth.session_cookie_headers(request, auth.session_value(token))

    async def logout(request: Request) -> Response:
        return auth.session_cookie_headers(request, None)

    async def to_runs(request: Request) -> Response:
        return RedirectResponse(f"{auth.root_path(request)}/ui/runs", status_code=303)

    return [
        Route("/", to_runs, methods=["GET", "HEAD"]),
        Route("/ui", to_runs, methods=["GET", "HEAD"]),
        Route("/ui/", to_runs, methods=["GET", "HEAD"]),
        Route("/ui/login", login, methods=["GET", "HEAD", "POST"]),
        Route("/ui/logout", auth.guard(logout, options), methods=["POST"]),
        Mount("/ui/static", app=StaticFiles(packages=[("pyworkflow.ui", "static")])),
    ]


async def _not_found(request: Request) -> Response:
    return render(request, "not_found.html", {}, status_code=404)


def ui_routes(options: Callable[[], ServerOptions]) -> list[BaseRoute]:
    """Every route of the UI (``/``, ``/ui/...``); ``options()`` gives the server's options.

    The last one answers any other ``/ui/...`` path with a 404 page (behind
    the same sign-in rules).
    """
    from pyworkflow.ui.lists import list_routes

    return [
        *_login_routes(options),
        *list_routes(options),
        *run_routes(options),
        Route("/ui/{rest:path}", auth.guard(_not_found, options), methods=["GET", "HEAD", "POST"]),
    ]
