"""Base Channels consumer for websockets under /ws/o/<org_slug>/….

It resolves the organisation from the URL and the session's user once, on connect;
a non-member is refused with close code 4404 (the websocket twin of a 404).
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from projects.views.base import resolve_membership

#: Close code for "no such organisation or object" (4000-4999 are for applications).
CLOSE_NOT_FOUND = 4404


class OrgConsumer(AsyncJsonWebsocketConsumer):
    """Subclasses implement :meth:`org_connect` and may use ``self.org``, ``self.membership``."""

    async def connect(self):
        user = self.scope.get("user")
        org_slug = self.scope["url_route"]["kwargs"]["org_slug"]
        try:
            self.membership = await database_sync_to_async(resolve_membership)(user, org_slug)
        except Http404:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.org = self.membership.organization
        if await self.org_connect() is False:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.accept()

    async def org_connect(self) -> bool | None:
        """Join groups, check objects through scoped managers; return False to refuse."""
        return None
