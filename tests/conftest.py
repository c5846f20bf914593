from __future__ import annotations

import pytest
import redis

from tests.redis_server import start_redis


@pytest.fixture(scope="session")
def redis_server():
    try:
        server = start_redis()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture
def r(redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    yield client
    client.close()
