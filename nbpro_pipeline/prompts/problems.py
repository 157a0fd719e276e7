"""Why a whole table file cannot be used (shared by the readers and the loader)."""

from __future__ import annotations


class FileProblem(Exception):
    """A whole file cannot be used; becomes a file-level rejected row (``row_number`` null)."""

    def __init__(self, code: str, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.column = column
