"""How CSS/JS are stored and named for whitenoise."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    """whitenoise's hashed, compressed copies made by ``collectstatic``; a file that has not
    been collected yet keeps its plain name (the page still renders, and ``runserver`` or
    the tests' live server find it in ``static/``) instead of failing every page."""

    manifest_strict = False

    def hashed_name(self, name, content=None, filename=None):
        try:
            return super().hashed_name(name, content, filename)
        except ValueError:  # not in STATIC_ROOT: collectstatic has not run
            return name
