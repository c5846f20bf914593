"""The Helm chart in k8s/tempo-serve: rendered offline with the Helm Go SDK (helm-python-sdk,
a ctypes binding to libhelm_c shipped inside the wheel; no helm binary), linted, schema-checked,
validated against Kubernetes 1.30 OpenAPI schemas (kubernetes-validate) and checked against the
service's real interface: settings names, routes, ports, Redis stream / consumer-group names.
"""

from __future__ import annotations

import copy
import typing
from pathlib import Path

import helm_python as helm  # pip install helm-python-sdk (dev extra); a hard import: never skip
import kubernetes_validate  # pip install kubernetes-validate (dev extra)
import pytest
import yaml

from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "k8s" / "tempo-serve"
PRODUCTION = CHART / "examples" / "production-gpu.yaml"
KUBE_VERSION = "1.30.0"
RELEASE = "tempo-serve"
NAMESPACE = "tempo"
FULLNAME = "tempo-serve"  # release name == chart name -> fullname is the release name

SETTINGS = set(Settings.model_fields)
ENV_NAMES = {f"TEMPO_{name.upper()}" for name in SETTINGS}

# Custom resources: no schema ships with kubernetes-validate, so they are skipped there on
# purpose and their fields are asserted below instead.
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}

# Settings the chart wires itself (not via `config:`) -> the container(s) that must get them.
MANAGED = {
    "redis_url": {"gateway", "worker"},
    "storage_dir": {"gateway", "worker"},
    "model_path": {"worker"},
    "svlm_path": {"worker"},
    "api_keys": {"gateway"},
    "port": {"gateway"},
    "worker_metrics_port": {"worker"},
    "worker_id": {"worker"},
}
# Non-TEMPO env the chart may set (anything else is a typo until proven otherwise).
OTHER_ENV = {"HF_HUB_OFFLINE", "HF_HOME", "HOME"}

GATEWAY_PORT = Settings.model_fields["port"].default  # 8000
WORKER_PORT = Settings.model_fields["worker_metrics_port"].default  # 9100


# ---------------------------------------------------------------------------------------------
# helpers


def load_values(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def render(values: dict | None = None) -> list[dict]:
    """Render the chart (schema-validated like `helm template`) into a list of objects."""
    values = values or {}
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for name, text in sorted(manifests.items()):
        if name.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__template__"] = name
                docs.append(doc)
    return docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, got {[kn(d) for d in docs]}"
    return found[0]


def kn(doc: dict) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def deployment(docs: list[dict], component: str) -> dict:
    return one(docs, "Deployment", f"{FULLNAME}-{component}")


def container(docs: list[dict], component: str) -> dict:
    (c,) = [c for c in deployment(docs, component)["spec"]["template"]["spec"]["containers"] if c["name"] == component]
    return c


def configmap_data(docs: list[dict], name: str) -> dict[str, str]:
    return one(docs, "ConfigMap", name).get("data") or {}


def container_env(docs: list[dict], c: dict) -> dict[str, object]:
    """Every env var a container gets: envFrom ConfigMaps (resolved) + env entries."""
    env: dict[str, object] = {}
    for src in c.get("envFrom", []):
        assert "configMapRef" in src, f"unexpected envFrom source {src}"
        env.update(configmap_data(docs, src["configMapRef"]["name"]))
    for e in c.get("env", []):
        assert e["name"] not in env or "valueFrom" not in e, f"{e['name']} set twice"
        env[e["name"]] = e.get("value", e.get("valueFrom"))
    return env


def all_pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    return [(kn(d), d["spec"]["template"]["spec"]) for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


def resolve_port(c: dict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (p,) = [p["containerPort"] for p in c["ports"] if p["name"] == port]
    return p


def sample_value(annotation: object) -> object:
    """A non-default, type-correct value for a Settings field annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return typing.get_args(annotation)[-1]
    if origin is not None and type(None) in typing.get_args(annotation):
        return sample_value(next(a for a in typing.get_args(annotation) if a is not type(None)))
    if annotation is bool:
        return True
    if annotation is int:
        return 3 * 1024**4 + 7  # > 2**32, catches float / 1e+12 rendering
    if annotation is float:
        return 12.5
    if annotation is Path or annotation is str:
        return "/x/y"
    raise AssertionError(f"no sample for {annotation!r}")


@pytest.fixture(scope="module")
def default_docs() -> list[dict]:
    return render()


@pytest.fixture(scope="module")
def prod_values() -> dict:
    return load_values(PRODUCTION)


@pytest.fixture(scope="module")
def prod_docs(prod_values: dict) -> list[dict]:
    return render(prod_values)


def kitchen_sink_values() -> dict:
    """Default values with every optional object switched on (bundled Redis + KEDA + ingress)."""
    return {
        "apiKeys": {"keys": ["k1", "k2"]},
        "gateway": {"ingress": {"enabled": True, "className": "nginx", "tls": [{"secretName": "t", "hosts": ["tempo.example.com"]}]}},
        "worker": {"keda": {"enabled": True, "redisStreams": {"includeIngest": True}}},
        "metrics": {"serviceMonitor": {"enabled": True}},
    }


VARIANTS = {
    "default": lambda: {},
    "production": lambda: load_values(PRODUCTION),
    "kitchen-sink": kitchen_sink_values,
    "keda-prometheus": lambda: {"worker": {"keda": {"enabled": True, "trigger": "prometheus"}}},
    "no-autoscaling": lambda: {"gateway": {"autoscaling": {"enabled": False}, "pdb": {"enabled": False}}},
}


# ---------------------------------------------------------------------------------------------
# lint, schema, Kubernetes schemas


@pytest.mark.parametrize("variant", ["default", "production"])
def test_helm_lint_strict_is_clean(variant: str) -> None:
    report = helm.lint(str(CHART), VARIANTS[variant](), strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_manifests_validate_against_kubernetes_schemas(variant: str) -> None:
    docs = render(VARIANTS[variant]())
    assert docs
    checked = 0
    for doc in docs:
        obj = {k: v for k, v in doc.items() if k != "__template__"}
        if doc["kind"] in CRD_KINDS:
            continue  # no CRD schemas in kubernetes-validate; fields asserted in the KEDA / monitor tests
        # strict: unknown fields (typos such as `readOnlyRootFileSystem`) fail too
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        checked += 1
    assert checked >= 8


def test_validation_catches_a_broken_manifest(default_docs: list[dict]) -> None:
    """The validator really rejects bad objects (so the test above means something)."""
    dep = copy.deepcopy(deployment(default_docs, "worker"))
    dep.pop("__template__")
    dep["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, KUBE_VERSION, strict=True)


def test_all_kinds_rendered(default_docs: list[dict], prod_docs: list[dict]) -> None:
    kinds = {d["kind"] for d in default_docs}
    assert {"Deployment", "Service", "ConfigMap", "StatefulSet", "PersistentVolumeClaim",
            "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceAccount"} <= kinds
    prod_kinds = {d["kind"] for d in prod_docs}
    assert {"Ingress", "ScaledObject", "TriggerAuthentication", "ServiceMonitor"} <= prod_kinds
    # production uses external Redis and existing claims
    assert "StatefulSet" not in prod_kinds
    assert "PersistentVolumeClaim" not in prod_kinds


@pytest.mark.parametrize(
    "values, message",
    [
        ({"config": {"ask_batchsize": 4}}, "ask_batchsize"),  # typo in a setting name
        ({"config": {"ask_batch_size": "eight"}}, "ask_batch_size"),
        ({"config": {"dtype": "fp8"}}, "dtype"),
        ({"config": {"redis_url": "redis://x"}}, "redis_url"),  # managed: use redis.*
        ({"worker": {"keda": {"enabled": True, "minReplicaCount": 0}}}, "minReplicaCount"),
        ({"worker": {"probes": {"startup": {"path": "/health"}, "liveness": {"path": "/healthz"},
                                 "readiness": {"path": "/readyz"}}}}, "path"),
    ],
)
def test_values_schema_rejects(values: dict, message: str) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError) as err:
        chart.validate_schema(values)
    assert message in str(err.value)


def test_production_example_passes_schema(prod_values: dict) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(prod_values)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"redis": {"bundled": {"enabled": False}}}, "redis.external.existingSecret"),
        ({"redis": {"external": {"existingSecret": "r"}}}, "not both"),
    ],
)
def test_redis_misconfiguration_fails_render(values: dict, message: str) -> None:
    with pytest.raises(helm.HelmError) as err:
        render(values)
    assert message in str(err.value)


# ---------------------------------------------------------------------------------------------
# settings: names and reachability


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_env_name_is_a_setting(variant: str) -> None:
    docs = render(VARIANTS[variant]())
    seen = set()
    for cm in by_kind(docs, "ConfigMap"):
        for key in cm.get("data") or {}:
            assert key in ENV_NAMES, f"{kn(cm)}: {key} is not a Settings field"
            seen.add(key)
    for where, spec in all_pod_specs(docs):
        for c in spec["containers"] + spec.get("initContainers", []):
            for e in c.get("env", []):
                name = e["name"]
                if name.startswith("TEMPO_"):
                    assert name in ENV_NAMES, f"{where}/{c['name']}: {name} is not a Settings field"
                else:
                    assert name in OTHER_ENV, f"{where}/{c['name']}: unexpected env {name}"
                seen.add(name)
    assert "TEMPO_REDIS_URL" in seen


def config_schema_keys() -> set[str]:
    with helm.Chart.load(str(CHART)) as chart:
        return set(chart.schema["properties"]["config"]["properties"])


def test_config_schema_covers_exactly_the_unmanaged_settings() -> None:
    keys = config_schema_keys()
    assert keys | set(MANAGED) == SETTINGS, f"missing: {SETTINGS - keys - set(MANAGED)}, stale: {keys - SETTINGS}"
    assert not keys & set(MANAGED), "managed settings must not also be free-form config"


def test_every_setting_is_reachable_and_parses() -> None:
    """Set every `config` key to a non-default value; each managed one via its dedicated value.
    The env each container receives must build a Settings object holding exactly those values."""
    config = {k: sample_value(Settings.model_fields[k].annotation) for k in config_schema_keys()}
    values = {
        "config": config,
        "apiKeys": {"keys": ["key-a", "key-b"]},
        "storage": {"mountPath": "/srv/storage"},
        "models": {"mountPath": "/weights", "tempoDir": "T6", "svlmDir": "Q2"},
        "gateway": {"port": 8080},
        "worker": {"metricsPort": 9200},
    }
    docs = render(values)
    api_secret = one(docs, "Secret", f"{FULLNAME}-api-keys")
    reached: dict[str, set[str]] = {}
    for component in ("gateway", "worker"):
        raw = container_env(docs, container(docs, component))
        env = {}
        for name, value in raw.items():
            if not name.startswith("TEMPO_"):
                continue
            reached.setdefault(name[len("TEMPO_"):].lower(), set()).add(component)
            if isinstance(value, dict):  # valueFrom
                if "secretKeyRef" in value:
                    ref = value["secretKeyRef"]
                    assert ref["name"] == api_secret["metadata"]["name"]
                    value = api_secret["stringData"][ref["key"]]
                else:
                    assert value["fieldRef"]["fieldPath"] == "metadata.name"
                    value = "pod-name"
            env[name] = value
        settings = Settings(**{k[len("TEMPO_"):].lower(): v for k, v in env.items()
                               if k != "TEMPO_API_KEYS"}, api_keys=env.get("TEMPO_API_KEYS", []))
        for key, expected in config.items():
            got = getattr(settings, key)
            assert (str(got) if isinstance(got, Path) else got) == expected, f"{component}: {key}={got!r}"
        if component == "gateway":
            assert settings.port == 8080 and settings.api_keys == ["key-a", "key-b"]
        else:
            assert settings.worker_metrics_port == 9200
            assert str(settings.model_path) == "/weights/T6" and str(settings.svlm_path) == "/weights/Q2"
            assert settings.worker_id == "pod-name"
        assert str(settings.storage_dir) == "/srv/storage"
        assert settings.redis_url == f"redis://{FULLNAME}-redis:6379/0"
    for key in config:
        assert reached.get(key) == {"gateway", "worker"}, key
    for key, components in MANAGED.items():
        assert components <= reached.get(key, set()), f"{key} not reaching {components}"


# ---------------------------------------------------------------------------------------------
# GPU worker


@pytest.mark.parametrize("variant", ["default", "production"])
def test_worker_gets_a_gpu_and_gpu_scheduling(variant: str) -> None:
    docs = render(VARIANTS[variant]())
    spec = deployment(docs, "worker")["spec"]["template"]["spec"]
    c = container(docs, "worker")
    assert int(c["resources"]["requests"]["nvidia.com/gpu"]) >= 1
    assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"]
    assert spec["runtimeClassName"] == "nvidia"
    assert any(t.get("key") == "nvidia.com/gpu" for t in spec["tolerations"])
    # the gateway must not hold a GPU
    assert "nvidia.com/gpu" not in str(container(docs, "gateway")["resources"])
    # /dev/shm from an in-memory emptyDir
    shm = [v for v in spec["volumes"] if v["name"] == "dshm"][0]
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]


def test_production_worker_placement(prod_docs: list[dict], prod_values: dict) -> None:
    spec = deployment(prod_docs, "worker")["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == prod_values["worker"]["nodeSelector"]
    assert "podAntiAffinity" in spec["affinity"]


@pytest.mark.parametrize("variant", ["default", "production"])
def test_worker_graceful_shutdown(variant: str) -> None:
    docs = render(VARIANTS[variant]())
    spec = deployment(docs, "worker")["spec"]["template"]["spec"]
    c = container(docs, "worker")
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    # a long-video batch can take minutes: at least 10 minutes after the preStop hook
    assert spec["terminationGracePeriodSeconds"] - pre_stop >= 600
    gw = deployment(docs, "gateway")["spec"]["template"]["spec"]
    gw_pre_stop = int(container(docs, "gateway")["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert gw["terminationGracePeriodSeconds"] > gw_pre_stop > 0


def test_worker_rollout_needs_no_extra_gpu(default_docs: list[dict]) -> None:
    strategy = deployment(default_docs, "worker")["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxSurge"] == 0


# ---------------------------------------------------------------------------------------------
# probes and services against the real routes / ports


@pytest.mark.parametrize("variant", ["default", "production"])
def test_probes_hit_the_service_routes(variant: str) -> None:
    docs = render(VARIANTS[variant]())
    expected = {
        "gateway": (GATEWAY_PORT, {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}),
        "worker": (WORKER_PORT, {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}),
    }
    for component, (port, paths) in expected.items():
        c = container(docs, component)
        env = container_env(docs, c)
        port_env = "TEMPO_PORT" if component == "gateway" else "TEMPO_WORKER_METRICS_PORT"
        assert int(env[port_env]) == port
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = c[probe]["httpGet"]
            assert resolve_port(c, get["port"]) == port, (component, probe)
            assert get["path"] in ("/healthz", "/readyz")
            if probe in paths:
                assert get["path"] == paths[probe], (component, probe)


def test_services_select_their_pods(prod_docs: list[dict]) -> None:
    for svc in by_kind(prod_docs, "Service"):
        selector = svc["spec"]["selector"]
        matching = [d for d in by_kind(prod_docs, "Deployment") + by_kind(prod_docs, "StatefulSet")
                    if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matching) == 1, kn(svc)
        c = matching[0]["spec"]["template"]["spec"]["containers"][0]
        for port in svc["spec"]["ports"]:
            resolve_port(c, port["targetPort"])  # named port exists on the container
    gw = one(prod_docs, "Service", f"{FULLNAME}-gateway")
    assert resolve_port(container(prod_docs, "gateway"), gw["spec"]["ports"][0]["targetPort"]) == GATEWAY_PORT


def test_ingress_routes_to_gateway(prod_docs: list[dict]) -> None:
    (ing,) = by_kind(prod_docs, "Ingress")
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    svc = one(prod_docs, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
    # large video uploads
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]


def test_pdbs_and_hpa_target_the_right_pods(default_docs: list[dict]) -> None:
    for component in ("gateway", "worker"):
        pdb = one(default_docs, "PodDisruptionBudget", f"{FULLNAME}-{component}")
        labels = deployment(default_docs, component)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (hpa,) = by_kind(default_docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{FULLNAME}-gateway"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # replicas left to the HPA
    assert "replicas" not in deployment(default_docs, "gateway")["spec"]


# ---------------------------------------------------------------------------------------------
# KEDA / ServiceMonitor (custom resources: asserted field by field)


def test_keda_scales_workers_on_the_ask_stream(prod_docs: list[dict]) -> None:
    (so,) = by_kind(prod_docs, "ScaledObject")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{FULLNAME}-worker"}
    assert so["spec"]["minReplicaCount"] >= 1  # gateway /readyz needs a live worker
    assert so["spec"]["maxReplicaCount"] >= so["spec"]["minReplicaCount"]
    triggers = so["spec"]["triggers"]
    ask = [t for t in triggers if t["metadata"]["stream"] == "tempo:jobs:ask"]
    assert len(ask) == 1
    assert {t["type"] for t in triggers} == {"redis-streams"}
    for t in triggers:
        assert t["metadata"]["stream"] in {"tempo:jobs:ask", "tempo:jobs:ingest"}
        assert t["metadata"]["consumerGroup"] == "tempo-workers"
        assert int(t["metadata"]["pendingEntriesCount"]) >= 1
        assert all(isinstance(v, str) for v in t["metadata"].values()), "KEDA metadata values must be strings"
        (auth,) = by_kind(prod_docs, "TriggerAuthentication")
        assert t["authenticationRef"]["name"] == auth["metadata"]["name"]
    params = {r["parameter"] for r in auth["spec"]["secretTargetRef"]}
    assert {"address", "password"} <= params
    # KEDA owns the replica count
    assert "replicas" not in deployment(prod_docs, "worker")["spec"]


def test_keda_with_bundled_redis_points_at_the_redis_service() -> None:
    docs = render({"worker": {"keda": {"enabled": True}}})
    (so,) = by_kind(docs, "ScaledObject")
    (t,) = so["spec"]["triggers"]
    assert (t["metadata"]["stream"], t["metadata"]["consumerGroup"]) == ("tempo:jobs:ask", "tempo-workers")
    (redis_svc,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == f"{FULLNAME}-redis"]
    port = redis_svc["spec"]["ports"][0]["port"]
    assert t["metadata"]["address"] == f"{FULLNAME}-redis.{NAMESPACE}.svc:{port}"


def test_keda_prometheus_trigger_uses_the_queue_metric() -> None:
    docs = render(VARIANTS["keda-prometheus"]())
    (so,) = by_kind(docs, "ScaledObject")
    (t,) = so["spec"]["triggers"]
    assert t["type"] == "prometheus"
    assert 'tempo_queue_depth{queue="ask"}' in t["metadata"]["query"]
    assert float(t["metadata"]["threshold"]) > 0


def test_service_monitors_scrape_metrics(prod_docs: list[dict]) -> None:
    monitors = by_kind(prod_docs, "ServiceMonitor")
    assert len(monitors) == 2
    for sm in monitors:
        svcs = [s for s in by_kind(prod_docs, "Service")
                if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
        assert len(svcs) == 1, kn(sm)
        (ep,) = sm["spec"]["endpoints"]
        assert ep["path"] == "/metrics"
        assert ep["port"] in {p["name"] for p in svcs[0]["spec"]["ports"]}
        assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"


# ---------------------------------------------------------------------------------------------
# Redis, storage, secrets, security


def test_bundled_redis_is_durable_and_never_evicts(default_docs: list[dict]) -> None:
    (sts,) = by_kind(default_docs, "StatefulSet")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert c["image"].split(":")[0] == "redis"
    args = c["args"]
    assert args[0] == "redis-server"
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    data = sts["spec"]["volumeClaimTemplates"][0]
    assert {"name": data["metadata"]["name"], "mountPath": "/data"} in c["volumeMounts"]
    assert args[args.index("--dir") + 1] == "/data"


def test_external_redis_url_comes_from_a_secret(prod_docs: list[dict], prod_values: dict) -> None:
    ext = prod_values["redis"]["external"]
    for component in ("gateway", "worker"):
        env = container_env(prod_docs, container(prod_docs, component))
        assert env["TEMPO_REDIS_URL"] == {"secretKeyRef": {"name": ext["existingSecret"], "key": ext["secretKey"]}}


def test_api_keys_come_from_a_secret(prod_docs: list[dict], prod_values: dict) -> None:
    env = container_env(prod_docs, container(prod_docs, "gateway"))
    assert env["TEMPO_API_KEYS"] == {"secretKeyRef": {"name": prod_values["apiKeys"]["existingSecret"], "key": "api-keys"}}
    assert "TEMPO_API_KEYS" not in container_env(prod_docs, container(prod_docs, "worker"))
    for cm in by_kind(prod_docs, "ConfigMap"):
        assert "TEMPO_API_KEYS" not in (cm.get("data") or {})


@pytest.mark.parametrize("variant", ["default", "production"])
def test_shared_storage_and_model_mounts(variant: str) -> None:
    docs = render(VARIANTS[variant]())
    claims = {}
    for component in ("gateway", "worker"):
        spec = deployment(docs, component)["spec"]["template"]["spec"]
        c = container(docs, component)
        storage_dir = container_env(docs, c)["TEMPO_STORAGE_DIR"]
        (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == storage_dir]
        (vol,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        claims[component] = vol["persistentVolumeClaim"]["claimName"]
    assert claims["gateway"] == claims["worker"], "gateway and workers must share one storage claim"
    w = container(docs, "worker")
    env = container_env(docs, w)
    (models,) = [m for m in w["volumeMounts"] if m["name"] == "models"]
    assert models["readOnly"] is True
    for name in ("TEMPO_MODEL_PATH", "TEMPO_SVLM_PATH"):
        assert env[name].startswith(models["mountPath"] + "/")
    if variant == "production":
        assert claims["worker"] == "tempo-storage"
    else:
        pvc = one(docs, "PersistentVolumeClaim", claims["worker"])
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize("variant", ["default", "production"])
def test_pods_run_non_root_with_read_only_root(variant: str) -> None:
    docs = render(VARIANTS[variant]())
    for where, spec in all_pod_specs(docs):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] != 0, where
        assert spec["automountServiceAccountToken"] is False, where
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp, f"{where}: read-only root needs a writable /tmp"
            (vol,) = [v for v in spec["volumes"] if v["name"] == tmp[0]["name"]]
            assert "emptyDir" in vol
            assert c["resources"].get("requests"), where


def test_config_change_rolls_pods() -> None:
    a = render({"config": {"ask_batch_size": 4}})
    b = render({"config": {"ask_batch_size": 16}})
    for component in ("gateway", "worker"):
        ann = lambda docs: deployment(docs, component)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]  # noqa: E731, B023
        assert ann(a) != ann(b)
