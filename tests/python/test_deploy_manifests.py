"""The Kubernetes manifests of deploy/kubernetes: every YAML document there, and every object
the kustomization renders, is valid against the Kubernetes API schemas in strict mode (an
unknown field is an error), checked offline with `kubernetes-validate` (it bundles the
schemas); and the objects have the properties docs/deployment.md relies on (probes, drain,
security context, autoscaling, disruption budget, network policy, the configuration file).

None of conftest.py's fixtures is used; one test starts the real binary on the ConfigMap's
configuration file. This runs in a few seconds."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
KUSTOMIZATION = DEPLOY / "kustomization.yaml"
SECRET_EXAMPLE = DEPLOY / "secret.example.yaml"
CONTAINERFILE = REPO / "Containerfile"
BINARY = REPO / "target" / "debug" / "gateway"

# The preStop `sleep` action needs Kubernetes 1.30 or later; check against 1.33 and against the
# newest schemas the package bundles.
KUBERNETES_VERSIONS = ("1.33", kubernetes_validate.latest_version())
# Kinds the manifests use that have no namespace (the kustomization's namespace skips them).
CLUSTER_SCOPED = {"Namespace"}
# What render() implements of kustomize; a kustomization using more fails the test rather than
# being rendered wrong.
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images"}

GATEWAY_LABELS = {"app.kubernetes.io/name": "gateway"}


def load(path: Path) -> list[dict]:
    """The documents of one YAML file, empty ones left out."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.iterdir() if p.suffix in {".yaml", ".yml"})


def pod_specs(doc: dict) -> list[dict]:
    """The pod spec of a workload object (none for other kinds)."""
    template = doc.get("spec", {}).get("template")
    return [template["spec"]] if doc["kind"] in {"Deployment", "StatefulSet"} and template else []


def containers(pod_spec: dict) -> list[dict]:
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def render() -> list[dict]:
    """The objects `kubectl apply -k deploy/kubernetes` creates: the listed resources, in the
    kustomization's namespace, with its image names replaced."""
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    assert not unknown, f"render() does not implement {sorted(unknown)}: extend it"
    images = {image["name"]: image for image in kustomization.get("images", [])}
    rendered = []
    for name in kustomization["resources"]:
        path = DEPLOY / name
        assert path.is_file(), f"kustomization.yaml lists {name}, which does not exist"
        for doc in load(path):
            doc = copy.deepcopy(doc)
            if doc["kind"] not in CLUSTER_SCOPED and "namespace" in kustomization:
                doc["metadata"]["namespace"] = kustomization["namespace"]
            for pod_spec in pod_specs(doc):
                for container in containers(pod_spec):
                    name_only = container["image"].split("@")[0].rsplit(":", 1)[0]
                    if name_only in images:
                        image = images[name_only]
                        new = image.get("newName", name_only)
                        if "digest" in image:
                            new += "@" + image["digest"]
                        elif "newTag" in image:
                            new += ":" + str(image["newTag"])
                        container["image"] = new
            rendered.append(doc)
    return rendered


RENDERED = render()


def the(kind: str, name: str) -> dict:
    """The one rendered object of this kind and name."""
    found = [d for d in RENDERED if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def selects(selector: dict, labels: dict) -> bool:
    """Whether a label selector (a LabelSelector's matchLabels, or a Service's plain map)
    selects these labels."""
    match = selector["matchLabels"] if "matchLabels" in selector else selector
    assert "matchExpressions" not in selector, "selects() reads matchLabels only"
    assert match, "an empty selector selects every pod"
    return all(labels.get(key) == value for key, value in match.items())


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


def gateway_deployment() -> dict:
    return the("Deployment", "gateway")


def gateway_container() -> dict:
    (container,) = [
        c for c in gateway_deployment()["spec"]["template"]["spec"]["containers"]
        if c["name"] == "gateway"
    ]
    return container


def gateway_config() -> dict:
    return tomllib.loads(the("ConfigMap", "gateway-config")["data"]["config.toml"])


def container_port(container: dict, port) -> int:
    """A probe's or Service's port, named or numbered, as the container's number."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return number


# --- Schemas --------------------------------------------------------------------------------


def test_every_manifest_is_listed_in_the_kustomization_except_the_secret_example():
    listed = set(yaml.safe_load(KUSTOMIZATION.read_text())["resources"])
    files = {p.name for p in manifest_files()} - {KUSTOMIZATION.name}
    assert SECRET_EXAMPLE.name in files
    assert SECRET_EXAMPLE.name not in listed, "the example Secret must never be applied"
    assert listed == files - {SECRET_EXAMPLE.name}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_document_is_valid_against_the_kubernetes_schemas(version):
    documents = [
        (f"{path.name} #{index}", doc)
        for path in manifest_files()
        if path != KUSTOMIZATION
        for index, doc in enumerate(load(path))
    ] + [(f"rendered {d['kind']}/{d['metadata']['name']}", d) for d in RENDERED]
    kinds = {doc["kind"] for _, doc in documents}
    assert kinds >= {
        "Namespace", "ServiceAccount", "ConfigMap", "Secret", "Deployment", "Service",
        "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
    }
    errors = []
    for where, doc in documents:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            errors.append(f"{where}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{where}: {error.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    "break_it",
    [
        # A misspelt field deep inside the pod template.
        lambda d: d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
        .update(paht="/readyz"),
        # A field at the wrong level.
        lambda d: d["spec"].update(terminationGracePeriodSeconds=90),
        # A wrong type.
        lambda d: d["spec"].update(replicas="three"),
    ],
    ids=["unknown-nested-field", "field-at-the-wrong-level", "wrong-type"],
)
def test_the_validator_refuses_a_broken_manifest(break_it):
    broken = copy.deepcopy(gateway_deployment())
    kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)
    break_it(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


# --- The gateway Deployment -----------------------------------------------------------------


def test_gateway_probes_ask_the_gateways_health_routes():
    container = gateway_container()
    probes = {
        kind: container[kind]["httpGet"]
        for kind in ("readinessProbe", "livenessProbe", "startupProbe")
    }
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["startupProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert container_port(container, probe["port"]) == 8080


def test_gateway_drains_before_it_is_killed():
    spec = gateway_deployment()["spec"]["template"]["spec"]
    pre_stop = gateway_container()["lifecycle"]["preStop"]
    assert pre_stop["sleep"]["seconds"] > 0
    server = gateway_config()["server"]
    needed = (
        pre_stop["sleep"]["seconds"] + server["drain_delay_secs"] + server["shutdown_grace_secs"]
    )
    assert spec["terminationGracePeriodSeconds"] > needed


def test_gateway_runs_as_a_non_root_user_on_a_read_only_root_filesystem():
    spec = gateway_deployment()["spec"]["template"]["spec"]
    pod = spec["securityContext"]
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    for container in containers(spec):
        context = container["securityContext"]
        assert context.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, container["name"]
        assert context.get("runAsUser", pod.get("runAsUser")) == 10001, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]


def test_gateway_requests_resources_and_bounds_memory():
    for container in containers(gateway_deployment()["spec"]["template"]["spec"]):
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
        assert "memory" in resources["limits"], container["name"]


def test_gateway_writes_only_to_empty_dirs_that_hold_the_journal_and_tmp():
    spec = gateway_deployment()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in gateway_container()["volumeMounts"]}
    config = gateway_config()
    journal = Path(config["metering"]["journal_dir"])
    for writable in (Path(config["server"]["data_dir"]), journal, Path("/tmp")):
        (mount,) = [m for path, m in mounts.items() if writable.is_relative_to(path)]
        assert "emptyDir" in volumes[mount["name"]], writable
        assert not mount.get("readOnly", False), writable


def test_gateway_reads_the_mounted_config_file():
    container = gateway_container()
    args = container["args"]
    assert args[0] == "serve"
    config_path = Path(args[args.index("--config") + 1])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent)]
    volume = next(
        v for v in gateway_deployment()["spec"]["template"]["spec"]["volumes"]
        if v["name"] == mount["name"]
    )
    assert volume["configMap"]["name"] == "gateway-config"
    assert config_path.name in the("ConfigMap", "gateway-config")["data"]


def test_gateway_credentials_come_from_secret_references():
    env = {e["name"]: e for e in gateway_container()["env"]}
    key_variables = {
        server["api_key_env"]
        for model in gateway_config()["models"]
        for server in model["upstream"]["servers"]
    }
    for name in {"GATEWAY_DATABASE_URL", "GATEWAY_REDIS_URL"} | key_variables:
        reference = env[name]["valueFrom"]["secretKeyRef"]
        assert reference["name"] == "gateway-secrets", name
    # The example Secret has every key the manifests read.
    example = load(SECRET_EXAMPLE)[0]
    read = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for doc in RENDERED
        for pod_spec in pod_specs(doc)
        for container in containers(pod_spec)
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert read <= set(example["stringData"])


def test_gateway_rolls_one_pod_at_a_time_and_spreads_over_nodes():
    deployment = gateway_deployment()
    assert deployment["spec"]["replicas"] == 3
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling == {"maxUnavailable": 0, "maxSurge": 1}
    spec = deployment["spec"]["template"]["spec"]
    by_node = [
        c for c in spec["topologySpreadConstraints"]
        if c["topologyKey"] == "kubernetes.io/hostname"
    ]
    assert by_node and selects(by_node[0]["labelSelector"], GATEWAY_LABELS)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == "8080"
    assert spec["serviceAccountName"] == "gateway"
    assert the("ServiceAccount", "gateway")["automountServiceAccountToken"] is False


# --- The objects around it ------------------------------------------------------------------


def test_service_hpa_and_pdb_select_the_gateway_pods():
    deployment = gateway_deployment()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"], labels)
    inference_labels = pod_labels(the("Deployment", "inference-server"))

    service = the("Service", "gateway")
    assert service["spec"]["type"] == "ClusterIP"
    assert selects(service["spec"]["selector"], labels)
    assert not selects(service["spec"]["selector"], inference_labels)
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80
    assert container_port(gateway_container(), port["targetPort"]) == 8080

    hpa = the("HorizontalPodAutoscaler", "gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"

    pdb = the("PodDisruptionBudget", "gateway")
    assert pdb["apiVersion"] == "policy/v1"
    assert selects(pdb["spec"]["selector"], labels)
    assert not selects(pdb["spec"]["selector"], inference_labels)
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 2


def test_config_file_is_a_fleet_configuration():
    config = gateway_config()
    server = config["server"]
    assert server["listen"] == "0.0.0.0:8080"
    assert server["drain_delay_secs"] == 5
    assert server["shutdown_grace_secs"] == 60
    # The URLs come from the Secret (GATEWAY_DATABASE_URL, GATEWAY_REDIS_URL), never the file.
    assert "url" not in config["database"]
    assert "redis_url" not in config["limits"]
    assert config["database"]["outage_grace_secs"] == 300
    assert config["limits"]["redis_unavailable"] in {"open", "closed"}
    (model,) = config["models"]
    assert model["kind"] == "upstream"
    assert model["upstream"]["type"] in {"chat", "embedding"}
    assert model["upstream"]["context_length"] > 0
    for server in model["upstream"]["servers"]:
        assert "api_key" not in server, "a key in the file is refused by the gateway"


def test_the_gateway_accepts_the_config_file(tmp_path):
    """The real binary starts on the ConfigMap's file (every field known, every value valid),
    with the data directory moved to a temporary one and SQLite instead of PostgreSQL; its
    upstream does not exist here, so it serves but is not ready."""
    text = the("ConfigMap", "gateway-config")["data"]["config.toml"]
    config = tmp_path / "config.toml"
    config.write_text(text.replace("/var/lib/gateway", str(tmp_path)))
    env = dict(
        os.environ,
        GATEWAY_DATABASE_URL=f"sqlite://{tmp_path / 'gateway.db'}?mode=rwc",
        GATEWAY_UPSTREAM_API_KEY="sk-upstream-example",
    )
    for name in ("GATEWAY_REDIS_URL", "GATEWAY_DATA_DIR", "GATEWAY_CONFIG"):
        env.pop(name, None)
    process = subprocess.Popen(
        [str(BINARY), "serve", "--config", str(config), "--listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert process.stderr is not None
        address = None
        for line in process.stderr:
            match = re.search(r"listening on http://([0-9.]+:[0-9]+)", line)
            if match:
                address = match.group(1)
                break
        assert address, f"the gateway did not start (exit {process.wait(10)})"
        json.loads(line)  # [logging] format = "json"
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=5) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"http://{address}/readyz", timeout=5)
        assert not_ready.value.code == 503
        assert json.loads(not_ready.value.read())["models_ready"] is False
    finally:
        process.terminate()
        process.wait(30)


def test_upstream_server_is_the_inference_service():
    (model,) = gateway_config()["models"]
    (server,) = model["upstream"]["servers"]
    url = urlsplit(server["url"])
    service = the("Service", url.hostname)
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == url.port]
    deployment = the("Deployment", "inference-server")
    assert selects(service["spec"]["selector"], pod_labels(deployment))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container_port(container, port["targetPort"]) == url.port
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container_port(container, container[kind]["httpGet"]["port"]) == url.port
    assert {"cpu", "memory", "nvidia.com/gpu"} <= set(container["resources"]["requests"])
    assert server["model"] in container["args"]


def test_network_policies_open_only_what_the_gateway_needs():
    gateway = the("NetworkPolicy", "gateway")
    assert selects(gateway["spec"]["podSelector"], GATEWAY_LABELS)
    assert set(gateway["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {p["port"] for rule in gateway["spec"]["ingress"] for p in rule["ports"]}
    assert ingress_ports == {8080}
    (model,) = gateway_config()["models"]
    upstream_port = urlsplit(model["upstream"]["servers"][0]["url"]).port
    egress_ports = {p["port"] for rule in gateway["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 5432, 6379, upstream_port}

    inference = the("NetworkPolicy", "inference-server")
    inference_labels = pod_labels(the("Deployment", "inference-server"))
    assert selects(inference["spec"]["podSelector"], inference_labels)
    assert inference["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = inference["spec"]["ingress"]
    (source,) = rule["from"]
    assert set(source) == {"podSelector"}, "only pods of this namespace, only the gateway's"
    assert selects(source["podSelector"], GATEWAY_LABELS)
    assert not selects(source["podSelector"], inference_labels)


def test_everything_lands_in_one_namespace_with_the_registry_image():
    (namespace,) = [d for d in RENDERED if d["kind"] == "Namespace"]
    for doc in RENDERED:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"], doc["kind"]
    assert gateway_container()["image"] == "registry.example.com/gateway:0.1.0"


# --- The image the Deployment runs --------------------------------------------------------


def test_container_image_matches_the_manifests_and_the_pinned_onnx_runtime():
    text = CONTAINERFILE.read_text()
    (pinned,) = re.findall(
        r"^onnxruntime==(\S+)$", (REPO / "scripts" / "requirements-runtime.txt").read_text(), re.M
    )
    assert re.search(rf"^ARG ONNXRUNTIME_VERSION={re.escape(pinned)}$", text, re.M)
    assert "github.com" not in text, "ONNX Runtime comes from the PyPI wheel"
    final_stage = text[text.rindex("\nFROM "):]
    assert re.search(r"^USER 10001(:10001)?$", final_stage, re.M)
    assert re.search(r"^EXPOSE 8080$", final_stage, re.M)
    (entrypoint,) = re.findall(r"^ENTRYPOINT (.+)$", final_stage, re.M)
    (cmd,) = re.findall(r"^CMD (.+)$", final_stage, re.M)
    assert json.loads(entrypoint) == ["/usr/local/bin/gateway"]
    assert json.loads(cmd) == gateway_container()["args"]
