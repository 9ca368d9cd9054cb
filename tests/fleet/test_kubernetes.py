"""deploy/kubernetes, rendered by kubectl and checked by the tools that read it, offline.

Each overlay is rendered with `kubectl kustomize` (no cluster needed). The built-in kinds
are validated against the Kubernetes API schemas (`kubernetes-validate`, strict: an unknown
field is an error), for the oldest version the manifests need (1.30: the preStop `sleep`)
and the newest; the Prometheus Operator's and KEDA's resources against their CRDs' schemas
(tests/fleet/crds). Then what ties the pieces together, which no schema knows: the mounted
asr.toml is valid for the supervisor itself and its ports are the pod's, the probes are
the server's health routes, the grace period outlasts the stop phases, the balancer is the
shipped HAProxy config (checked by `haproxy -c`) finding the pods in DNS, the rules are the
shipped rules (checked by `promtool`), and KEDA scales on rules that exist.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from supervisor.config import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
CRDS = Path(__file__).resolve().parent / "crds"
OVERLAYS = ["cpu", "nvidia"]
#: The custom kinds: their API version and their CRD's schema (vendored, see each one's x-source).
CRD_SCHEMAS = {
    "PodMonitor": ("monitoring.coreos.com/v1", "podmonitor.json"),
    "PrometheusRule": ("monitoring.coreos.com/v1", "prometheusrule.json"),
    "ScaledObject": ("keda.sh/v1alpha1", "scaledobject.json"),
}

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (kubectl kustomize)")

Resources = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, Resources]:
    """An overlay rendered by kubectl: (its name, its resources by (kind, name))."""
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / "overlays" / request.param)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    resources: Resources = {}
    for doc in yaml.safe_load_all(rendered.stdout):
        resources[doc["kind"], doc["metadata"]["name"]] = doc
    return request.param, resources


def _one(resources: Resources, kind: str, prefix: str) -> dict[str, Any]:
    """The resource of `kind` named `prefix` (ConfigMaps get a hash suffix)."""
    found = [
        r
        for (k, name), r in resources.items()
        if k == kind and (name == prefix or (kind == "ConfigMap" and name.rsplit("-", 1)[0] == prefix))
    ]
    assert len(found) == 1, f"{kind} {prefix}: {len(found)} found"
    return found[0]


def _container(resources: Resources, deployment: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = _one(resources, "Deployment", deployment)["spec"]["template"]["spec"][
        "containers"
    ]
    return containers[0]


def _strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as `kubectl apply` does (strict field validation)."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        open_ended = "additionalProperties" in schema or schema.get("x-kubernetes-preserve-unknown-fields")
        if "properties" in schema and not open_ended:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(item) for item in schema]
    return schema


def test_every_resource_validates_against_its_schema(overlay: tuple[str, Resources]) -> None:
    _, resources = overlay
    for (kind, name), resource in resources.items():
        if kind in CRD_SCHEMAS:
            api_version, file = CRD_SCHEMAS[kind]
            assert resource["apiVersion"] == api_version, f"{kind}/{name}"
            schema = _strict(json.loads((CRDS / file).read_text()))
            errors = [f"{e.json_path}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(resource)]
            assert not errors, f"{kind}/{name}: {errors}"
            continue
        for version in ("1.30.0", kubernetes_validate.latest_version()):
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
                pytest.fail(f"{kind}/{name} against Kubernetes {version}: {exc}")
    kinds = {kind for kind, _ in resources}
    assert kinds >= {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy", *CRD_SCHEMAS}


def test_the_mounted_config_is_valid_and_matches_the_pod(overlay: tuple[str, Resources], tmp_path: Path) -> None:
    _, resources = overlay
    config = tmp_path / "asr.toml"
    config.write_text(_one(resources, "ConfigMap", "asr-config")["data"]["asr.toml"])
    settings = load_settings(config)  # what the supervisor itself does with it: exit 2 if invalid
    container = _container(resources, "asr-supervisor")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert settings.server.host == "0.0.0.0"
    assert (ports["http"], ports["wyoming"]) == (settings.server.port, settings.server.wyoming_port)
    env = {e["name"]: e for e in container["env"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert env["ASR_CONFIG"]["value"] == str(Path(mounts["/etc/asr-supervisor"]["mountPath"]) / "asr.toml")
    assert env["ASR_API_KEYS"]["valueFrom"]["secretKeyRef"]["optional"] is True  # open without the Secret
    # The root filesystem is read-only: every place the server writes is a volume.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    model_cache = tomllib.loads(config.read_text())["defaults"]["cache_dir"]
    for writable in (settings.server.runtime_dir, model_cache, env["HF_HOME"]["value"], "/tmp"):
        assert writable in mounts and not mounts[writable].get("readOnly"), f"{writable} is not a writable volume"


def test_probes_and_grace_period_fit_the_server(overlay: tuple[str, Resources], tmp_path: Path) -> None:
    from supervisor.interfaces.http.health import router

    _, resources = overlay
    container = _container(resources, "asr-supervisor")
    routes = {getattr(route, "path", None) for route in router.routes}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"  # 503 while draining
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in routes
        assert container[probe]["httpGet"]["port"] == "http"
    config = tmp_path / "asr.toml"
    config.write_text(_one(resources, "ConfigMap", "asr-config")["data"]["asr.toml"])
    server = load_settings(config).server
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    stops = server.drain_timeout + 2 * server.stop_timeout + 10  # drain, SHUTDOWN, SIGTERM, the CUDA driver
    grace = _one(resources, "Deployment", "asr-supervisor")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= pause + stops + 15, f"{grace} s to stop, {pause} + {stops} s needed before a SIGKILL"


def test_each_overlay_runs_its_image_on_its_device(overlay: tuple[str, Resources]) -> None:
    name, resources = overlay
    container = _container(resources, "asr-supervisor")
    limits = container["resources"]["limits"]
    assert container["image"].endswith(":cuda" if name == "nvidia" else ":cpu")
    assert limits.get("nvidia.com/gpu") == (1 if name == "nvidia" else None)  # one box per GPU


def test_the_balancer_is_the_shipped_haproxy_config_finding_the_pods(overlay: tuple[str, Resources]) -> None:
    _, resources = overlay
    cfg = _one(resources, "ConfigMap", "asr-balancer")["data"]["haproxy.cfg"]

    def routing(text: str) -> list[str]:
        """The config's lines apart from comments, the box lines and the resolvers section."""
        lines, boxes = [], False
        for line in text.split("\nresolvers kubernetes")[0].splitlines():
            boxes = (boxes or "# boxes: begin" in line) and "# boxes: end" not in line
            if line.strip() and not line.lstrip().startswith("#") and not boxes:
                lines.append(line.split("#")[0].rstrip())
        return lines

    assert routing(cfg) == routing((DEPLOY / "haproxy" / "haproxy.cfg").read_text())
    namespace = _one(resources, "Namespace", "asr")["metadata"]["name"]
    headless = _one(resources, "Service", "asr-supervisor-boxes")
    assert headless["spec"]["clusterIP"] == "None" and headless["metadata"]["namespace"] == namespace
    ports = {p["name"]: p["containerPort"] for p in _container(resources, "asr-supervisor")["ports"]}
    templates = [line.split() for line in cfg.splitlines() if line.strip().startswith("server-template")]
    assert len(templates) == 3
    for template in templates:
        host, port = template[3].rsplit(":", 1)
        assert host == f"asr-supervisor-boxes.{namespace}.svc.cluster.local"
        assert int(port) in ports.values()
    if shutil.which("haproxy"):
        checked = subprocess.run(["haproxy", "-c", "-f", "/dev/stdin"], input=cfg, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    balancer_ports = {p["name"] for p in _container(resources, "asr-balancer")["ports"]}
    for port in _one(resources, "Service", "asr")["spec"]["ports"]:
        assert port["targetPort"] in balancer_ports


def test_the_rules_are_the_shipped_rules_and_keda_scales_on_them(
    overlay: tuple[str, Resources], tmp_path: Path
) -> None:
    _, resources = overlay
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "asr-rules.yml").read_text())
    spec = _one(resources, "PrometheusRule", "asr-supervisor")["spec"]
    assert spec == shipped
    if shutil.which("promtool"):
        rules = tmp_path / "rules.yml"
        rules.write_text(yaml.safe_dump(spec))
        checked = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    recorded = {rule["record"] for group in spec["groups"] for rule in group["rules"] if "record" in rule}
    scaled = _one(resources, "ScaledObject", "asr-supervisor")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "asr-supervisor"
    for trigger in scaled["spec"]["triggers"]:
        used = {word for word in recorded if word in trigger["metadata"]["query"]}
        assert used, f"KEDA query {trigger['metadata']['query']!r} uses none of the recording rules"
