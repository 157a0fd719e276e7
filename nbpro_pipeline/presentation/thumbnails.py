"""Where pages and contact sheets read an image's picture from: its stored thumbnail (written when the
image was placed, ``Storage.thumbnail_path``), or the image itself when it has none (quarantined images,
roots written before thumbnails were kept), so a page of 200 4K images reads 200 small JPEGs."""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from nbpro_pipeline.storage.filesystem import Storage


def thumbnail_opener(storage: Storage) -> Callable[[str], BinaryIO]:
    """``open_file`` for ``contact_sheet`` and the gallery tiles: the thumbnail first, else the image."""

    def open_file(image_uri: str) -> BinaryIO:
        thumb = storage.thumbnail_path(image_uri)
        if thumb is not None and storage.fs.exists(image_uri):  # an image that is gone has no tile
            try:
                return storage.fs.open(thumb, "rb")
            except FileNotFoundError:
                pass
        return storage.fs.open(image_uri, "rb")

    return open_file
