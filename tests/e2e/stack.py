"""Real processes for end-to-end tests: the gateway and workers as `tempo serve` / `tempo worker`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen
    log: Path
    port: int

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Stack:
    redis_url: str
    storage: Path
    logs: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    gw: Proc | None = None  # set by start()
    workers: list[Proc] = field(default_factory=list)
    url: str = ""

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {**os.environ, "TEMPO_REDIS_URL": self.redis_url, "TEMPO_STORAGE_DIR": str(self.storage),
               "TEMPO_DEVICE": "cpu", "PYTHONPATH": str(ROOT), **self.env, **extra}
        return env

    def _start(self, name: str, args: list[str], port: int, extra: dict[str, str]) -> Proc:
        log = self.logs / f"{name}.log"
        fh = open(log, "wb")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", *args], cwd=ROOT, env=self._env(extra),
                                stdout=fh, stderr=subprocess.STDOUT)
        p = Proc(name, proc, log, port)
        self.procs.append(p)
        return p

    def gateway(self, name: str = "gateway", **extra: str) -> Proc:
        port = free_port()
        p = self._start(name, ["serve", "--host", "127.0.0.1", "--port", str(port)], port, extra)
        wait_http(p, f"http://127.0.0.1:{port}/healthz")
        return p

    def worker(self, name: str, **extra: str) -> Proc:
        port = free_port()
        return self._start(name, ["worker", "--worker-id", name, "--metrics-port", str(port)], port,
                           {"TEMPO_HOST": "127.0.0.1", **extra})

    def start(self, *workers: str) -> Stack:
        """The gateway and the named workers, waiting until every one is ready; sets ``url``."""
        self.gw = self.gateway()
        self.workers = [self.worker(name) for name in workers]
        for w in self.workers:
            wait_http(w, f"http://127.0.0.1:{w.port}/readyz", timeout=120)
        self.url = f"http://127.0.0.1:{self.gw.port}"
        wait_http(self.gw, self.url + "/readyz")
        return self

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            p.stop()


def wait_http(p: Proc, url: str, timeout: float = 60, status: int = 200) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.proc.poll() is not None:
            raise RuntimeError(f"{p.name} exited with {p.proc.returncode}:\n{p.output()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == status:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{p.name} not ready at {url}:\n{p.output()[-3000:]}")


def worker_metric(p: Proc, name: str) -> float:
    """Sum of a metric's samples on a worker's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{p.port}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total
