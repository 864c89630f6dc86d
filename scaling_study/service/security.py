"""Who may talk to the service, and from where.

- Bound to loopback (the default), only loopback host names are served: a page on another site
  whose name an attacker points at 127.0.0.1 (DNS rebinding) is refused by its Host header.
- Bound to any other interface, a token is required (the service refuses to start without one)
  and every request carries it: `Authorization: Bearer TOKEN`, or the cookie the service sets
  when a browser first opens a page with `?token=TOKEN` (HttpOnly, SameSite=Strict).
- A state-changing request (any method but GET, HEAD and OPTIONS) must carry the header
  `X-Scaling-Study: 1`, which a cross-site form cannot send and a cross-site script cannot send
  without a CORS preflight that this service never grants; an `Origin` other than the service's
  own, or `Sec-Fetch-Site: cross-site`, is refused as well.
- Every answer, refusals included, carries `SECURITY_HEADERS` (no framing, no MIME sniffing, no
  referrer, a Content-Security-Policy that allows only this origin's own scripts); the API's
  answers are never cached (`Cache-Control: no-store`).
- The token trade (`?token=`) redirects only to a path of this service, never to another site.
- Served beyond loopback, answers never show a server path: a `Redactor` rewrites every answer's
  body (reports name their sources, exports their files) to name each results root by its last
  folder name and the project's files relative to the project.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from scaling_study.errors import UserError

CSRF_HEADER = "x-scaling-study"
TOKEN_COOKIE = "scaling_study_token"
TOKEN_ENV = "SCALING_STUDY_TOKEN"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSP = ("default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
"""Pages run only this origin's scripts (plotly.js from the installed package, `static/app.js`);
plotly sets inline styles, hence 'unsafe-inline' for styles only; no page may be framed.
'unsafe-eval': plotly's WebGL traces (the parallel coordinates) build their shader code with
`new Function` (regl), and without it the chart fails to draw; no inline or foreign script runs.
(plotly.js also comes as an eval-free "strict" build, which the Python package does not ship.)"""
SANDBOX_CSP = ("sandbox allow-scripts allow-downloads; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
               "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; frame-ancestors 'none'")
"""The static dashboard inlines plotly.js and its figures: its scripts run, but in a sandbox, an
origin of its own that can neither read the service nor send its cookie (set this header on it)."""
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
API_PREFIX = "/api/"
NO_STORE = {"cache-control": "no-store"}
"""On every API answer: a token-protected study must not stay in a shared or disk cache."""


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 with or without brackets) is this machine only."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """UserError unless binding `host` is allowed: loopback, or any interface with a token."""
    if not is_loopback(host) and not token:
        raise UserError(f"--host {host}: serving beyond this machine needs a token; give --token TOKEN or set "
                        f"${TOKEN_ENV} (clients then send `Authorization: Bearer TOKEN`, or open ?token=TOKEN once)")
    if token is not None and len(token) < 16:
        raise UserError("--token: use at least 16 characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)")


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _host_name(host_header: str) -> str:
    return urlsplit(f"//{host_header}").hostname or ""


class Guard:
    """ASGI middleware enforcing the rules in the module docstring."""

    def __init__(self, app, *, token: str | None, loopback_only: bool, redact: "Redactor | None" = None):
        self.app, self.token, self.loopback_only, self.redact = app, token, loopback_only, redact

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _with_headers(send, scope["path"].startswith(API_PREFIX))
        if self.redact is not None:
            send = self.redact.wrap(send)
        headers = _headers(scope)
        problem = self._host(headers) or self._csrf(scope, headers)
        if problem:
            return await _deny(send, 403, problem)
        if self.token is not None:
            if self._query_token(scope) and scope["method"] == "GET":
                return await self._adopt_token(scope, send)
            if not self._authorised(headers):
                return await _deny(send, 401, "a token is required: send `Authorization: Bearer TOKEN`, "
                                              "or open any page once with ?token=TOKEN")
        return await self.app(scope, receive, send)

    def _host(self, headers) -> str | None:
        if self.loopback_only and not is_loopback(_host_name(headers.get("host", ""))):
            return f"host {headers.get('host', '')!r} is not this machine; the service answers only on loopback"
        return None

    def _csrf(self, scope, headers) -> str | None:
        if scope["method"] in _SAFE_METHODS:
            return None
        if headers.get(CSRF_HEADER) != "1":
            return f"a state-changing request needs the header {CSRF_HEADER.title()}: 1"
        origin = headers.get("origin")
        if origin and urlsplit(origin).netloc != headers.get("host", ""):
            return f"origin {origin!r} is not this service"
        if headers.get("sec-fetch-site") == "cross-site":
            return "cross-site requests are refused"
        return None

    def _query_token(self, scope) -> str | None:
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        return query.get("token")

    def _authorised(self, headers) -> bool:
        given = None
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        elif "cookie" in headers:
            cookie = SimpleCookie()
            try:
                cookie.load(headers["cookie"])
            except Exception:  # a malformed cookie header is no token
                return False
            given = cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else None
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    async def _adopt_token(self, scope, send):
        """A browser's first visit with ?token=: set the cookie and drop the token from the URL."""
        if not hmac.compare_digest(self._query_token(scope).encode(), self.token.encode()):
            return await _deny(send, 401, "wrong token")
        query = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")) if k != "token"]
        location = same_site(scope["path"]) + (f"?{urlencode(query)}" if query else "")
        cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode("latin-1")),
                                (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


def same_site(path: str) -> str:
    """`path` as a redirect target that stays on this service: one leading slash (`//host/x` and
    `/\\host/x` would name another site) and percent-encoded (ASCII, as a header must be)."""
    rest = path.lstrip("/\\")
    return "/" + quote(rest, safe="/:@!$&'()*+,;=-._~", errors="replace")


def _with_headers(send, api: bool):
    """`send` adding `SECURITY_HEADERS` (and `NO_STORE` on the API) to the answer's start,
    keeping any a route set itself (the dashboard's sandbox policy, SSE's no-cache)."""
    extra = {**SECURITY_HEADERS, **(NO_STORE if api else {})}

    async def wrapped(message):
        if message["type"] == "http.response.start":
            given = {k.lower() for k, _ in message.get("headers", [])}
            added = [(k.encode(), v.encode()) for k, v in extra.items() if k.encode() not in given]
            message = {**message, "headers": [*message.get("headers", []), *added]}
        await send(message)

    return wrapped


class Redactor:
    """Rewrites answers so that they show no server path: each (path, shown as) pair, longest
    path first. A body of known length is rewritten whole (and its length fixed); a stream (the
    server-sent events) message by message."""

    def __init__(self, pairs: list[tuple[str, str]]):
        pairs = {path: shown for path, shown in pairs if path and path != shown}
        self.pairs = [(p.encode(), s.encode()) for p, s in sorted(pairs.items(), key=lambda kv: -len(kv[0]))]

    def __call__(self, data: bytes) -> bytes:
        for path, shown in self.pairs:
            if path in data:
                data = data.replace(path, shown)
        return data

    def wrap(self, send):
        """`send` rewriting the answer's body."""
        held: dict = {"start": None, "stream": False, "chunks": []}

        async def wrapped(message):
            if message["type"] == "http.response.start":
                held["start"] = message
                held["stream"] = not any(k.lower() == b"content-length" for k, _ in message.get("headers", []))
                return await send(message) if held["stream"] else None
            if message["type"] != "http.response.body":
                return await send(message)
            if held["stream"]:
                return await send({**message, "body": self(message.get("body", b""))})
            held["chunks"].append(message.get("body", b""))
            if message.get("more_body"):
                return None
            body = self(b"".join(held["chunks"]))
            start = held["start"]
            headers = [(k, str(len(body)).encode() if k.lower() == b"content-length" else v) for k, v in start["headers"]]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return wrapped


def shorten(text: str, limit: int = 400) -> str:
    """`text` cut to `limit` characters, saying how much was left out: an error message echoes
    values from the request, and an answer must not grow with them."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


def content_disposition(filename: str) -> str:
    """An attachment header for any file name (RFC 6266/5987): an ASCII fallback without quotes
    or control characters, and the name itself percent-encoded as UTF-8 in `filename*`."""
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in filename) or "download"
    encoded = quote(filename.encode("utf-8", "surrogatepass"), safe="")
    return f'attachment; filename="{fallback}"; filename*=UTF-8\'\'{encoded}'


async def _deny(send, status: int, message: str):
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
