"""The deployment files in deploy/ are well-formed.

``docker compose config -q`` validates the Compose file when a Docker client with the
Compose plugin is available (no engine needed); a schema check with PyYAML always runs.
Every Kubernetes manifest in deploy/k8s/ is parsed and checked for the fields the
cluster needs and for consistent cross-references (ConfigMap, PVC, Service selectors).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"

CELERY_APP = "celery -A pyworkflow_celery.app"
REQUIRED_SERVICES = ("redis", "worker", "beat", "server")
PYWORKFLOW_SERVICES = ("worker", "beat", "server")
REQUIRED_ENV = {
    "PYWORKFLOW_EXECUTOR": "celery",
    "PYWORKFLOW_STORAGE": "sqlite:////data/pyworkflow.db",
    "PYWORKFLOW_CELERY__BROKER_URL": "redis://redis:6379/0",
    "PYWORKFLOW_MODULES": "app.workflows",
}
K8S_FILES = (
    "namespace.yaml",
    "configmap.yaml",
    "redis.yaml",
    "worker.yaml",
    "beat.yaml",
    "server.yaml",
    "storage-pvc.yaml",
)
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


# ----- helpers -----


def _command(service: dict[str, Any]) -> str:
    """A service's command as one string (Compose allows a string or a list)."""
    command = service.get("command", "")
    if isinstance(command, list):
        return " ".join(str(part) for part in command)
    return " ".join(str(command).split())


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict (Compose allows a mapping or a list of K=V)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (str(item).partition("=") for item in env)
        return {key: value for key, _, value in pairs}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _named_volumes(service: dict[str, Any]) -> Iterator[str]:
    """Names of the named volumes (not bind mounts) a service mounts."""
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            if entry.get("type", "volume") == "volume" and entry.get("source"):
                yield str(entry["source"])
            continue
        source, sep, _ = str(entry).partition(":")
        if sep and not source.startswith((".", "/", "~", "$")):
            yield source


def _mount_targets(service: dict[str, Any]) -> list[str]:
    """Where a service's volumes are mounted in the container."""
    targets = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            targets.append(str(entry.get("target", "")))
        else:
            parts = str(entry).split(":")
            targets.append(parts[1] if len(parts) > 1 else parts[0])
    return targets


def compose_problems(doc: Any) -> list[str]:
    """What is wrong with a parsed Compose document (empty when it is fine)."""
    if not isinstance(doc, dict):
        return ["the Compose file is not a mapping"]
    services = doc.get("services")
    if not isinstance(services, dict):
        return ["no top-level `services` mapping"]
    problems: list[str] = []
    for name in REQUIRED_SERVICES:
        if not isinstance(services.get(name), dict):
            problems.append(f"service {name!r} missing")
    declared = doc.get("volumes") or {}
    if not isinstance(declared, dict):
        problems.append("top-level `volumes` is not a mapping")
        declared = {}
    for name, service in services.items():
        if not isinstance(service, dict):
            problems.append(f"service {name!r} is not a mapping")
            continue
        if not service.get("image") and not service.get("build"):
            problems.append(f"service {name!r} has neither image nor build")
        for volume in _named_volumes(service):
            if volume not in declared:
                problems.append(f"service {name!r} uses undeclared volume {volume!r}")
        depends = service.get("depends_on") or []
        for other in depends:
            if other not in services:
                problems.append(f"service {name!r} depends on unknown service {other!r}")
    if problems:
        return problems

    worker, beat, server, redis = (services[n] for n in ("worker", "beat", "server", "redis"))
    if not (CELERY_APP in _command(worker) and " worker" in _command(worker)):
        problems.append(f"worker command must run `{CELERY_APP} worker`")
    if "pyworkflow.workflows" not in _command(worker) or "pyworkflow.steps" not in _command(worker):
        problems.append("worker must consume both pyworkflow queues")
    if not (CELERY_APP in _command(beat) and " beat" in _command(beat)):
        problems.append(f"beat command must run `{CELERY_APP} beat`")
    if "pyworkflow serve" not in _command(server):
        problems.append("server command must run `pyworkflow serve`")
    if "--appendonly yes" not in _command(redis):
        problems.append("redis must run with --appendonly yes")
    if not str(redis.get("image", "")).startswith("redis:"):
        problems.append("redis service must use a redis image")
    if (worker.get("deploy") or {}).get("replicas") != 2:
        problems.append("worker must have deploy.replicas: 2")
    if (beat.get("deploy") or {}).get("replicas", 1) != 1:
        problems.append("there must be exactly one beat")
    for name in PYWORKFLOW_SERVICES:
        env = _environment(services[name])
        for key, value in REQUIRED_ENV.items():
            if env.get(key) != value:
                problems.append(f"service {name!r}: {key} must be {value!r}, got {env.get(key)!r}")
        if "/data" not in _mount_targets(services[name]):
            problems.append(f"service {name!r} must mount the shared volume at /data")
    return problems


def _load_compose() -> Any:
    return yaml.safe_load(COMPOSE.read_text())


def _k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def k8s_problems(docs: list[tuple[str, Any]]) -> list[str]:
    """What is wrong with parsed Kubernetes documents (empty when they are fine)."""
    problems: list[str] = []
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for source, doc in docs:
        if not isinstance(doc, dict):
            problems.append(f"{source}: a document is not a mapping")
            continue
        meta = doc.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        for field, value in (("apiVersion", doc.get("apiVersion")), ("kind", doc.get("kind"))):
            if not isinstance(value, str) or not value:
                problems.append(f"{source}: document without {field}")
        if not isinstance(name, str) or not name:
            problems.append(f"{source}: {doc.get('kind')} without metadata.name")
            continue
        kind = str(doc.get("kind"))
        by_kind.setdefault(kind, {})[name] = doc
        if kind in WORKLOAD_KINDS:
            problems.extend(_workload_problems(source, name, doc))
    if problems:
        return problems

    configmaps = by_kind.get("ConfigMap", {})
    claims = by_kind.get("PersistentVolumeClaim", {})
    workloads = {
        name: doc for kind in WORKLOAD_KINDS for name, doc in by_kind.get(kind, {}).items()
    }
    for name, doc in workloads.items():
        pod = doc["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for ref in container.get("envFrom") or []:
                cm = (ref.get("configMapRef") or {}).get("name")
                if cm is not None and cm not in configmaps:
                    problems.append(f"{name}: unknown ConfigMap {cm!r}")
        for volume in pod.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is not None and claim not in claims:
                problems.append(f"{name}: unknown PersistentVolumeClaim {claim!r}")
    for name, service in by_kind.get("Service", {}).items():
        selector = (service.get("spec") or {}).get("selector") or {}
        if not selector or not any(
            selector.items()
            <= ((doc["spec"]["template"].get("metadata") or {}).get("labels") or {}).items()
            for doc in workloads.values()
        ):
            problems.append(f"Service {name!r}: selector {selector} matches no workload")
    for name in ("worker", "beat", "server"):
        if name not in by_kind.get("Deployment", {}):
            problems.append(f"Deployment {name!r} missing")
    if "redis" not in by_kind.get("StatefulSet", {}):
        problems.append("StatefulSet 'redis' missing")
    if problems:
        return problems

    deployments = by_kind["Deployment"]
    if deployments["worker"]["spec"].get("replicas") != 2:
        problems.append("worker Deployment must have 2 replicas")
    beat = deployments["beat"]["spec"]
    if beat.get("replicas") != 1 or (beat.get("strategy") or {}).get("type") != "Recreate":
        problems.append("beat Deployment must have replicas 1 and strategy Recreate")
    for name, verb in (("worker", " worker"), ("beat", " beat")):
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        command = (
            " ".join(container.get("command") or []) + " " + " ".join(container.get("args") or [])
        )
        if CELERY_APP not in command or verb not in command:
            problems.append(f"{name} Deployment must run `{CELERY_APP}{verb}`")
    redis = by_kind["StatefulSet"]["redis"]["spec"]["template"]["spec"]["containers"][0]
    if "--appendonly yes" not in " ".join((redis.get("command") or []) + (redis.get("args") or [])):
        problems.append("redis must run with --appendonly yes")
    data = next(iter(configmaps.values()), {}).get("data") or {}
    for key, value in REQUIRED_ENV.items():
        if data.get(key) != value:
            problems.append(f"ConfigMap: {key} must be {value!r}, got {data.get(key)!r}")
    if not all(isinstance(v, str) for v in data.values()):
        problems.append("ConfigMap data values must be strings")
    if not any("ReadWriteMany" in (c["spec"].get("accessModes") or []) for c in claims.values()):
        problems.append("the SQLite storage PVC must be ReadWriteMany")
    return problems


def _workload_problems(source: str, name: str, doc: dict[str, Any]) -> list[str]:
    spec = doc.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    template = spec.get("template")
    template = template if isinstance(template, dict) else {}
    pod = template.get("spec")
    containers = pod.get("containers") if isinstance(pod, dict) else None
    if not isinstance(containers, list) or not containers:
        return [f"{source}: {name} has no spec.template.spec.containers"]
    problems = [
        f"{source}: {name}: a container without name or image"
        for c in containers
        if not isinstance(c, dict) or not c.get("image") or not c.get("name")
    ]
    match = ((spec.get("selector") or {}).get("matchLabels")) or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if doc.get("kind") != "Job" and (not match or not match.items() <= labels.items()):
        problems.append(f"{source}: {name}: selector.matchLabels must match the pod labels")
    return problems


def _compose_cli() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


# ----- Compose -----


def test_deploy_files_exist() -> None:
    assert COMPOSE.is_file()
    assert (DEPLOY / "Dockerfile").is_file()
    for name in K8S_FILES:
        assert (K8S / name).is_file(), name


def test_compose_file_validates() -> None:
    """``docker compose config`` where the docker client has compose; the schema check always."""
    if _compose_cli():
        result = subprocess.run(
            ["docker", "compose", "config", "-q"],
            cwd=DEPLOY,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
    assert compose_problems(_load_compose()) == []


def test_compose_file_schema() -> None:
    assert compose_problems(_load_compose()) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["services"].pop("beat"), "service 'beat' missing"),
        (lambda d: d.pop("services"), "no top-level `services` mapping"),
        (
            lambda d: [d["services"]["server"].pop(k, None) for k in ("image", "build")],
            "neither image nor build",
        ),
        (lambda d: d["volumes"].pop("pyworkflow-data"), "undeclared volume 'pyworkflow-data'"),
        (
            lambda d: d["services"]["worker"].update(command="celery -A other.app worker"),
            "worker command must run",
        ),
        (
            lambda d: d["services"]["beat"].update(command=["celery", "beat"]),
            "beat command must run",
        ),
        (
            lambda d: d["services"]["worker"].update(environment=["PYWORKFLOW_EXECUTOR=local"]),
            "PYWORKFLOW_EXECUTOR must be 'celery'",
        ),
        (lambda d: d["services"]["redis"].update(command="redis-server"), "--appendonly yes"),
    ],
)
def test_compose_schema_check_catches_breakage(mutate: Any, expected: str) -> None:
    doc = copy.deepcopy(_load_compose())
    mutate(doc)
    assert any(expected in problem for problem in compose_problems(doc)), compose_problems(doc)


def test_dockerfile_installs_pyworkflow_and_plugin_as_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert lines[0].startswith("FROM python:3.11-slim")
    body = "\n".join(lines)
    assert "./plugins/pyworkflow-celery" in body
    assert "pip install ." in body
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1].split()[1] not in ("root", "0")


# ----- Kubernetes -----


def test_k8s_manifests() -> None:
    docs = _k8s_documents()
    assert docs
    assert k8s_problems(docs) == []


def _broken(edit: Any) -> list[str]:
    docs = copy.deepcopy(_k8s_documents())
    edit({(doc["kind"], doc["metadata"]["name"]): doc for _, doc in docs})
    return k8s_problems(docs)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d[("Deployment", "worker")].pop("apiVersion"), "without apiVersion"),
        (lambda d: d[("Deployment", "beat")]["metadata"].pop("name"), "without metadata.name"),
        (
            lambda d: d[("Deployment", "server")]["spec"]["template"]["spec"]["containers"][0].pop(
                "image"
            ),
            "without name or image",
        ),
        (
            lambda d: d[("StatefulSet", "redis")]["spec"]["template"]["spec"].pop("containers"),
            "no spec.template.spec.containers",
        ),
        (
            lambda d: d[("Deployment", "beat")]["spec"].update(replicas=2),
            "replicas 1 and strategy Recreate",
        ),
        (
            lambda d: d[("ConfigMap", "pyworkflow-config")]["data"].pop("PYWORKFLOW_EXECUTOR"),
            "PYWORKFLOW_EXECUTOR",
        ),
        (
            lambda d: d[("Service", "server")]["spec"].update(selector={"app": "nope"}),
            "matches no workload",
        ),
    ],
)
def test_k8s_check_catches_breakage(edit: Any, expected: str) -> None:
    problems = _broken(edit)
    assert any(expected in problem for problem in problems), problems


# ----- Ray on Kubernetes (KubeRay) -----

RAY_K8S = K8S / "ray"
RAY_CLIENT_PORT = 10001


def _ray_documents() -> dict[tuple[str, str], dict[str, Any]]:
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(RAY_K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs[(str(doc.get("kind")), str((doc.get("metadata") or {}).get("name")))] = doc
    return docs


def _config_env_name_problem(name: str) -> str | None:
    """Why ``name`` is not a PYWORKFLOW_* variable PyWorkflow reads (None when it is one)."""
    from pyworkflow_ray.settings import RaySettings

    from pyworkflow.config import KEYS

    if not name.startswith("PYWORKFLOW_"):
        return None  # not ours (RAY_*, PYTHONPATH...)
    rest = name.removeprefix("PYWORKFLOW_")
    table, sep, option = rest.partition("__")
    if not sep:
        return None if rest.lower() in KEYS else f"{name}: no config key {rest.lower()!r}"
    if table == "RAY":
        options = {field.name for field in attrs.fields(RaySettings)}
        return None if option.lower() in options else f"{name}: no ray option {option.lower()!r}"
    return None if table == "CELERY" else f"{name}: unknown plugin table {table.lower()!r}"


def ray_problems(docs: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """What is wrong with the parsed KubeRay manifests (empty when they are fine)."""
    problems: list[str] = []
    clusters = [doc for (kind, _), doc in docs.items() if kind == "RayCluster"]
    worker = docs.get(("Deployment", "ray-pyworkflow-worker"))
    if len(clusters) != 1:
        return [f"expected one RayCluster, found {len(clusters)}"]
    if worker is None:
        return ["Deployment 'ray-pyworkflow-worker' missing"]
    cluster = clusters[0]
    if cluster.get("apiVersion") != "ray.io/v1":
        problems.append(
            f"RayCluster apiVersion must be ray.io/v1, got {cluster.get('apiVersion')!r}"
        )
    if worker.get("apiVersion") != "apps/v1":
        problems.append("the pyworkflow worker Deployment must be apps/v1")
    spec = cluster.get("spec") or {}
    head = spec.get("headGroupSpec") or {}
    groups = spec.get("workerGroupSpecs") or []
    if not head.get("template"):
        problems.append("RayCluster without headGroupSpec.template")
    if len(groups) != 1:
        problems.append(f"RayCluster must have one worker group, found {len(groups)}")
    if problems:
        return problems
    for group in groups:
        if not group.get("groupName"):
            problems.append("a worker group without groupName")
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 0)
        if not low <= group.get("replicas", 0) <= high:
            problems.append("worker group replicas outside [minReplicas, maxReplicas]")
    for params in [head.get("rayStartParams") or {}] + [
        g.get("rayStartParams") or {} for g in groups
    ]:
        if not all(isinstance(v, str) for v in params.values()):
            problems.append("rayStartParams values must be strings")
    client_port = (head.get("rayStartParams") or {}).get("ray-client-server-port", "10001")

    pods = {"head": head["template"]["spec"], "worker group": groups[0]["template"]["spec"]}
    pods["pyworkflow worker"] = worker["spec"]["template"]["spec"]
    images: set[str] = set()
    for where, pod in pods.items():
        for container in pod.get("containers") or []:
            images.add(str(container.get("image")))
            requests = (container.get("resources") or {}).get("requests") or {}
            if not {"cpu", "memory"} <= requests.keys():
                problems.append(
                    f"{where}: container {container.get('name')!r} without cpu/memory requests"
                )
            refs = [
                (r.get("configMapRef") or {}).get("name") for r in container.get("envFrom") or []
            ]
            if "pyworkflow-config" not in refs:
                problems.append(f"{where}: does not read the pyworkflow-config ConfigMap")
            env = {e["name"]: e for e in container.get("env") or []}
            for name in env:
                if (problem := _config_env_name_problem(name)) is not None:
                    problems.append(f"{where}: {problem}")
            if (env.get("PYWORKFLOW_EXECUTOR") or {}).get("value") != "ray":
                problems.append(f"{where}: PYWORKFLOW_EXECUTOR must be 'ray'")
            storage = env.get("PYWORKFLOW_STORAGE") or {}
            if "sqlite" in str(storage.get("value", "")) or not storage:
                problems.append(f"{where}: PYWORKFLOW_STORAGE must be a shared storage, not SQLite")
        if any("persistentVolumeClaim" in v for v in pod.get("volumes") or []):
            problems.append(f"{where}: mounts a PVC (the SQLite volume is one host only)")
    if len(images) != 1:
        problems.append(f"head, Ray workers and pyworkflow worker must share one image: {images}")
    if any(":" not in image for image in images):
        problems.append("images must carry a tag")
    head_container = pods["head"]["containers"][0]
    ports = {p.get("containerPort") for p in head_container.get("ports") or []}
    if int(client_port) not in ports:
        problems.append(f"the head does not expose the Ray Client port {client_port}")

    container = pods["pyworkflow worker"]["containers"][0]
    command = " ".join(container.get("command") or []) + " " + " ".join(container.get("args") or [])
    if not command.startswith("pyworkflow worker"):
        problems.append("the pyworkflow worker Deployment must run `pyworkflow worker`")
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    address = f"ray://{cluster['metadata']['name']}-head-svc:{client_port}"
    if env.get("PYWORKFLOW_RAY__ADDRESS") != address:
        problems.append(
            f"PYWORKFLOW_RAY__ADDRESS must be the head Service's Ray Client address {address!r}, "
            f"got {env.get('PYWORKFLOW_RAY__ADDRESS')!r}"
        )
    if env.get("PYWORKFLOW_RAY__FORWARD_STORAGE") != "false":
        problems.append(
            "the pyworkflow worker must set PYWORKFLOW_RAY__FORWARD_STORAGE=false: the Ray pods "
            "read the storage Secret, and a runtime_env is shown by Ray's dashboard"
        )
    namespaces = {doc["metadata"].get("namespace") for doc in docs.values()}
    if namespaces != {"pyworkflow"}:
        problems.append(f"everything must be in namespace 'pyworkflow', got {namespaces}")
    return problems


def test_ray_manifests() -> None:
    docs = _ray_documents()
    assert {kind for kind, _ in docs} == {"RayCluster", "Deployment"}
    assert ray_problems(docs) == []


def test_ray_manifests_pass_the_generic_k8s_checks() -> None:
    """The pyworkflow worker Deployment is a workload like the others; ConfigMap refs resolve."""
    docs = [(f"ray/{kind}", doc) for (kind, _), doc in _ray_documents().items()]
    base = [d for d in _k8s_documents() if d[1].get("kind") in ("ConfigMap", "Namespace")]
    problems = k8s_problems(base + docs)
    # k8s_problems also demands the Celery stack; only problems about the Ray files count here.
    assert [p for p in problems if p.startswith("ray/") or "unknown ConfigMap" in p] == []


def _ray_broken(edit: Any) -> list[str]:
    docs = copy.deepcopy(_ray_documents())
    edit(docs)
    return ray_problems(docs)


def _ray_worker_env(docs: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = docs[("Deployment", "ray-pyworkflow-worker")]["spec"]["template"][
        "spec"
    ]["containers"][0]["env"]
    return env


def _ray_head(docs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    head: dict[str, Any] = docs[("RayCluster", "pyworkflow-ray")]["spec"]["headGroupSpec"]
    return head


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d[("RayCluster", "pyworkflow-ray")].update(apiVersion="ray.io/v1alpha1"),
            "apiVersion must be ray.io/v1",
        ),
        (
            lambda d: d[("RayCluster", "pyworkflow-ray")]["metadata"].update(name="other"),
            "PYWORKFLOW_RAY__ADDRESS must be the head Service's",
        ),
        (
            lambda d: _ray_worker_env(d).append({"name": "PYWORKFLOW_RAY__ADRESS", "value": "x"}),
            "no ray option 'adress'",
        ),
        (
            lambda d: _ray_worker_env(d).append({"name": "PYWORKFLOW_LEASE", "value": "30"}),
            "no config key 'lease'",
        ),
        (
            lambda d: _ray_worker_env(d).__setitem__(
                1, {"name": "PYWORKFLOW_STORAGE", "value": "sqlite:////data/pyworkflow.db"}
            ),
            "not SQLite",
        ),
        (
            lambda d: _ray_head(d)["template"]["spec"]["containers"][0]["resources"].pop(
                "requests"
            ),
            "head: container 'ray-head' without cpu/memory requests",
        ),
        (
            lambda d: _ray_head(d)["template"]["spec"]["containers"][0].update(image="other:1"),
            "share one image",
        ),
        (
            lambda d: _ray_head(d)["rayStartParams"].update({"ray-client-server-port": 10002}),
            "rayStartParams values must be strings",
        ),
        (
            lambda d: _ray_worker_env(d).pop(
                next(
                    i
                    for i, e in enumerate(_ray_worker_env(d))
                    if e["name"] == "PYWORKFLOW_RAY__FORWARD_STORAGE"
                )
            ),
            "PYWORKFLOW_RAY__FORWARD_STORAGE=false",
        ),
        (
            lambda d: d[("RayCluster", "pyworkflow-ray")]["spec"]["workerGroupSpecs"].clear(),
            "one worker group",
        ),
    ],
)
def test_ray_check_catches_breakage(edit: Any, expected: str) -> None:
    problems = _ray_broken(edit)
    assert any(expected in problem for problem in problems), problems


def test_dockerfile_can_add_the_ray_plugin() -> None:
    """EXTRA_PIP installs more plugins; the build line raycluster.yaml documents uses it."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert 'ARG EXTRA_PIP=""' in lines
    install = next(line for line in lines if line.startswith("RUN pip install ."))
    assert "${EXTRA_PIP}" in install
    assert "COPY plugins ./plugins" in lines
    documented = (RAY_K8S / "raycluster.yaml").read_text()
    match = re.search(r'EXTRA_PIP="([^"]*)"', documented)
    assert match is not None
    for requirement in match.group(1).split():
        if requirement.startswith("./plugins/"):
            assert (ROOT / requirement / "pyproject.toml").is_file(), requirement
    assert "./plugins/pyworkflow-ray" in match.group(1).split()
    assert any(r.startswith("ray[") and "client" in r for r in match.group(1).split())
