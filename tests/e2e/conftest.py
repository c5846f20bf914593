from tests.redis_server import r, redis_server  # noqa: F401
