# Tempo Serve developer commands. `make test` is what CI runs (.ci/run).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps test test-fast lint demo ask-demo bench bench-gpu-tests clean

install: $(STAMP)

# CPU torch on a machine without CUDA: constraints.txt pins torch==2.13.0, which pip takes from the
# CPU wheel on these machines; on a CUDA host the same pin resolves to PyPI's CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# System packages the end-to-end tests need (a real redis-server). Installs with apt-get when root.
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else echo "redis-server missing: install it (Debian/Ubuntu: sudo apt-get install redis-server)"; exit 1; fi; }

test: install system-deps
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check service models workers tests scripts

# The whole service on the embedded tiny (random) model: a real redis-server, the gateway and one
# worker; uploads a generated video and asks two questions (the second from the segment cache).
demo: install
	$(BIN)/python scripts/demo.py

# One-shot answer on a generated video, no server (tempo ask).
ask-demo: install
	@mkdir -p var
	$(BIN)/python scripts/sample_video.py var/demo.mp4 --seconds 20
	$(BIN)/tempo ask var/demo.mp4 "What color is the square?" --max-new-tokens 24

# GPU benchmark (docs/benchmarks.md): run on a CUDA machine whose python3 has torch + transformers;
# needs PyAV too. Writes var/bench.json and prints the table.
BENCH_PY ?= python3
bench:
	@mkdir -p var
	PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True $(BENCH_PY) scripts/bench.py --out var/bench.json

# The GPU parity tests (skipped on machines without CUDA).
bench-gpu-tests:
	$(BENCH_PY) -m pytest -q tests/test_gpu.py tests/test_decoder.py tests/test_parity_golden.py tests/test_pipeline_api.py

clean:
	rm -rf var .pytest_cache .ruff_cache
