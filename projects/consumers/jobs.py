"""Live job progress: /ws/o/<org_slug>/jobs/ streams every job update of the organisation."""

from __future__ import annotations

from projects.background import org_jobs_group
from projects.consumers.base import OrgConsumer


class JobsConsumer(OrgConsumer):
    async def org_connect(self):
        self.group = org_jobs_group(self.org.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        # The stream is one-way; answer pings so clients can check the connection.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_json(
                {"type": "error", "message": 'This socket only sends job updates; send {"type": "ping"} to check it.'}
            )

    async def job_update(self, event):
        await self.send_json({"type": "job", "job": event["job"]})
