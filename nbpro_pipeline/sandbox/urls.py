"""CDN-style URLs the sandbox hands out: result images (signed, expiring) and uploaded files.

Result URLs carry ``exp`` and an HMAC ``sig`` over path and expiry, keyed by a secret kept in the
state directory, so they survive restarts and need no API key, like the providers' signed CDN links.
File URLs carry an unguessable id and no expiry: a reference image must stay fetchable for as long
as tasks may cite it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qs, quote, urlsplit

RESULT_PATH = re.compile(r"^/cdn/(rivya|odirouter)/results/([A-Za-z0-9_]+)/(\d+)\.(png|jpg)$")
# The same result without an extension, served as application/octet-stream (mutation mode's signed-blob URL)
BLOB_PATH = re.compile(r"^/cdn/(rivya|odirouter)/blobs/([A-Za-z0-9_]+)/(\d+)$")
FILE_PATH = re.compile(r"^/cdn/rivya/files/(file_[0-9a-f]+)/[^/]+$")


class SignatureCheck(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    BAD = "bad"


@dataclass(frozen=True, slots=True)
class UrlSigner:
    secret: bytes

    def sign(self, path: str, exp: int) -> str:
        return hmac.new(self.secret, f"{path}\n{exp}".encode(), hashlib.sha256).hexdigest()[:32]

    def check(self, path: str, exp: str | None, sig: str | None, now: float) -> SignatureCheck:
        """Signature first: an expired link with a forged signature is "bad", not "expired"."""
        if not exp or not sig or not exp.isdigit():
            return SignatureCheck.BAD
        if not hmac.compare_digest(self.sign(path, int(exp)), sig):
            return SignatureCheck.BAD
        return SignatureCheck.EXPIRED if int(exp) < now else SignatureCheck.VALID

    def result_url(self, base_url: str, provider: str, task_id: str, index: int, ext: str, exp: int) -> str:
        path = result_path(provider, task_id, index, ext)
        return f"{base_url}{path}?exp={exp}&sig={self.sign(path, exp)}"

    def blob_url(self, result_url: str) -> str | None:
        """The extension-less twin of a result URL this signer minted, expiring at the same instant."""
        parts = urlsplit(result_url)
        match = RESULT_PATH.match(parts.path)
        exp = parse_qs(parts.query).get("exp", [""])[0]
        if match is None or not exp.isdigit():
            return None
        provider, task_id, index, _ext = match.groups()
        path = f"/cdn/{provider}/blobs/{task_id}/{index}"
        return f"{parts.scheme}://{parts.netloc}{path}?exp={exp}&sig={self.sign(path, int(exp))}"


def result_path(provider: str, task_id: str, index: int, ext: str) -> str:
    return f"/cdn/{provider}/results/{task_id}/{index}.{ext}"


def file_url(base_url: str, file_id: str, name: str) -> str:
    return f"{base_url}/cdn/rivya/files/{file_id}/{quote(name, safe='')}"


def safe_file_name(name: str | None) -> str:
    """A URL- and filesystem-safe rendering of a client's file name (used only inside URLs)."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")
    return cleaned[:120] or "upload"


@dataclass(frozen=True, slots=True)
class SandboxUrl:
    """What a sandbox URL points at, parsed from its path alone (any host: 127.0.0.1 and localhost
    are the same sandbox)."""

    kind: str  # "file" | "result"
    id: str  # file id or task id
    provider: str | None = None


def parse_sandbox_url(url: str) -> SandboxUrl | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    if m := FILE_PATH.match(parts.path):
        return SandboxUrl("file", m.group(1))
    if m := RESULT_PATH.match(parts.path) or BLOB_PATH.match(parts.path):
        return SandboxUrl("result", m.group(2), m.group(1))
    return None
