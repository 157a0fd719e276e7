"""Dagster's metadata conventions over the library's facts: column schemas (``dagster/column_schema``),
row counts (``dagster/row_count``), owners, and charts a reader sees without a click."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa

from assets_defs.resources import StorageResource
from nbpro_pipeline.presentation import charts
from nbpro_pipeline.presentation.columns import column_docs
from nbpro_pipeline.storage import Storage
from nbpro_pipeline.storage.browse import browser_url

ROW_COUNT = "dagster/row_count"
COLUMN_SCHEMA = "dagster/column_schema"
# who answers for the assets in the catalog; a deployment with its own team edits this one line
OWNERS = ["team:nbpro"]


def column_schema(schema: pa.Schema, descriptions: dict[str, str] | None = None) -> dict[str, dg.TableSchema]:
    """``{"dagster/column_schema": …}`` for a table with ``schema``."""
    columns = [dg.TableColumn(c.name, c.type, description=c.description) for c in column_docs(schema, descriptions)]
    return {COLUMN_SCHEMA: dg.TableSchema(columns=columns)}


def chart(name: str, png: bytes | None, st: Storage, storage: StorageResource) -> dg.MetadataValue:
    """The chart as markdown: an image link to ``reports/<name>.png`` where browsers reach the root, which
    the UI shows inline (short markdown is not folded behind "[Show Markdown]"), else embedded."""
    if png is None:
        return dg.MetadataValue.md("_no costs yet_")
    path = st.path("reports", f"{name}.png")
    st.write_bytes(path, png)
    url = browser_url(st, st.uri(path), storage.public_url)
    return dg.MetadataValue.md(f"![{name}]({url})" if url else charts.markdown_image(png, name))
