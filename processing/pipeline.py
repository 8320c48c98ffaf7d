"""Kept for old imports: the import stage now lives in ``processing.importer``."""
from .importer import ImportParams, run_import  # noqa: F401
