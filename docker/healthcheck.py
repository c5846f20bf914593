"""Container HEALTHCHECK: GET http://127.0.0.1:$<PORT_ENV>/<path>; exit 0 on HTTP 2xx, 1 otherwise.

Usage: python healthcheck.py TEMPO_PORT 8000 /healthz
Stdlib only, so it works in both images without curl.
"""

import os
import sys
import urllib.request


def main() -> int:
    env_name, default_port, path = sys.argv[1], sys.argv[2], sys.argv[3]
    port = os.environ.get(env_name, default_port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return 0 if 200 <= resp.status < 300 else 1
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
        print(f"healthcheck failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
