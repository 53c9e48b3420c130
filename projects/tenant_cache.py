"""Cached renderings of an organisation's rows, thrown away the moment those rows change.

Some reads are made far more often than the rows behind them change: the dashboard, the
project list of the API. :func:`cached` keeps what such a read built (an HTML fragment, a page
of serialized rows) in the cache, with the *versions* of the tables it was built from, and
uses it again only while all of those versions still stand.

A version belongs to one organisation and one model (``tenant-cache:v:<org id>:<app.model>``).
Every write of a *tracked* model replaces the versions of the organisations it touched:

- ``Model.save()`` and ``delete()`` (also the rows a cascade deletes): ``post_save`` and
  ``post_delete`` receivers, connected by :func:`track`;
- ``QuerySet.update()``, ``bulk_create()`` and ``bulk_update()``: :class:`TrackedWritesQuerySet`,
  the base of every tenant queryset (``projects.tenancy``) and of the organisation's.

The new version is written at once (a read later in the same transaction must not see the
old rendering) and again when the transaction commits, so a reader that took the first new
version and then read rows the transaction had not committed yet caches under a version that
is already gone. A reader reads the versions before the rows, never after.

A model is tracked when an app says so (``AppConfig.ready``); :func:`cached` refuses models
that are not, so a rendering cannot depend on rows whose writes would go unnoticed. Rows
written behind the ORM's back (raw SQL) are not seen: there is none on these tables. If the
cache cannot be reached, reads build afresh and writes log the failure; every entry expires
after ``timeout`` seconds in any case.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from django.core.cache import cache
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Model -> the lookup path from one of its rows to its organisation's id.
_tracked: dict[type[models.Model], str] = {}


def track(*model_classes: type[models.Model]) -> None:
    """Follow every write of these models (organisation, or tenant models with a direct foreign key)."""
    for model in model_classes:
        if model in _tracked:
            continue
        if model._meta.label == "projects.Organization":
            path = "pk"
        elif getattr(model, "tenant_field", None) and "__" not in model.tenant_field:
            path = model.tenant_field
        else:
            raise ValueError(
                f"{model.__name__} cannot be tracked: only the organisation and models with a "
                "direct organisation foreign key are (its tenant_field has more than one step)."
            )
        queryset_class = model._default_manager._queryset_class
        if not issubclass(queryset_class, TrackedWritesQuerySet):
            raise ValueError(
                f"{model.__name__}'s default queryset ({queryset_class.__name__}) does not report "
                "update() and bulk writes: base it on projects.tenancy.TenantQuerySet."
            )
        _tracked[model] = path
        post_save.connect(_row_written, sender=model, dispatch_uid=f"tenant-cache-save-{model._meta.label}")
        post_delete.connect(_row_written, sender=model, dispatch_uid=f"tenant-cache-delete-{model._meta.label}")


def _org_id_of(instance: models.Model) -> int | None:
    path = _tracked[type(instance)]
    return instance.pk if path == "pk" else getattr(instance, f"{path}_id", None)


def _row_written(sender: type[models.Model], instance: models.Model, **kwargs) -> None:
    if kwargs.get("raw"):  # loaddata: fixtures, before anything is cached
        return
    org_id = _org_id_of(instance)
    if org_id is not None:
        changed(sender, [org_id])


def org_ids_of(queryset: models.QuerySet) -> list[int]:
    """The organisations whose rows ``queryset`` holds (one query); [] for an untracked model."""
    path = _tracked.get(queryset.model)
    if path is None:
        return []
    return list(queryset.order_by().values_list(path, flat=True).distinct())


def changed(model: type[models.Model], org_ids: Iterable[int]) -> None:
    """Rows of ``model`` in these organisations were written: their cached renderings are stale."""
    keys = [_version_key(org_id, model) for org_id in set(org_ids) if org_id is not None]
    if not keys:
        return
    _replace_versions(keys)
    transaction.on_commit(lambda: _replace_versions(keys), robust=True)


def _replace_versions(keys: list[str]) -> None:
    try:
        cache.set_many({key: secrets.token_hex(8) for key in keys}, timeout=None)
    except Exception:  # the write stands; the cached entries expire on their own
        logger.exception("Could not mark cached renderings stale (%s); they expire within their timeout.", keys)


def _version_key(org_id: int, model: type[models.Model]) -> str:
    return f"tenant-cache:v:{org_id}:{model._meta.label_lower}"


def cached(
    org_id: int, name: str, depends_on: Iterable[type[models.Model]], build: Callable[[], T], timeout: int = 300
) -> T:
    """``build()``'s value for this organisation, from the cache while ``depends_on`` are unchanged.

    ``name`` tells renderings of one organisation apart (include whatever else the value
    depends on: a role, a URL, the minute for relative times). The value must pickle.
    """
    models_ = list(depends_on)
    untracked = [m.__name__ for m in models_ if m not in _tracked]
    if untracked:
        raise ValueError(f"Cached renderings cannot depend on untracked models: {', '.join(untracked)}.")
    version_keys = [_version_key(org_id, m) for m in models_]
    if len(name) > 120:
        name = hashlib.sha256(name.encode()).hexdigest()
    item_key = f"tenant-cache:i:{org_id}:{name}"
    try:
        found = cache.get_many([*version_keys, item_key])
        missing = [key for key in version_keys if key not in found]
        if missing:
            # First use (or evicted): start a version; add() keeps one another process set meanwhile.
            for key in missing:
                cache.add(key, secrets.token_hex(8), timeout=None)
            found.update(cache.get_many(missing))
        versions = tuple(found.get(key) for key in version_keys)
    except Exception:
        logger.warning("Cache unreachable: building %s for organisation %s afresh.", name, org_id, exc_info=True)
        return build()
    entry = found.get(item_key)
    if entry is not None and None not in versions and entry[0] == versions:
        return entry[1]
    value = build()
    if None not in versions:
        try:
            cache.set(item_key, (versions, value), timeout=timeout)
        except Exception:
            logger.warning("Cache unreachable: %s not stored.", name, exc_info=True)
    return value


class TrackedWritesQuerySet(models.QuerySet):
    """Reports ``update()`` and bulk writes of tracked models to :func:`changed`."""

    def update(self, **kwargs) -> int:
        if self.model not in _tracked:
            return super().update(**kwargs)
        org_ids = org_ids_of(self)
        rows = super().update(**kwargs)
        if rows:
            changed(self.model, org_ids)
        return rows

    update.alters_data = True

    def bulk_create(self, objs: Iterable[models.Model], *args, **kwargs) -> list[models.Model]:
        created = super().bulk_create(objs, *args, **kwargs)
        if self.model in _tracked:
            changed(self.model, [_org_id_of(obj) for obj in created])
        return created

    bulk_create.alters_data = True

    def bulk_update(self, objs: Iterable[models.Model], fields: Sequence[str], *args, **kwargs) -> int:
        objs = list(objs)
        rows = super().bulk_update(objs, fields, *args, **kwargs)
        if self.model in _tracked and rows:
            changed(self.model, [_org_id_of(obj) for obj in objs])
        return rows

    bulk_update.alters_data = True
