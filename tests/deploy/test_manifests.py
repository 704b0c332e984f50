"""deploy/k8s as written: every process has a probed, hardened, bounded Deployment and a
Service, and every manifest is listed by its kustomization.

These read the sources with patterns anchored on the layout the manifests are written in
(a reformat makes them fail loudly, never pass silently). What kustomize renders of them
is parsed and checked by test_kustomize.py, test_schema.py and test_crossrefs.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
BASE = K8S / "base"
GRPC_PORTS = {"auth": 50051, "sessions": 50052, "ingest": 50053, "realtime": 50054, "scheduler": 50055}
PROCESSES = {**GRPC_PORTS, "gateway": 3000}
MODULES = {**{name: f"services.{name}" for name in GRPC_PORTS}, "gateway": "gateway"}
AUTOSCALED = {"gateway", "ingest"}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def documents(path: Path) -> list[str]:
    """The YAML documents of a file, full-line comments removed (so commented-out fields never count)."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    return [doc for doc in re.split(r"^---$", text, flags=re.M) if doc.strip()]


def kind_of(doc: str) -> str:
    found = re.search(r"^kind: (\w+)$", doc, re.M)
    assert found, f"document without a kind:\n{doc[:200]}"
    return found.group(1)


def name_of(doc: str) -> str:
    found = re.search(r"^metadata:\n(?:  .*\n)*?  name: (\S+)$", doc, re.M)
    assert found, f"document without metadata.name:\n{doc[:200]}"
    return found.group(1)


def the(kind: str, name: str, path: Path) -> str:
    matches = [d for d in documents(path) if kind_of(d) == kind and name_of(d) == name]
    assert len(matches) == 1, f"{path.name}: expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def manifests() -> list[Path]:
    return sorted(p for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")


def workloads() -> list[tuple[str, str]]:
    found = [(f"{p.name}:{name_of(d)}", d) for p in manifests() for d in documents(p)]
    return [(label, d) for label, d in found if kind_of(d) in {"Deployment", "Job"}]


def shutdown_grace() -> float:
    found = re.search(r"^SHUTDOWN_GRACE_SECONDS=([\d.]+)$", (BASE / "config.env").read_text(), re.M)
    assert found, "config.env must set SHUTDOWN_GRACE_SECONDS"
    return float(found.group(1))


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_each_process_has_deployment_service_and_disruption_budget(name: str) -> None:
    path, port = BASE / f"{name}.yaml", PROCESSES[name]
    deployment = the("Deployment", name, path)
    assert f'command: ["python", "-m", "{MODULES[name]}"]' in deployment
    assert re.search(rf"^\s+containerPort: {port}$", deployment, re.M)
    assert re.search(r"^\s+image: workpulse:latest$", deployment, re.M)
    service = the("Service", name, path)
    assert re.search(rf"^\s+port: {port}$", service, re.M)
    assert re.search(rf"^  selector:\n    app: {name}$", service, re.M)
    assert re.search(
        rf"^  selector:\n    matchLabels:\n      app: {name}$", the("PodDisruptionBudget", name, path), re.M
    )


@pytest.mark.parametrize("name", sorted(GRPC_PORTS))
def test_grpc_services_use_native_grpc_probes_on_their_port(name: str) -> None:
    deployment = the("Deployment", name, BASE / f"{name}.yaml")
    for probe in PROBES:
        assert re.search(rf"^\s+{probe}:\n\s+grpc:\n\s+port: {GRPC_PORTS[name]}$", deployment, re.M), probe
    assert re.search(rf'^\s+- name: GRPC_PORT\n\s+value: "{GRPC_PORTS[name]}"$', deployment, re.M)


def test_gateway_probes_health_over_http() -> None:
    deployment = the("Deployment", "gateway", BASE / "gateway.yaml")
    for probe in ("startupProbe", "readinessProbe"):
        assert re.search(rf"^\s+{probe}:\n\s+httpGet:\n\s+path: /health\n\s+port: 3000$", deployment, re.M), probe
    assert re.search(r"^\s+livenessProbe:\n\s+(tcpSocket|httpGet):", deployment, re.M)
    assert re.search(r'^\s+- name: GATEWAY_PORT\n\s+value: "3000"$', deployment, re.M)
    assert re.search(r'^\s+- name: GATEWAY_HOST\n\s+value: "0.0.0.0"$', deployment, re.M)


def test_every_container_is_non_root_read_only_and_bounded() -> None:
    found = workloads()
    assert {label.split(":")[1] for label, _ in found} == {*PROCESSES, "workpulse-migrate"}
    for label, doc in found:
        containers = len(re.findall(r"^\s+image: ", doc, re.M))
        assert containers >= 1, label
        assert "runAsNonRoot: true" in doc, label
        for needed in (
            r"readOnlyRootFilesystem: true",
            r"allowPrivilegeEscalation: false",
            r"capabilities:\n\s+drop:\n\s+- ALL",
            r"requests:\n\s+cpu: \S+\n\s+memory: \S+",
            r"limits:\n\s+cpu: \S+\n\s+memory: \S+",
        ):
            assert len(re.findall(needed, doc)) == containers, f"{label}: every container needs {needed!r}"


def test_termination_grace_exceeds_the_services_drain() -> None:
    grace = shutdown_grace()
    for label, doc in workloads():
        if kind_of(doc) != "Deployment":
            continue
        found = re.search(r"^\s+terminationGracePeriodSeconds: (\d+)$", doc, re.M)
        assert found, label
        assert int(found.group(1)) > grace, label


def test_grpc_services_are_headless_for_client_side_balancing() -> None:
    for name in GRPC_PORTS:
        service = (BASE / f"{name}.yaml").read_text().split("kind: Service\n", 1)[1]
        assert "clusterIP: None" in service.split("---")[0], name


def test_config_names_every_peer_and_binds_all_interfaces() -> None:
    config = (BASE / "config.env").read_text()
    for name, port in GRPC_PORTS.items():
        assert re.search(rf"^{name.upper()}_ADDR=dns:///{name}:{port}$", config, re.M), name
    for line in ("GRPC_HOST=0.0.0.0", "REDIS_PREFIX=", "LOG_LEVEL=", "OTEL_EXPORTER_OTLP_ENDPOINT="):
        assert re.search(rf"^{re.escape(line)}", config, re.M), line
    for secret in (r"^DATABASE_URL=", r"^REDIS_URL=", r"BEGIN .*PRIVATE KEY"):
        assert not re.search(secret, config, re.M), f"{secret} belongs in a Secret"


def test_connections_come_from_secrets_and_only_auth_sees_the_signing_key() -> None:
    for label, doc in workloads():
        assert re.search(r"- name: DATABASE_URL\n\s+valueFrom:\n\s+secretKeyRef:", doc), label
    for path in K8S.rglob("*.yaml"):
        text = "\n".join(documents(path))
        holds_key = "ACCESS_TOKEN_PRIVATE_KEY_FILE" in text or "workpulse-access-signing-key" in text
        assert holds_key == (path == BASE / "auth.yaml"), path.relative_to(K8S)


def test_gateway_and_ingest_autoscale_and_nothing_else_does() -> None:
    autoscalers = {name_of(d): d for p in manifests() for d in documents(p) if kind_of(d) == "HorizontalPodAutoscaler"}
    assert set(autoscalers) == AUTOSCALED
    for name, hpa in autoscalers.items():
        assert re.search(rf"^    kind: Deployment\n    name: {name}$", hpa, re.M), name
        deployment = the("Deployment", name, BASE / f"{name}.yaml")
        assert not re.search(r"^  replicas:", deployment, re.M), f"{name}: replicas would fight the autoscaler"


def test_every_manifest_is_listed_by_its_kustomization() -> None:
    folders = [BASE, K8S / "components" / "network-policies", K8S / "overlays" / "production"]
    for folder in folders:
        kustomization = (folder / "kustomization.yaml").read_text()
        listed = set(re.findall(r"^  - ([\w./-]+\.yaml)$", kustomization, re.M))
        here = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
        assert here <= listed, f"{folder.name}: not listed {here - listed}"
        for entry in listed:
            assert (folder / entry).is_file(), f"{folder.name}: missing {entry}"
    assert "kind: Component" in (folders[1] / "kustomization.yaml").read_text()
    assert "- ../../components/network-policies" in (folders[2] / "kustomization.yaml").read_text()


def test_network_policies_admit_only_the_mesh_paths() -> None:
    policies = {name_of(d): d for d in documents(K8S / "components" / "network-policies" / "network-policies.yaml")}
    assert set(policies) == {*PROCESSES, "workpulse-deny-ingress"}
    assert "app.kubernetes.io/part-of: workpulse" in policies["workpulse-deny-ingress"]
    assert "ingress:" not in policies["workpulse-deny-ingress"]
    for name, port in GRPC_PORTS.items():
        policy = policies[name]
        assert re.search(rf"- port: {port}$", policy, re.M), name
        if name == "ingest":
            continue
        callers = set(re.findall(r"^\s+- (\w+)$", policy.split("values:")[1], re.M))
        assert callers == set(PROCESSES) - {name}, name
