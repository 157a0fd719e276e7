"""Secrets out of everything the pipeline stores or shows: API keys and bearer tokens in text, credentials
in URLs (``user:pass@``, and signed-URL parameters such as ``X-Amz-Signature``, ``sig``, ``token``).

The provider clients redact their messages and the raw bodies they hand over for quarantine through
``redact_text`` with their own key; this module is the one home of the patterns. The full URL is still what is
fetched or sent: only what is written down is redacted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

REDACTED = "redacted"
# anything shaped like a provider key or a bearer token, wherever it turns up in text
TOKEN_PATTERNS = (re.compile(r"rvya_sk_[A-Za-z0-9_\-]+"), re.compile(r"(?i)bearer\s+[A-Za-z0-9_\-.~+/=]+"))
# query parameter names (lower case) that carry a credential, by substring or prefix
_SECRET_NAME = re.compile(r"token|sig|secret|passw|pwd|key|auth|credential|session|policy|^x-amz-|^x-goog-")


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each of ``secrets`` and anything shaped like a key or ``Bearer`` token as ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    for pattern in TOKEN_PATTERNS:
        text = pattern.sub("***", text)
    return text


def redact_url(url: str) -> str:
    """``url`` without user name and password, and with the value of every credential-like query
    parameter replaced by ``redacted``; other parameters, the host and the path are kept."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # not even a URL: keep nothing that could be a credential
        return redact_text(url.split("?", 1)[0].rsplit("@", 1)[-1])
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{quote(k, safe='')}={REDACTED if _SECRET_NAME.search(k.lower()) else quote(v, safe=':/@,')}"
            for k, v in pairs
        )
    return redact_text(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


_URL_IN_TEXT = re.compile(r"(?i)\bhttps?://[^\s'\"<>]+")


def redact_urls_in(text: str) -> str:
    """``text`` (an error message, say) with every http(s) URL in it passed through ``redact_url``."""
    return redact_text(_URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text))


def has_userinfo(url: str) -> bool:
    """True when ``url`` names a user or password before its host (``https://user:pass@host/``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.username is not None or parts.password is not None
