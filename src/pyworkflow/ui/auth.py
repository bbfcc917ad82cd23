"""Who may use the UI: the session cookie, the CSRF value of forms, the guard of every page.

- No API token configured: the UI is open (the server then binds loopback only).
- A token configured: every page but ``/ui/login`` and ``/ui/static/*`` needs the
  session cookie ``pyworkflow_ui``, whose value is ``HMAC-SHA256(key=token,
  msg=b"pyworkflow-ui-session")`` in hex (HttpOnly, SameSite=Strict, Path=/ui).
  Without it a GET is redirected (303) to ``/ui/login?next=<path>``, a POST is 403.
- Every POST carries a form field ``csrf`` = ``HMAC(token or a per-process random
  key, b"pyworkflow-ui-csrf")``; a POST without the right one is 403. The login
  form has its own value (:func:`login_csrf_value`), so a visitor who is not
  signed in never sees the value that the signed-in forms use.

The token itself never appears in a page, a log line or a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, quote, urlsplit

import attrs
from loguru import logger
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from pyworkflow.errors import ConfigError
from pyworkflow.server.options import ServerOptions

__all__ = [
    "COOKIE_NAME",
    "CSRF_FIELD",
    "FORM_TYPE",
    "UiAuth",
    "check_csrf",
    "csrf_value",
    "form_of",
    "guard",
    "login_csrf_value",
    "prepare",
    "safe_next",
    "session_cookie_headers",
    "session_value",
    "signed_in",
]

#: The session cookie's name.
COOKIE_NAME = "pyworkflow_ui"
#: The hidden form field every POST form carries.
CSRF_FIELD = "csrf"
#: The only body type UI forms post (the browser's default ``enctype``).
FORM_TYPE = "application/x-www-form-urlencoded"

_SESSION_MESSAGE = b"pyworkflow-ui-session"
_CSRF_MESSAGE = b"pyworkflow-ui-csrf"
_LOGIN_CSRF_MESSAGE = b"pyworkflow-ui-login-csrf"
#: The CSRF key when no token is configured (forms of another process do not validate here).
_PROCESS_KEY = secrets.token_bytes(32)
#: Largest form body a UI POST may send when the server's ``max_body_bytes`` is larger.
MAX_FORM_BYTES = 1024 * 1024
#: Most fields a UI form may post.
MAX_FORM_FIELDS = 1000

Handler = Callable[[Request], Awaitable[Response]]
Options = Callable[[], ServerOptions]

_log = logger.bind(component="ui")


def _hmac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def session_value(token: str) -> str:
    """The session cookie's value for ``token``: HMAC-SHA256 of a fixed message, hex."""
    return _hmac(token.encode(), _SESSION_MESSAGE)


def csrf_value(token: str | None) -> str:
    """The ``csrf`` field of signed-in forms (any form when no token is configured)."""
    key = token.encode() if token is not None else _PROCESS_KEY
    return _hmac(key, _CSRF_MESSAGE)


def login_csrf_value(token: str | None) -> str:
    """The ``csrf`` field of the login form (not valid for any other form)."""
    key = token.encode() if token is not None else _PROCESS_KEY
    return _hmac(key, _LOGIN_CSRF_MESSAGE)


def signed_in(request: Request, token: str | None) -> bool:
    """Whether ``request`` may see the UI: no token configured, or a valid session cookie."""
    if token is None:
        return True
    cookie = request.cookies.get(COOKIE_NAME, "")
    return hmac.compare_digest(cookie.encode("utf-8", "replace"), session_value(token).encode())


@attrs.frozen
class UiAuth:
    """What :func:`render` needs to know about the request's session (``request.state.ui``)."""

    auth_on: bool
    signed_in: bool
    csrf: str


def prepare(request: Request, options: ServerOptions) -> UiAuth:
    """Compute and store (``request.state.ui``) the request's :class:`UiAuth`."""
    token = options.api_token
    inside = signed_in(request, token)
    state = UiAuth(
        auth_on=token is not None,
        signed_in=inside,
        csrf=csrf_value(token) if inside else login_csrf_value(token),
    )
    request.state.ui = state
    return state


def root_path(request: Request) -> str:
    """The prefix the app is mounted under (``""`` when served at the root)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def safe_next(value: str | None) -> str:
    """``value`` if it is a path of the UI on this server, else ``/ui/runs`` (no open redirect)."""
    if not value or not value.startswith("/ui") or value.startswith(("//", "/\\")):
        return "/ui/runs"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value or any(ord(c) < 0x20 for c in value):
        return "/ui/runs"
    if parts.path != "/ui" and not parts.path.startswith("/ui/"):
        return "/ui/runs"
    return value


def session_cookie_headers(request: Request, value: str | None) -> Response:
    """A 303 to ``/ui/runs`` (set) or ``/ui/login`` (cleared) that sets or clears the cookie."""
    root = root_path(request)
    if value is None:
        response: Response = RedirectResponse(f"{root}/ui/login", status_code=303)
        response.delete_cookie(COOKIE_NAME, path=f"{root}/ui", httponly=True, samesite="strict")
        return response
    target = safe_next(request.query_params.get("next"))
    response = RedirectResponse(f"{root}{target}", status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        value,
        path=f"{root}/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def read_form(request: Request, options: ServerOptions) -> dict[str, str] | Response:
    """The request's urlencoded form as ``{name: last value}``, or the 4xx response refusing it.

    Another body type is 403 (it cannot carry the csrf field), a body past the
    size limit 413, a body that is not UTF-8 urlencoding 400.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM_TYPE:  # no urlencoded body, no csrf field: refused like a wrong csrf
        return forbidden(f"forms must be posted as {FORM_TYPE} with their csrf field")
    limit = min(options.max_body_bytes, MAX_FORM_BYTES)
    size = request.headers.get("content-length")
    if size is not None and (not size.isdigit() or int(size) > limit):
        return PlainTextResponse(f"form body larger than {limit} bytes", status_code=413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return PlainTextResponse(f"form body larger than {limit} bytes", status_code=413)
    # Parsed here (starlette's .form() needs python-multipart, not a dependency of ours).
    try:
        text = bytes(body).decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        return PlainTextResponse(f"malformed form body: {type(exc).__name__}", status_code=400)
    return dict(pairs)


def form_of(request: Request) -> dict[str, str]:
    """The form :func:`guard` read for this POST (``{}`` outside a guarded POST)."""
    form = getattr(request.state, "form", None)
    return form if isinstance(form, dict) else {}


def check_csrf(form: dict[str, str], expected: str) -> bool:
    """Whether ``form`` carries the ``csrf`` value ``expected`` (constant-time comparison)."""
    given = form.get(CSRF_FIELD, "")
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def forbidden(message: str) -> Response:
    """The 403 page of a refused POST (plain text: nothing of the request is echoed)."""
    return PlainTextResponse(message, status_code=403)


def misconfigured(exc: ConfigError) -> Response:
    """The 500 page when the server's options cannot be read."""
    _log.bind(error=str(exc)).error("UI request refused: server misconfigured")
    return HTMLResponse(
        "<!doctype html><title>Server misconfigured</title><p>The server is misconfigured; "
        "see its log.</p>",
        status_code=500,
    )


def guard(handler: Handler, options: Options) -> Handler:
    """``handler`` behind the UI's rules: sign-in (GET 303 to the login page, POST 403), csrf.

    For a POST the urlencoded form is read (415/413/400 when it cannot be) and
    its ``csrf`` checked before ``handler`` runs; the handler reads it from
    ``request.state.form`` (a ``dict[str, str]``, the last value of each name;
    :func:`form_of`), not with ``await request.form()`` (which would need
    python-multipart and the consumed body). ``request.state.ui`` holds the :class:`UiAuth`
    that :func:`pyworkflow.ui.app.render` uses.
    """

    async def guarded(request: Request) -> Response:
        try:
            opts = options()
        except ConfigError as exc:
            return misconfigured(exc)
        state = prepare(request, opts)
        if not state.signed_in:
            if request.method in ("GET", "HEAD"):
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                root = root_path(request)
                if target.startswith(root):
                    target = target[len(root) :]
                login = f"{root}/ui/login?next={quote(target, safe='')}"
                return RedirectResponse(login, status_code=303)
            return forbidden("sign in first: this form needs a session")
        if request.method == "POST":
            form = await read_form(request, opts)
            if isinstance(form, Response):
                return form
            if not check_csrf(form, state.csrf):
                _log.bind(path=request.url.path).info("UI POST refused: missing or wrong csrf")
                return forbidden("missing or wrong csrf field: reload the page and try again")
            request.state.form = form
        return await handler(request)

    return guarded
