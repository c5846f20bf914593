"""End to end: real redis-server, `tempo serve` and two `tempo worker` processes on the tiny model."""

from __future__ import annotations

import base64
import json
import signal
import time
from pathlib import Path

import httpx
import openai
import pytest
import redis

from scripts.sample_video import write_sample_video
from tests.e2e.stack import Stack, worker_metric

pytestmark = pytest.mark.slow
QUESTION = "What color is the square?"


@pytest.fixture(scope="module")
def stack(redis_server, tmp_path_factory):
    redis.Redis.from_url(redis_server.url).flushall()
    root = tmp_path_factory.mktemp("stack")
    s = Stack(redis_server.url, root / "storage", root, env={
        "TEMPO_MAX_UPLOAD_BYTES": "2000000", "TEMPO_MAX_INLINE_VIDEO_BYTES": "1000000",
        "TEMPO_MAX_QUESTION_TOKENS": "64", "TEMPO_HEARTBEAT_INTERVAL_S": "0.5", "TEMPO_HEARTBEAT_TTL_S": "2",
        "TEMPO_REAPER_INTERVAL_S": "0.5", "TEMPO_ASK_WAIT_FOR_VIDEO_S": "120", "TEMPO_LOG_LEVEL": "INFO",
    })
    try:
        yield s.start("w1", "w2")
    finally:
        s.stop_all()


@pytest.fixture(scope="module")
def video_file(tmp_path_factory) -> Path:
    return write_sample_video(tmp_path_factory.mktemp("v") / "sample.mp4", seconds=6)


def upload(url: str, path: Path, headers: dict | None = None) -> httpx.Response:
    with open(path, "rb") as fh:
        return httpx.post(url + "/v1/videos", files={"file": (path.name, fh, "video/mp4")}, headers=headers, timeout=30)


def wait_ready(url: str, vid: str, headers: dict | None = None) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        v = httpx.get(f"{url}/v1/videos/{vid}", headers=headers).json()
        if v["status"] in ("ready", "failed"):
            return v
        time.sleep(0.2)
    raise AssertionError("video never became ready")


@pytest.fixture(scope="module")
def ready_video(stack, video_file) -> str:
    r = upload(stack.url, video_file)
    assert r.status_code == 202, r.text
    v = wait_ready(stack.url, r.json()["id"])
    assert v["status"] == "ready" and v["segments"] >= 1 and v["frames_sampled"] > 0, v
    return v["id"]


def decoded_total(stack) -> float:
    return sum(worker_metric(w, "tempo_videos_decoded_total") for w in stack.workers if w.proc.poll() is None)


def test_ask_matches_pipeline_and_second_question_hits_cache(stack, ready_video, video_file, tiny_pipeline):
    from models.video import decode_sampled_frames

    before = decoded_total(stack)
    hits_before = sum(worker_metric(w, "tempo_segment_cache_hits_total") for w in stack.workers)
    body = {"video_id": ready_video, "question": QUESTION, "max_tokens": 16}
    a1 = httpx.post(stack.url + "/v1/ask", json=body, timeout=120)
    assert a1.status_code == 200, a1.text
    a1 = a1.json()
    video = decode_sampled_frames(video_file)
    ref = tiny_pipeline.run(video.frames, video.fps, QUESTION, max_new_tokens=16, visual_token_budget=8192)
    assert a1["answer"] == ref.text
    assert a1["usage"]["completion_tokens"] == ref.completion_tokens
    assert [s["tokens_kept"] for s in a1["segments"]] == [s.tokens_kept for s in ref.segments]
    assert [s["start_s"] for s in a1["segments"]] == [s.start_s for s in ref.segments]

    a2 = httpx.post(stack.url + "/v1/ask", json={**body, "question": "Where does the square move?"}, timeout=120)
    assert a2.status_code == 200, a2.text
    a2 = a2.json()
    assert a2["cache"]["hit"] is True and a2["cache"]["tier"] in ("gpu", "host", "disk")
    assert decoded_total(stack) == before  # no video decoded for either question
    assert sum(worker_metric(w, "tempo_segment_cache_hits_total") for w in stack.workers) >= hits_before + 2
    assert "tempo_segment_cache_hits_total" in httpx.get(f"http://127.0.0.1:{stack.workers[0].port}/metrics").text


def test_rest_streaming_and_reconnect(stack, ready_video):
    body = {"video_id": ready_video, "question": QUESTION, "max_tokens": 8, "stream": True}
    events = []
    with httpx.stream("POST", stack.url + "/ask", json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        ev = {}
        for line in r.iter_lines():
            if not line:
                events.append(ev)
                ev = {}
            else:
                k, _, v = line.partition(": ")
                ev[k] = v
    tokens = [e for e in events if e.get("event") == "token"]
    done = [json.loads(e["data"]) for e in events if e.get("event") == "done"]
    assert len(done) == 1 and "".join(json.loads(t["data"])["text"] for t in tokens) == done[0]["answer"]
    # A client that reconnects with Last-Event-ID gets exactly what followed.
    ask_id = done[0]["id"]
    r2 = httpx.get(f"{stack.url}/v1/ask/{ask_id}/events", headers={"Last-Event-ID": tokens[0]["id"]}, timeout=30)
    assert r2.text.count("event: token") == len(tokens) - 1 and "event: done" in r2.text
    assert httpx.get(f"{stack.url}/v1/ask/ask_nope/events").status_code == 404


def test_openai_client(stack, ready_video, video_file):
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key="unused")
    assert [m.id for m in client.models.list().data] == ["tempo-6b"]
    video = {"type": "video_url", "video_url": {"url": f"tempo://videos/{ready_video}"}}
    first = [{"role": "user", "content": [video, {"type": "text", "text": QUESTION}]}]
    r = client.chat.completions.create(model="tempo-6b", messages=first, max_tokens=8)
    answer = r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens >= 1

    chunks = list(client.chat.completions.create(model="tempo-6b", messages=first, max_tokens=8, stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == r.usage.completion_tokens

    turns = first + [{"role": "assistant", "content": answer}, {"role": "user", "content": "And after that?"}]
    r2 = client.chat.completions.create(model="tempo-6b", messages=turns, max_completion_tokens=8)
    alone = client.chat.completions.create(
        model="tempo-6b", messages=[{"role": "user", "content": [video, {"type": "text", "text": "And after that?"}]}],
        max_tokens=8)
    # The earlier turns reach the LLM: the prompt is longer than the same question asked alone.
    assert r2.usage.prompt_tokens > alone.usage.prompt_tokens

    data_url = "data:video/mp4;base64," + base64.b64encode(video_file.read_bytes()).decode()
    inline = client.chat.completions.create(model="tempo-6b", max_tokens=8, messages=[
        {"role": "user", "content": [{"type": "video_url", "video_url": {"url": data_url}}, {"type": "text", "text": QUESTION}]}])
    assert inline.choices[0].message.content == answer  # same bytes -> same video id -> same answer

    with pytest.raises(openai.BadRequestError, match="video"):
        client.chat.completions.create(model="tempo-6b", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=first)


def test_identical_uploads_dedupe(stack, video_file, ready_video):
    r = upload(stack.url, video_file)
    assert r.status_code == 202 and r.json()["id"] == ready_video and r.json()["status"] == "ready"
    listed = httpx.get(stack.url + "/v1/videos").json()
    assert [v["id"] for v in listed["data"]].count(ready_video) == 1


def test_bad_inputs_are_4xx_and_workers_stay_up(stack, tmp_path, ready_video):
    u = stack.url
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    r = upload(u, text)
    assert r.status_code == 415 and r.json()["error"]["code"] == "not_a_video"
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    assert 400 <= upload(u, corrupt).status_code < 500
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert upload(u, empty).status_code == 400
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\x00" * 2_500_000)
    r = upload(u, big)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    r = httpx.post(u + "/v1/ask", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert httpx.post(u + "/v1/ask", json={"video_id": ready_video}).status_code == 400
    assert httpx.post(u + "/v1/ask", json={"video_id": "vid_" + "0" * 32, "question": "x"}).status_code == 404
    assert httpx.get(u + "/v1/videos/nope").status_code == 404
    r = httpx.post(u + "/v1/ask", json={"video_id": ready_video, "question": "why " * 200}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "question_too_long"
    r = httpx.post(u + "/v1/ask", json={"video_id": ready_video, "question": "why " * 200, "stream": True}, timeout=60)
    assert r.status_code == 400
    r = httpx.post(u + "/v1/videos", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = httpx.post(u + "/v1/videos", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"})
    assert 400 <= r.status_code < 500
    assert all(w.proc.poll() is None for w in stack.workers)
    assert httpx.get(u + "/readyz").status_code == 200


def test_delete_removes_everything(stack, tmp_path):
    path = write_sample_video(tmp_path / "del.mp4", seconds=3, fps=8)
    vid = upload(stack.url, path).json()["id"]
    assert wait_ready(stack.url, vid)["status"] == "ready"
    assert any((stack.storage / "cache" / vid).iterdir())
    assert httpx.delete(f"{stack.url}/v1/videos/{vid}").status_code == 200
    assert httpx.get(f"{stack.url}/v1/videos/{vid}").status_code == 404
    assert not (stack.storage / "videos" / vid).exists() and not (stack.storage / "cache" / vid).exists()
    assert httpx.post(stack.url + "/v1/ask", json={"video_id": vid, "question": "x"}).status_code == 404
    assert httpx.delete(f"{stack.url}/v1/videos/{vid}").status_code == 404


def test_api_keys_isolate_owners(stack, video_file):
    gw = stack.gateway("gateway-keys", TEMPO_API_KEYS="key-a,key-b")
    try:
        u = f"http://127.0.0.1:{gw.port}"
        a, b = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-b"}
        assert httpx.get(u + "/v1/videos").status_code == 401
        assert httpx.get(u + "/v1/videos", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(u + "/healthz").status_code == 200
        vid = upload(u, video_file, headers=a).json()["id"]
        assert httpx.get(f"{u}/v1/videos/{vid}", headers=a).status_code == 200
        assert httpx.get(f"{u}/v1/videos/{vid}", headers=b).status_code == 404
        assert httpx.post(u + "/v1/ask", headers=b, json={"video_id": vid, "question": "x"}).status_code == 404
        assert vid not in [v["id"] for v in httpx.get(u + "/v1/videos", headers=b).json()["data"]]
    finally:
        gw.stop()


def test_worker_sigkilled_mid_job_job_completes_elsewhere(stack, ready_video, redis_server):
    """Last in this module: it kills a worker."""
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    import threading

    out = {}
    body = {"video_id": ready_video, "question": QUESTION, "max_tokens": 400}
    t = threading.Thread(target=lambda: out.update(resp=httpx.post(stack.url + "/v1/ask", json=body, timeout=180)))
    t.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        for key in r.scan_iter("tempo:ask:*:tokens"):
            entries = r.xrange(key)
            starts = [json.loads(f["data"]) for _, f in entries if f["type"] == "start"]
            if starts and sum(1 for _, f in entries if f["type"] == "token") >= 5 \
                    and not any(f["type"] == "done" for _, f in entries):
                victim = starts[0]["worker_id"]
        time.sleep(0.05)
    assert victim, "never saw the long job start"
    proc = next(w for w in stack.workers if w.name == victim)
    proc.stop(signal.SIGKILL)
    t.join(180)
    resp = out["resp"]
    assert resp.status_code == 200, resp.text
    assert resp.json()["worker_id"] != victim
    assert resp.json()["usage"]["completion_tokens"] >= 5
    survivor = next(w for w in stack.workers if w.name != victim)
    assert worker_metric(survivor, "tempo_jobs_reclaimed_total") >= 1


@pytest.fixture(scope="module")
def solo(redis_server, tmp_path_factory):
    """A second stack with ONE worker, on its own Redis database (the main stack's workers never see
    its jobs), with URL ingest on. Its last test stops the worker with SIGTERM."""
    url = redis_server.url.rsplit("/", 1)[0] + "/1"
    redis.Redis.from_url(url).flushdb()
    root = tmp_path_factory.mktemp("solo")
    s = Stack(url, root / "storage", root, env={"TEMPO_LOG_LEVEL": "INFO", "TEMPO_ALLOW_URL_INGEST": "true"})
    try:
        yield s.start("solo")
    finally:
        s.stop_all()


@pytest.fixture(scope="module")
def solo_video(solo, video_file) -> str:
    vid = upload(solo.url, video_file).json()["id"]
    assert wait_ready(solo.url, vid)["status"] == "ready"
    return vid


def _ask_in_thread(url: str, vid: str, question: str, max_tokens: int, out: dict, name: str):
    import threading

    def run() -> None:
        r = httpx.post(url + "/v1/ask", json={"video_id": vid, "question": question, "max_tokens": max_tokens},
                       timeout=120)
        out[name] = (time.monotonic(), r.status_code, r.json())

    t = threading.Thread(target=run)
    t.start()
    return t


def test_an_ask_joins_the_batch_a_busy_worker_is_decoding(solo, solo_video):
    """One worker, decoding a long answer: a short question sent meanwhile is answered first."""
    out: dict = {}
    long = _ask_in_thread(solo.url, solo_video, "Describe everything that happens.", 3000, out, "long")
    time.sleep(0.8)  # the long answer is decoding by now
    _ask_in_thread(solo.url, solo_video, QUESTION, 3, out, "short").join()
    long.join()
    (t_long, code_long, long_body), (t_short, code_short, short_body) = out["long"], out["short"]
    assert code_long == code_short == 200
    assert long_body["usage"]["completion_tokens"] == 3000 and short_body["usage"]["completion_tokens"] == 3
    assert t_short < t_long, "the short ask waited for the long one instead of joining"


def test_url_ingest_fetches_over_http_and_refuses_bad_urls(solo, video_file):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(video_file.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        r = httpx.post(solo.url + "/v1/videos", json={"url": f"{base}/{video_file.name}"}, timeout=60)
        assert r.status_code == 202, r.text
        assert wait_ready(solo.url, r.json()["id"])["status"] == "ready"
        missing = httpx.post(solo.url + "/v1/videos", json={"url": f"{base}/nope.mp4"}, timeout=60)
        assert missing.status_code == 422 and missing.json()["error"]["code"] == "url_fetch_failed"
        ftp = httpx.post(solo.url + "/v1/videos", json={"url": "ftp://example.invalid/v.mp4"}, timeout=10)
        assert ftp.status_code == 400 and ftp.json()["error"]["code"] == "bad_url"
    finally:
        server.shutdown()


def test_sigterm_lets_the_worker_finish_the_ask_in_flight(solo, solo_video):
    """Runs last on the solo stack: SIGTERM stops the worker taking jobs, not the answer it is making."""
    out: dict = {}
    ask = _ask_in_thread(solo.url, solo_video, "Describe everything that happens.", 2000, out, "ask")
    time.sleep(0.8)
    worker = solo.workers[0]
    assert worker.stop(signal.SIGTERM, timeout=60) == 0
    ask.join()
    _, code, body = out["ask"]
    assert code == 200 and body["usage"]["completion_tokens"] == 2000
