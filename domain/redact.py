"""One redaction function for every message that leaves a process.

Errors, log lines and failure messages are read by people and stored (CI logs,
workflow history); the worker holds a Git token, AWS keys, database URLs. Before a
message is printed, logged or recorded, ``redact`` removes:

- the user-info of URLs with a password (``postgres://u:pw@host`` → ``postgres://***@host``)
  and of http(s) URLs (``https://ghp_x@github.com``),
- token-ish query parameters (``?access_token=…``, ``X-Amz-Signature=…``, ``password=…``),
- ``Bearer …`` / ``Authorization: …`` credentials and GitHub token formats,
- the values of known secret environment variables (``secret_values``).

Pure functions: callers pass the environment they hold.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit

MASK = "***"

# Query parameters that carry a credential (compared case-insensitively).
TOKEN_PARAMS = (
    "access_token",
    "token",
    "private_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "secret",
    "password",
    "passwd",
    "pwd",
    "api_key",
    "apikey",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-security-token",
    "x-amz-credential",
    "x-goog-signature",
    "x-goog-credential",
)
# Environment variables whose value is a secret wherever it appears.
SECRET_ENV = (
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "CONFIGHUB_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "PGPASSWORD",
    "TEMPORAL_API_KEY",
)
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY)(_|$)")
# Shorter values are too likely to be ordinary words (the sandbox's AWS key is
# "testing"); URLs and parameters are redacted by shape whatever their length.
MIN_SECRET_LENGTH = 8

_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#@'\"<>]+)@", re.ASCII
)
_QUERY = re.compile(
    r"(?P<key>(?<![A-Za-z0-9_-])(?:"
    + "|".join(re.escape(p) for p in TOKEN_PARAMS)
    + r")=)(?P<value>[^&#\s'\"<>]+)",
    re.IGNORECASE,
)
_AUTH_HEADER = re.compile(
    r"(?P<key>\b(?:authorization|proxy-authorization)\b['\"]?\s*[:=]\s*['\"]?)"
    r"(?P<value>(?:bearer|token|basic|bot)\s+[^\s'\",}]+|[^\s'\",}]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<key>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE)
_TOKEN_SHAPES = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,})"
)


def _userinfo(match: re.Match[str]) -> str:
    scheme, info = match.group("scheme"), match.group("userinfo")
    if ":" in info or scheme.lower() in ("http://", "https://"):
        return f"{scheme}{MASK}@"
    return match.group(0)  # ssh://git@host: a user name, not a secret


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with credentials replaced by ``***`` (see the module doc)."""
    for value in sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _URL_USERINFO.sub(_userinfo, text)
    text = _QUERY.sub(lambda m: m.group("key") + MASK, text)
    text = _AUTH_HEADER.sub(lambda m: m.group("key") + MASK, text)
    text = _BEARER.sub(lambda m: m.group("key") + MASK, text)
    return _TOKEN_SHAPES.sub(MASK, text)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The secrets an environment holds: the values of secret variables, and the
    password (raw and percent-decoded) of every URL-valued variable."""
    found: list[str] = []
    for name, value in env.items():
        if not value:
            continue
        if name.upper() in SECRET_ENV or _SECRET_NAME.search(name.upper()):
            found.append(value)
        if "://" in value:
            found.extend(_url_secrets(value))
    return found


def _url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    out: list[str] = []
    if password:
        out += [password, unquote(password)]
    for key_value in parts.query.split("&"):
        key, _, value = key_value.partition("=")
        if value and key.lower() in TOKEN_PARAMS:
            out += [value, unquote(value)]
    return out


def url_has_credentials(url: str) -> bool:
    """Whether a repo URL carries a credential: a password, an http(s) user name (a
    token), or a token query parameter (``?access_token=``)."""
    try:
        parts = urlsplit(url)
        password, username = parts.password, parts.username
    except ValueError:
        return True  # unparseable netloc: refuse rather than store it
    if password or (username and parts.scheme in ("http", "https")):
        return True
    return bool(_QUERY.search(url))


def redact_url(url: str) -> str:
    """A URL for messages and history: no user-info at all, no token parameters."""
    try:
        parts = urlsplit(url)
        has_userinfo = "@" in parts.netloc
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return redact(url)
    if has_userinfo:
        if port:
            host = f"{host}:{port}"
        url = parts._replace(netloc=host).geturl()
    return _QUERY.sub(lambda m: m.group("key") + MASK, url)
