"""`make demo`: a real Redis, the gateway and one worker on the tiny model; upload; ask twice; stop.

    python scripts/demo.py [--keep-dir DIR]

Uses TEMPO_REDIS_URL when set, else starts `redis-server` on a free port (install it with
`apt-get install redis-server` / `brew install redis` if missing). Everything it starts is stopped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.sample_video import write_sample_video  # noqa: E402
from tests.redis_server import free_port, start_redis  # noqa: E402


def wait(url: str, proc: subprocess.Popen, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: {name} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"demo: {name} not ready after {timeout:.0f}s")


def show(label: str, ans: dict) -> None:
    print(f"\n{label}: {ans['answer']!r}")
    print(f"  cache hit: {ans['cache']['hit']} (tier {ans['cache']['tier']}), tokens: {ans['usage']}, "
          f"timings: " + ", ".join(f"{k}={v:.3f}s" for k, v in ans["timings"].items() if isinstance(v, float)))
    print(f"  {'segment':>7}  {'time range (s)':>17}  {'relevance':>9}  {'tokens kept':>11}")
    for s in ans["segments"]:
        print(f"  {s['index']:>7}  {s['start_s']:>7.1f} - {s['end_s']:>7.1f}  {s['relevance']:>9.3f}  {s['tokens_kept']:>11}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep-dir", type=Path, default=None, help="storage/log dir to keep (default: temporary)")
    args = parser.parse_args()
    work = args.keep_dir or Path(tempfile.mkdtemp(prefix="tempo-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    redis_server = None
    try:
        redis_url = os.environ.get("TEMPO_REDIS_URL")
        if not redis_url:
            if shutil.which("redis-server") is None:
                print("demo: redis-server is not installed. Install it: sudo apt-get install redis-server "
                      "(Debian/Ubuntu) or brew install redis (macOS), or set TEMPO_REDIS_URL.", file=sys.stderr)
                return 2
            redis_server = start_redis()
            redis_url = redis_server.url
            print(f"started redis-server on port {redis_server.port}")
        port = free_port()
        env = {**os.environ, "TEMPO_REDIS_URL": redis_url, "TEMPO_STORAGE_DIR": str(work / "storage"),
               "TEMPO_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        log = open(work / "demo.log", "wb")  # noqa: SIM115
        tempo = [sys.executable, "-m", "service.cli"]
        procs.append(subprocess.Popen([*tempo, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                      cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen([*tempo, "worker", "--metrics-port", "0"], env=env, cwd=ROOT, stdout=log,
                                      stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        wait(base + "/readyz", procs[0], "gateway + worker")
        print(f"gateway on {base} (docs: {base}/docs), one worker on the tiny RANDOM model: answers are noise")

        video = write_sample_video(work / "sample.mp4", seconds=12)
        with open(video, "rb") as fh:
            r = httpx.post(base + "/v1/videos", files={"file": ("sample.mp4", fh, "video/mp4")}, timeout=60)
        r.raise_for_status()
        vid = r.json()["id"]
        print(f"uploaded {video.name}: {vid}")
        while (v := httpx.get(f"{base}/v1/videos/{vid}").json())["status"] not in ("ready", "failed"):
            time.sleep(0.3)
        if v["status"] == "failed":
            raise SystemExit(f"demo: ingest failed: {v['error']}")
        print(f"ready: {v['duration_s']:.1f}s, {v['frames_sampled']} frames sampled, {v['segments']} segments")
        for label, q in (("Q1 What color is the square?", "What color is the square?"),
                         ("Q2 Where does the square go?", "Where does the square go?")):
            r = httpx.post(base + "/v1/ask", json={"video_id": vid, "question": q, "max_tokens": 24}, timeout=300)
            r.raise_for_status()
            show(label, r.json())
        return 0
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        if redis_server:
            redis_server.stop()
        if args.keep_dir is None:
            shutil.rmtree(work, ignore_errors=True)
        print("\nstopped everything the demo started")


if __name__ == "__main__":
    sys.exit(main())
