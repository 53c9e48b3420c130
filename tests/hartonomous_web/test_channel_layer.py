"""The Redis channel layer as configured: an idle websocket consumer must not crash."""

from __future__ import annotations

import asyncio

from asgiref.sync import async_to_sync
from django.conf import settings


def test_an_idle_receive_outlives_the_redis_clients_default_read_timeout():
    # redis-py 8 times reads out after 5 s by default, as long as the layer's blocking pop:
    # every idle consumer (job progress, chat) then died with TimeoutError every few seconds.
    from channels_redis.core import RedisChannelLayer

    config = settings.CHANNEL_LAYERS["default"]
    assert config["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    layer = RedisChannelLayer(**config["CONFIG"])

    async def idle() -> str:
        channel = await layer.new_channel()
        try:
            await asyncio.wait_for(layer.receive(channel), timeout=7)
        except TimeoutError:
            return "still listening"
        finally:
            await layer.flush()
        return "received"

    assert async_to_sync(idle)() == "still listening"
