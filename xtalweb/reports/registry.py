"""What the web adds to each stage of the science's registry, declared beside its report.

``@report("index", hidden=…, web_defaults=…)`` on a report builder registers it: the
builder ``(run, sweep_rows) -> {"tables": […], "figures": […]}`` draws the run's report
from its stored summary; ``hidden`` are parameters the run form leaves out,
``web_defaults`` web defaults that differ from the dataclass default, each with its
reason; ``check(params)`` a check the stage makes before any work, run when the form
is submitted so that it is a form error too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class WebStage:
    stage: str
    build: Callable
    hidden: frozenset[str] = frozenset()
    web_defaults: dict[str, tuple[str, str]] = field(default_factory=dict)
    check: Callable | None = None


_REPORTS: dict[str, WebStage] = {}


def report(stage: str, *, hidden=(), web_defaults: dict | None = None, check: Callable | None = None):
    """Register the decorated function as the report builder of ``stage``."""
    def register(build: Callable) -> Callable:
        _REPORTS[stage] = WebStage(stage, build, frozenset(hidden), dict(web_defaults or {}), check)
        return build
    return register


class _Reports(dict):
    """``REPORTS[stage]``: loads the report modules (which register) on first use."""

    loaded = False

    def _load(self):
        if not self.loaded:  # every module of this package registers its builders on import
            import importlib
            import pkgutil

            from . import __path__ as here

            for module in pkgutil.iter_modules(here):
                if module.name not in ("registry", "views"):
                    importlib.import_module(f"{__package__}.{module.name}")
            self.loaded = True
        self.update(_REPORTS)

    def __getitem__(self, key):
        self._load()
        return super().__getitem__(key)

    def __contains__(self, key):
        self._load()
        return super().__contains__(key)

    def keys(self):
        self._load()
        return super().keys()


REPORTS = _Reports()
