"""The import stage (dials.import): ``run_import`` with its parameters ``ImportParams``
(params.py); the file formats themselves are read by ``processing.io.importer``."""
from .params import ImportParams
from .stage import run_import

__all__ = ["ImportParams", "run_import"]
