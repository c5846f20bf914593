"""Segment cache tiers: byte budgets, the prefix KV dropped before whole entries, callers never robbed."""

from __future__ import annotations

import pytest

from tests.conftest import GOLDEN_CASES, golden_case
from workers.cache import CacheKey, SegmentCache


@pytest.fixture(scope="module")
def encodings(tiny_pipeline):
    meta, arrays = golden_case(GOLDEN_CASES[0])
    fps = meta["case"]["fps"]
    return [tiny_pipeline.encode(arrays["frames"][i * 8: i * 8 + 24], fps, prefix_kv=True) for i in range(3)]


def cache_for(tmp_path, gpu_bytes: int) -> SegmentCache:
    # The "gpu" tier runs on the CPU here: its policy does not depend on the device.
    return SegmentCache(tmp_path, gpu_device="cpu", gpu_bytes=gpu_bytes, host_bytes=1 << 30, disk_bytes=1 << 30)


def key(i: int) -> CacheKey:
    return CacheKey.make(f"vid_{i}", "rev", max_edge=512)


def test_gpu_tier_keeps_the_prefix_kv_while_it_fits_and_host_and_disk_never_do(tmp_path, encodings):
    cache = cache_for(tmp_path, gpu_bytes=10 * encodings[0].nbytes)
    cache.put(key(0), encodings[0])
    assert cache.gpu.get(key(0)).prefix_kv is not None
    assert cache.host.get(key(0)).prefix_kv is None
    assert (cache.path(key(0)) / "meta.json").is_file()


def test_an_entry_too_big_with_its_kv_is_kept_without_it_and_the_caller_keeps_its_kv(tmp_path, encodings):
    enc = encodings[0]
    kv_bytes = enc.prefix_kv.nbytes
    cache = cache_for(tmp_path, gpu_bytes=enc.nbytes - kv_bytes + 1)
    cache.put(key(0), enc)
    assert cache.gpu.get(key(0)).prefix_kv is None
    assert enc.prefix_kv is not None  # the answer being made with it still has it
    assert not cache.gpu_can_hold(enc.nbytes)


def test_making_room_drops_old_prefix_kv_before_evicting_entries(tmp_path, encodings):
    a, b, c = encodings
    with_kv, without_kv = a.nbytes, a.nbytes - a.prefix_kv.nbytes
    cache = cache_for(tmp_path, gpu_bytes=with_kv + 2 * without_kv + 1000)
    cache.put(key(0), a)
    cache.put(key(1), b)
    cache.put(key(2), c)
    entries = [cache.gpu.get(key(i)) for i in range(3)]
    assert all(e is not None for e in entries)  # nothing evicted...
    assert [e.prefix_kv is not None for e in entries] == [False, False, True]  # ...older KV dropped first
    assert cache.gpu.bytes <= cache.gpu.capacity
    assert a.prefix_kv is not None and b.prefix_kv is not None  # callers' objects untouched


def test_a_miss_in_every_tier_returns_none_and_disk_entries_survive_a_restart(tmp_path, encodings):
    cache = cache_for(tmp_path, gpu_bytes=1 << 30)
    assert cache.get(key(9)) is None
    cache.put(key(0), encodings[0])
    restarted = cache_for(tmp_path, gpu_bytes=1 << 30)
    enc, tier = restarted.get(key(0))
    assert tier == "disk" and enc.num_segments == encodings[0].num_segments
