"""Static checks of docker/*.Dockerfile, docker/compose.yaml and .dockerignore against the repo
and the service interface (no Docker engine needed)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
GATEWAY = DOCKER / "gateway.Dockerfile"
WORKER = DOCKER / "worker.Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
GATEWAY_REQS = DOCKER / "requirements-gateway.txt"
DOCKERFILES = {"gateway": GATEWAY, "worker": WORKER}

ENV_NAMES = {f"TEMPO_{name.upper()}" for name in Settings.model_fields}
# Heavy model-side packages that must never be in the gateway image.
WORKER_ONLY = {"torch", "transformers", "safetensors", "av", "numpy", "pillow", "flash-attn"}
FORBIDDEN_IN_GATEWAY = {"torch", "transformers", "av", "flash-attn", "flash_attn", "torchvision"}


# ---------------------------------------------------------------------------------------------
# a small Dockerfile / .dockerignore parser


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # comment inside a continuation
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        op, _, args = buf.strip().partition(" ")
        out.append((op.upper(), args.strip()))
        buf = ""
    assert not buf, f"{path}: dangling line continuation"
    return out


def args_of(path: Path, op: str) -> list[str]:
    return [a for o, a in instructions(path) if o == op]


def copy_sources(args: str) -> list[str]:
    parts = [p for p in shlex.split(args) if not p.startswith("--")]
    assert len(parts) >= 2, args
    return parts[:-1]


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    pats = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = line.lstrip("!").strip("/")
        rx = ""
        i = 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif pat.startswith("**", i):
                rx += ".*"
                i += 2
            elif pat[i] == "*":
                rx += "[^/]*"
                i += 1
            elif pat[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(pat[i])
                i += 1
        pats.append((negate, re.compile(rx + "$")))
    return pats


def is_ignored(rel: str) -> bool:
    """Docker semantics: the last matching pattern wins; a pattern matching a parent dir matches."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, rx in dockerignore_patterns():
        if any(rx.match(p) for p in prefixes):
            ignored = not negate
    return ignored


def context_files(src: str) -> list[Path]:
    matches = sorted(REPO.glob(src)) if any(ch in src for ch in "*?[") else [REPO / src]
    matches = [m for m in matches if m.exists()]
    files = []
    for m in matches:
        files.extend([p for p in m.rglob("*") if p.is_file()] if m.is_dir() else [m])
    return files


def tempo_names(text: str) -> set[str]:
    return set(re.findall(r"\bTEMPO_[A-Z0-9_]+", text))


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# ---------------------------------------------------------------------------------------------
# parser sanity (so the checks below can fail)


def test_dockerignore_matcher() -> None:
    assert is_ignored(".git/HEAD")
    assert is_ignored("tests/test_x.py")
    assert is_ignored("service/__pycache__/settings.cpython-311.pyc")
    assert is_ignored("var/models/Tempo-6B/model.safetensors")
    assert not is_ignored("service/settings.py")
    assert not is_ignored("models/assets/tiny/Tempo-6B/model.safetensors")  # package data re-included


# ---------------------------------------------------------------------------------------------
# both Dockerfiles


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_copy_sources_exist_and_are_in_the_build_context(image: str) -> None:
    copies = args_of(DOCKERFILES[image], "COPY") + args_of(DOCKERFILES[image], "ADD")
    assert copies
    for args in copies:
        assert "--from" not in args
        for src in copy_sources(args):
            files = context_files(src)
            if src.endswith("*"):  # optional wildcard (README*): may legitimately match nothing
                continue
            assert files, f"{image}: COPY source {src!r} does not exist"
            kept = [f for f in files if not is_ignored(f.relative_to(REPO).as_posix())]
            assert kept, f"{image}: COPY source {src!r} is excluded by .dockerignore"
            if (REPO / src).is_file():
                assert kept == files, f"{image}: {src} is excluded by .dockerignore"


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_every_project_package_is_copied(image: str) -> None:
    includes = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {i.rstrip("*.") for i in includes}
    copied = {src.rstrip("/") for args in args_of(DOCKERFILES[image], "COPY") for src in copy_sources(args)}
    assert packages <= copied, f"{image}: packages not copied: {packages - copied}"
    assert "pyproject.toml" in copied


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_tempo_env_names_are_settings(image: str) -> None:
    names = tempo_names(DOCKERFILES[image].read_text())
    assert names, "expected some TEMPO_* defaults"
    assert names <= ENV_NAMES, names - ENV_NAMES


@pytest.mark.parametrize("image, port_env, port", [("gateway", "TEMPO_PORT", 8000), ("worker", "TEMPO_WORKER_METRICS_PORT", 9100)])
def test_healthcheck_hits_healthz_on_the_service_port(image: str, port_env: str, port: int) -> None:
    (hc,) = args_of(DOCKERFILES[image], "HEALTHCHECK")
    cmd = hc.split(" CMD ", 1)[1]
    assert "/healthz" in cmd and port_env in cmd and str(port) in cmd
    assert Settings.model_fields[port_env[len("TEMPO_"):].lower()].default == port
    # the helper it runs is copied into the image
    script = re.search(r"(/\S+healthcheck\.py)", cmd).group(1)
    assert any(a.split()[-1] == script for a in args_of(DOCKERFILES[image], "COPY"))
    assert (DOCKER / "healthcheck.py").is_file()
    exposed = " ".join(args_of(DOCKERFILES[image], "EXPOSE")).split()
    assert str(port) in exposed


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_runs_as_non_root(image: str) -> None:
    users = args_of(DOCKERFILES[image], "USER")
    assert users, "no USER instruction"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    # USER comes after every RUN (nothing installs as the runtime user by accident, and no RUN
    # after it silently needs root)
    ops = [o for o, _ in instructions(DOCKERFILES[image])]
    assert max(i for i, o in enumerate(ops) if o == "RUN") < ops.index("USER")


def test_both_images_share_the_storage_uid() -> None:
    uids = {image: args_of(path, "USER")[-1] for image, path in DOCKERFILES.items()}
    assert uids["gateway"] == uids["worker"], "gateway and worker write the same storage volume"


@pytest.mark.parametrize("image, cmd", [("gateway", ["tempo", "serve"]), ("worker", ["tempo", "worker"])])
def test_cmd_runs_the_console_script(image: str, cmd: list[str]) -> None:
    (c,) = args_of(DOCKERFILES[image], "CMD")
    assert yaml.safe_load(c) == cmd
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert cmd[0] in scripts


# ---------------------------------------------------------------------------------------------
# gateway image: no torch


def gateway_requirements() -> list[Requirement]:
    reqs = []
    for line in GATEWAY_REQS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            reqs.append(Requirement(line))
    return reqs


def test_gateway_base_image_and_install_without_torch() -> None:
    (base,) = args_of(GATEWAY, "FROM")
    assert base.split()[0] == "python:3.11-slim"
    runs = args_of(GATEWAY, "RUN")
    # every `pip install ...` command (split shell chains so other commands don't count)
    pip_installs = [cmd.strip() for r in runs for cmd in re.split(r"&&|;", r) if "pip install" in cmd]
    assert any("-r" in r and "requirements-gateway.txt" in r for r in pip_installs)
    project = [r for r in pip_installs if "/opt/tempo/src" in r]
    assert project and all("--no-deps" in r for r in project), "the project must be installed with --no-deps"
    text = " ".join(pip_installs).lower()
    for pkg in FORBIDDEN_IN_GATEWAY:
        assert not re.search(rf"(?<![\w-]){re.escape(pkg)}(?![\w-])", text), pkg
    # and the build fails if one slipped in transitively
    assert any("find_spec" in r and "'torch'" in r and "sys.exit" in r for r in runs)


def test_gateway_requirements_match_pyproject() -> None:
    deps = {canonicalize_name(Requirement(d).name): Requirement(d)
            for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    reqs = {canonicalize_name(r.name): r for r in gateway_requirements()}
    assert not set(reqs) & {canonicalize_name(p) for p in FORBIDDEN_IN_GATEWAY | WORKER_ONLY}
    assert set(reqs) <= set(deps), f"not project deps: {set(reqs) - set(deps)}"
    missing = set(deps) - set(reqs) - {canonicalize_name(p) for p in WORKER_ONLY}
    assert not missing, f"gateway deps missing from requirements-gateway.txt: {missing}"
    for name, req in reqs.items():
        (spec,) = list(req.specifier)
        assert spec.operator == "==", f"{name}: pin exact versions in the image"
        assert deps[name].specifier.contains(spec.version), f"{name}=={spec.version} violates {deps[name]}"


# ---------------------------------------------------------------------------------------------
# worker image: CUDA torch, optional flash-attn


def test_worker_uses_cuda_runtime_and_pinned_cuda_torch() -> None:
    arg_defaults = dict(a.split("=", 1) for a in args_of(WORKER, "ARG") if "=" in a)
    base = arg_defaults["CUDA_IMAGE"] if args_of(WORKER, "FROM") == ["${CUDA_IMAGE}"] else args_of(WORKER, "FROM")[0]
    assert re.fullmatch(r"nvidia/cuda:12\.\d+(\.\d+)?-cudnn-runtime-ubuntu\d\d\.04", base), base
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert arg_defaults["TORCH_VERSION"] == pins["torch"], "worker torch must match constraints.txt"
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu1\d\d", arg_defaults["TORCH_INDEX_URL"])
    runs = " ".join(args_of(WORKER, "RUN"))
    assert '"torch==${TORCH_VERSION}"' in runs and "${TORCH_INDEX_URL}" in runs
    assert "-c /opt/tempo/constraints.txt" in runs


def test_worker_flash_attn_only_from_a_named_wheel() -> None:
    arg_defaults = dict(a.split("=", 1) for a in args_of(WORKER, "ARG") if "=" in a)
    assert arg_defaults["FLASH_ATTN_WHEEL"] in ('""', "")
    runs = args_of(WORKER, "RUN")
    (fa,) = [r for r in runs if "FLASH_ATTN_WHEEL" in r]
    assert 'if [ -n "${FLASH_ATTN_WHEEL}" ]' in fa
    assert 'pip install --no-deps "${FLASH_ATTN_WHEEL}"' in fa
    # never built from source / fetched by name
    assert not re.search(r"pip install[^;&]*\bflash[-_]attn\b", " ".join(runs))
    assert "flash" not in (REPO / "constraints.txt").read_text()


# ---------------------------------------------------------------------------------------------
# compose


def test_compose_redis_never_evicts_and_uses_aof() -> None:
    redis = compose()["services"]["redis"]
    assert redis["image"].split(":")[0] == "redis"
    cmd = redis["command"]
    assert cmd[0] == "redis-server"
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_compose_tempo_env_names_are_settings() -> None:
    names = tempo_names(COMPOSE.read_text())
    assert {"TEMPO_REDIS_URL", "TEMPO_STORAGE_DIR", "TEMPO_MODEL_PATH"} <= names
    assert names <= ENV_NAMES, names - ENV_NAMES
    for name, svc in compose()["services"].items():
        for key in svc.get("environment", {}):
            assert key in ENV_NAMES, f"{name}: {key}"


def test_compose_services_build_from_the_dockerfiles() -> None:
    services = compose()["services"]
    for name in ("gateway", "worker"):
        build = services[name]["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == REPO
        assert (context / build["dockerfile"]).resolve() == DOCKERFILES[name].resolve()
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["environment"]["TEMPO_REDIS_URL"].startswith("redis://redis:6379")


def test_compose_worker_gets_a_gpu_shm_and_grace_period() -> None:
    worker = compose()["services"]["worker"]
    (dev,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert dev["driver"] == "nvidia" and "gpu" in dev["capabilities"] and dev["count"] >= 1
    assert worker["shm_size"]
    minutes = re.fullmatch(r"(\d+)m", worker["stop_grace_period"])
    assert minutes and int(minutes.group(1)) >= 10
    assert "deploy" not in compose()["services"]["gateway"]


def test_compose_storage_is_shared_and_models_mounted() -> None:
    services = compose()["services"]
    mounts = {}
    for name in ("gateway", "worker"):
        storage_dir = services[name]["environment"]["TEMPO_STORAGE_DIR"]
        (vol,) = [v.split(":")[0] for v in services[name]["volumes"] if v.split(":")[1] == storage_dir]
        mounts[name] = vol
    assert mounts["gateway"] == mounts["worker"] and mounts["worker"] in compose()["volumes"]
    env = services["worker"]["environment"]
    models = [v for v in services["worker"]["volumes"] if ":/models" in v]
    assert models and models[0].endswith(":ro")
    assert env["TEMPO_MODEL_PATH"].startswith("/models/") and env["TEMPO_SVLM_PATH"].startswith("/models/")


def test_dockerignore_keeps_junk_out() -> None:
    for path in (".git/config", ".venv/bin/python", "tests/fixtures/x", "var/storage/x",
                 ".pytest_cache/x", "dist/x.whl", "weights/big.safetensors", "k8s/tempo-serve/Chart.yaml"):
        assert is_ignored(path), path
