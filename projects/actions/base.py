"""What every action shares: the error a person can act on, and slug rules."""

from __future__ import annotations

from django.utils.text import slugify


class ActionError(Exception):
    """A request that cannot be carried out, with a message for the person who made it.

    ``field`` names the input at fault, when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


RESERVED_SLUGS = {"new", "api", "admin", "static", "media", "accounts", "o", "orgs", "join", "healthz", "readyz"}


def clean_slug(value: str, *, source: str = "name") -> str:
    slug = slugify(value)[:60]
    if not slug:
        raise ActionError(f"Choose a {source} with at least one letter or digit.", field="slug")
    return slug
