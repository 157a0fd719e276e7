"""nbpro-pipeline: prompt tables to Nano Banana Pro images through its providers, with a credit ledger.

This package never imports dagster: the Dagster wiring lives in ``assets_defs``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nbpro-pipeline")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
