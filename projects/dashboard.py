"""The cards other apps add to the organisation's dashboard, so that ``projects`` never imports them.

An app adds a card in its ``AppConfig.ready`` (``dashboard.add_card(Card(...))``); the dashboard
(``projects.views.dashboard``) shows each card with the number of the organisation's rows of the
card's model, counted through the view's tenant scoping, and links it to the app's page. Adding a
card also tracks the model's writes, so the cached dashboard is rebuilt when they change.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models

from projects import tenant_cache


@dataclass(frozen=True)
class Card:
    """One count on the dashboard: ``<count> <noun>(s)``, linking to ``url_name`` (takes ``org_slug``)."""

    model: type[models.Model]
    noun: str
    url_name: str
    order: int = 100


_cards: list[Card] = []


def add_card(card: Card) -> None:
    """Show ``card`` on every organisation's dashboard (once, however often an app calls it)."""
    if card in _cards:
        return
    tenant_cache.track(card.model)
    _cards.append(card)
    _cards.sort(key=lambda c: (c.order, c.noun))


def cards() -> list[Card]:
    """The cards added so far, in their order."""
    return list(_cards)
