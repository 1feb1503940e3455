"""The review app's guards: the access token, security headers, form tokens (CSRF) and form parsing."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Awaitable, Callable
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from pinlanding.collections.http import read_body

TOKEN_COOKIE, REVIEWER_COOKIE = "pl_review_token", "pl_reviewer"
MAX_FORM_BYTES = 16_384
MIN_TOKEN_CHARS = 16  # a shorter token is guessable
HEADERS = {"Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
                                      "frame-ancestors 'none'; base-uri 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}

Middleware = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


def token_guard(token: str | None) -> Middleware:
    """HTTP middleware: without ``token`` (loopback) every request passes; with it, a request must offer it (cookie,
    ``?token=``, or ``Authorization: Bearer``), and ``?token=`` sets the cookie. Every response gets :data:`HEADERS`."""
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if token is not None:
            offered = request.cookies.get(TOKEN_COOKIE) or request.query_params.get("token") or ""
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                offered = auth[7:]
            if not hmac.compare_digest(offered.encode(), token.encode()):
                return _headers(HTMLResponse("<h1>401</h1><p>This review app needs its token: open it with "
                                             "?token=... once.</p>", status_code=401))
        response = await call_next(request)
        if token is not None and request.query_params.get("token") == token:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return _headers(response)

    return guard


def _headers(response: Response) -> Response:
    for k, v in HEADERS.items():
        response.headers.setdefault(k, v)
    return response


class Refused(Exception):
    """A post the app does not act on; ``response`` says why (the app returns it: :func:`refused`)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def refused(request: Request, exc: Refused) -> Response:
    """The app's handler of :class:`Refused`."""
    return exc.response


def new_form_token() -> str:
    """A form (CSRF) token for one app instance: every form carries it and every post must return it."""
    return hmac.new(secrets.token_bytes(32), b"csrf", hashlib.sha256).hexdigest()


async def checked_form(request: Request, form_token: str) -> dict[str, str]:
    """The posted form; :class:`Refused` (403) when it is not a small urlencoded form carrying ``form_token``."""
    form = await read_form(request)
    if form is None or not hmac.compare_digest(form.get("csrf_token", ""), form_token):
        raise Refused(Response("bad form or form token; reload the page", status_code=403, media_type="text/plain"))
    return form


async def read_form(request: Request) -> dict[str, str] | None:
    """A small urlencoded form body as {field: first value}; None for anything else.

    Parsed with the standard library instead of adding python-multipart: these forms never upload files.
    A body over ``MAX_FORM_BYTES`` is refused (413) from its Content-Length, or while it streams in,
    before it is held in memory.
    """
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    body = await read_body(request, MAX_FORM_BYTES, "form body")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in fields.items()}


def safe_back(back: str) -> str:
    """A local path to return to after a form (never another site)."""
    return back if back.startswith("/") and not back.startswith("//") and "\\" not in back else "/"
