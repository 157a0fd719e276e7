"""What a browser may open of a storage root: the folders gallery pages and charts need (``BROWSABLE``),
a page's link to a stored file relative to the page (so a copied or served gallery keeps its links),
and the URL the Dagster UI links to (a served or public base URL, else a presigned object-store URL).
"""

from __future__ import annotations

import posixpath
from urllib.parse import quote

from nbpro_pipeline.storage.filesystem import Storage

# never the ledger, journal, leases, tables or ledger_id: only what pages show
BROWSABLE = ("gallery", "images", "quarantine", "reports")
PRESIGN_S = 7 * 24 * 3600  # an object store's presigned link lives a week: the UI keeps it in the event log


def under_root(storage: Storage, uri: str) -> str | None:
    """``uri``'s path below the storage root (``images/…``), None when it lies elsewhere."""
    root = storage.uri(storage.root).rstrip("/") + "/"
    if not uri.startswith(root):
        return None
    rel = posixpath.normpath(uri[len(root) :])
    return None if rel.startswith("..") else rel


def absolute_link(uri: str) -> str:
    return uri if "://" in uri else "file://" + quote(uri)


def relative_link(storage: Storage, page_path: str, target_uri: str) -> str:
    """The link from the page at ``page_path`` to ``target_uri``: relative when both are under the root."""
    page, target = under_root(storage, storage.uri(page_path)), under_root(storage, target_uri)
    if page is None or target is None:
        return absolute_link(target_uri)
    return quote(posixpath.relpath(target, posixpath.dirname(page) or "."))


def browser_url(storage: Storage, uri: str, base_url: str | None) -> str | None:
    """A URL a browser opens from the UI for the stored file ``uri``: under ``base_url`` when the root is
    served there (a local server, a bucket's public or CDN URL), else presigned on an object store that can
    sign; None when neither (a local root nobody serves: the UI then shows the path)."""
    rel = under_root(storage, uri)
    if rel is None or rel.split("/", 1)[0] not in BROWSABLE:
        return None
    if base_url:
        return base_url.rstrip("/") + "/" + quote(rel)
    if storage.is_local:
        return None
    try:
        return str(storage.fs.sign(uri, expiration=PRESIGN_S))
    except Exception:  # noqa: BLE001 - NotImplementedError, or no credentials that may sign: show the path
        return None
