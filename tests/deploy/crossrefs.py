"""Checks a schema cannot make: the objects of one render agree with one another.

Each check takes the parsed objects of a render and returns one line per mistake (empty
when there is none), so a failing test shows every mistake at once:

- ``unmatched_targets``: every Service and PodDisruptionBudget selects pods, every
  HorizontalPodAutoscaler scales a workload of the render;
- ``missing_ports``: every probe port is a port of its container, every Service port a
  port of the pods it selects;
- ``missing_inputs``: every Secret and ConfigMap (and key, and file read through a mount)
  a pod uses is made by the kustomization or documented in README.md, and every
  ServiceAccount it runs as is in the render;
- ``policy_gaps``: every NetworkPolicy selects pods, every peer names pods or namespaces
  of the render, every ingress port is a port of the pods it opens.

A selector must match something *and* so must each value of its ``In`` lists: a typo in
one of five callers still leaves a selector that matches, but names a pod that is not there.
A render is one namespace (or none): peers are looked up in it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from tests.deploy.kustomize import Manifest

Labels = Mapping[str, str]
Port = int | str
Source = tuple[str, str]  # (kind, name) of a Secret or ConfigMap
Input = tuple[Source, str | None, str]  # the source, a key of it (None: the whole object), how it is read
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
PROBE_HANDLERS = ("grpc", "httpGet", "tcpSocket")
NAMESPACE_NAME = "kubernetes.io/metadata.name"  # the label the API server gives every namespace


@dataclass(frozen=True)
class Pod:
    """The pod template of a workload (Deployment, StatefulSet, DaemonSet, Job)."""

    owner: str
    namespace: str | None
    labels: Labels
    spec: Mapping[str, Any]

    @property
    def containers(self) -> list[Mapping[str, Any]]:
        return [*self.spec.get("initContainers", []), *self.spec["containers"]]

    def ports(self) -> set[Port]:
        return {port for container in self.containers for port in container_ports(container)}


def where(obj: Manifest) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def namespace_of(obj: Manifest) -> str | None:
    namespace: str | None = obj["metadata"].get("namespace")
    return namespace


def pods(objects: Iterable[Manifest]) -> list[Pod]:
    found = []
    for obj in objects:
        template = obj.get("spec", {}).get("template")
        if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"} and template:
            labels = template.get("metadata", {}).get("labels", {})
            found.append(Pod(where(obj), namespace_of(obj), labels, template["spec"]))
    return found


def container_ports(container: Mapping[str, Any]) -> set[Port]:
    """A container's ports, by number and by name (a probe or Service may use either)."""
    return {p[field] for p in container.get("ports", []) for field in ("containerPort", "name") if field in p}


def selects(selector: Mapping[str, Any], labels: Labels) -> bool:
    """Whether a LabelSelector (matchLabels, matchExpressions) matches ``labels``."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, values = expression["key"], expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[expression["operator"]]
        if not matched:
            return False
    return True


def describe(selector: Mapping[str, Any]) -> str:
    parts = [f"{key}={value}" for key, value in selector.get("matchLabels", {}).items()]
    for e in selector.get("matchExpressions", []):
        parts.append(" ".join([e["key"], e["operator"], *([f"[{', '.join(e['values'])}]"] if "values" in e else [])]))
    return ", ".join(parts) or "everything"


def narrowings(selector: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The selector itself, then once per value of each ``In`` list with the list cut to that value."""
    yield selector
    expressions = selector.get("matchExpressions", [])
    for i, expression in enumerate(expressions):
        if expression["operator"] == "In" and len(expression["values"]) > 1:
            for value in expression["values"]:
                narrowed = [*expressions[:i], {**expression, "values": [value]}, *expressions[i + 1 :]]
                yield {**selector, "matchExpressions": narrowed}


def unmatched(selector: Mapping[str, Any], candidates: Sequence[Labels], what: str) -> list[str]:
    """What in ``selector`` matches none of ``candidates``: the whole, or values of its In lists."""
    for narrowed in narrowings(selector):
        if not any(selects(narrowed, labels) for labels in candidates):
            return [f"no {what} matches {describe(narrowed)}"]
    return []


def unmatched_targets(objects: Sequence[Manifest]) -> list[str]:
    problems = []
    found = pods(objects)
    for obj in objects:
        here = [pod for pod in found if pod.namespace == namespace_of(obj)]
        spec = obj.get("spec", {})
        if obj["kind"] == "Service" and "selector" in spec:
            selector = {"matchLabels": spec["selector"]}
        elif obj["kind"] == "PodDisruptionBudget":
            selector = spec["selector"]
        elif obj["kind"] == "HorizontalPodAutoscaler":
            target = f"{spec['scaleTargetRef']['kind']}/{spec['scaleTargetRef']['name']}"
            if not any(pod.owner == target for pod in here):
                problems.append(f"{where(obj)}: scales {target}, which is not in the render")
            continue
        else:
            continue
        problems += [f"{where(obj)}: {p}" for p in unmatched(selector, [pod.labels for pod in here], "pod")]
    return problems


def missing_ports(objects: Sequence[Manifest]) -> list[str]:
    problems = []
    found = pods(objects)
    for pod in found:
        for container in pod.containers:
            ports = container_ports(container)
            for probe in PROBES:
                for handler in PROBE_HANDLERS:
                    port = container.get(probe, {}).get(handler, {}).get("port")
                    if port is not None and port not in ports:
                        problems.append(
                            f"{pod.owner}: container {container['name']}: {probe} port {port!r} "
                            f"is not one of its ports {sorted(ports, key=str)}"
                        )
    for service in (obj for obj in objects if obj["kind"] == "Service" and "selector" in obj["spec"]):
        selector = {"matchLabels": service["spec"]["selector"]}
        for pod in (p for p in found if p.namespace == namespace_of(service) and selects(selector, p.labels)):
            for port in service["spec"].get("ports", []):
                target = port.get("targetPort", port["port"])
                if target not in pod.ports():
                    problems.append(f"{where(service)}: targetPort {target!r} is not a port of {pod.owner}")
    return problems


def documented_inputs(readme: str) -> dict[Source, set[str]]:
    """The Secrets and ConfigMaps the ``kubectl create`` commands of README.md's sh blocks make: (kind, name) → keys."""
    documented: dict[Source, set[str]] = {}
    shell = "\n".join(re.findall(r"^```sh\n(.*?)^```$", readme, re.M | re.S))
    for command in shell.replace("\\\n", " ").splitlines():
        words = shlex.split(command, comments=True)
        for kind, marker in (("Secret", ["secret", "generic"]), ("ConfigMap", ["configmap"])):
            at = next((i for i in range(len(words)) if words[i : i + len(marker)] == marker), None)
            if at is None or words[at - 1 : at] != ["create"]:
                continue
            keys = documented.setdefault((kind, words[at + len(marker)]), set())
            for word in words:
                if word.startswith("--from-literal="):
                    keys.add(word.removeprefix("--from-literal=").split("=", 1)[0])
                elif word.startswith("--from-file="):
                    source = word.removeprefix("--from-file=")
                    keys.add(source.split("=", 1)[0] if "=" in source else PurePosixPath(source).name)
    return documented


def missing_inputs(objects: Sequence[Manifest], documented: Mapping[Source, set[str]]) -> list[str]:
    made = {
        (obj["kind"], obj["metadata"]["name"]): {
            *obj.get("data", {}),
            *obj.get("stringData", {}),
            *obj.get("binaryData", {}),
        }
        for obj in objects
        if obj["kind"] in {"Secret", "ConfigMap"}
    }
    provided = {**documented, **{source: made[source] | documented.get(source, set()) for source in made}}
    values = {
        (obj["kind"], obj["metadata"]["name"]): obj.get("data", {}) for obj in objects if obj["kind"] == "ConfigMap"
    }
    accounts = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "ServiceAccount"} | {"default"}
    problems = []
    for pod in pods(objects):
        account = pod.spec.get("serviceAccountName", "default")
        if account not in accounts:
            problems.append(f"{pod.owner}: runs as ServiceAccount {account}, which is not in the render")
        for source, key, how in _pod_inputs(pod, values):
            if source not in provided:
                problems.append(f"{pod.owner}: {how}: {source[0]} {source[1]} is neither made nor documented")
            elif key is not None and key not in provided[source]:
                problems.append(f"{pod.owner}: {how}: {source[0]} {source[1]} has no key {key!r} (made or documented)")
    return problems


def _pod_inputs(pod: Pod, config_values: Mapping[Source, Mapping[str, str]]) -> Iterator[Input]:
    """Every Secret or ConfigMap a pod reads, with the key, unless the reference is optional."""
    volumes: dict[str, tuple[Source, dict[str, str] | None]] = {}
    for volume in pod.spec.get("volumes", []):
        for field, kind, name_field in (("secret", "Secret", "secretName"), ("configMap", "ConfigMap", "name")):
            if field in volume and not volume[field].get("optional"):
                source = (kind, volume[field][name_field])
                items = volume[field].get("items")
                volumes[volume["name"]] = (source, {i["path"]: i["key"] for i in items} if items else None)
                yield source, None, f"volume {volume['name']}"
                for item in items or []:
                    yield source, item["key"], f"volume {volume['name']}"
    for container in pod.containers:
        env_values = [var["value"] for var in container.get("env", []) if "value" in var]
        for var in container.get("env", []):
            for field, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                ref = var.get("valueFrom", {}).get(field)
                if ref and not ref.get("optional"):
                    yield (kind, ref["name"]), ref["key"], f"env {var['name']}"
        for source_ref in container.get("envFrom", []):
            for field, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                ref = source_ref.get(field)
                if ref and not ref.get("optional"):
                    yield (kind, ref["name"]), None, f"container {container['name']}: envFrom"
                    env_values += config_values.get((kind, ref["name"]), {}).values()
        # A setting naming a file under a mounted Secret or ConfigMap reads that key.
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in volumes or "subPath" in mount:
                continue
            source, items = volumes[mount["name"]]
            prefix = mount["mountPath"].rstrip("/") + "/"
            for path in (p.strip() for value in env_values for p in str(value).split(",")):
                if path.startswith(prefix):
                    file = path.removeprefix(prefix)
                    key = file if items is None else items.get(file, f"{file} (not among the volume's items)")
                    yield source, key, f"container {container['name']}: file {path}"


def policy_gaps(objects: Sequence[Manifest]) -> list[str]:
    problems = []
    found = pods(objects)
    namespaces = {
        obj["metadata"]["name"]: {**obj["metadata"].get("labels", {}), NAMESPACE_NAME: obj["metadata"]["name"]}
        for obj in objects
        if obj["kind"] == "Namespace"
    }
    for policy in (obj for obj in objects if obj["kind"] == "NetworkPolicy"):
        spec, here = policy["spec"], [pod for pod in found if pod.namespace == namespace_of(policy)]
        problems += [f"{where(policy)}: podSelector: {p}" for p in unmatched(spec["podSelector"], _labels(here), "pod")]
        targets = [pod for pod in here if selects(spec["podSelector"], pod.labels)]
        for direction, peers_field in (("ingress", "from"), ("egress", "to")):
            for rule in spec.get(direction, []):
                for peer in rule.get(peers_field, []):
                    problems += [
                        f"{where(policy)}: {direction} peer: {p}" for p in _peer_gaps(peer, namespaces, found, here)
                    ]
                for port in rule.get("ports", []) if direction == "ingress" else []:
                    problems += [
                        f"{where(policy)}: port {port['port']!r} is not a port of {pod.owner}"
                        for pod in targets
                        if "port" in port and port["port"] not in pod.ports()
                    ]
    return problems


def _peer_gaps(
    peer: Mapping[str, Any], namespaces: Mapping[str, Labels], found: Sequence[Pod], here: Sequence[Pod]
) -> list[str]:
    if "ipBlock" in peer:
        return []
    candidates = list(here)
    if "namespaceSelector" in peer:
        selector = peer["namespaceSelector"]
        gaps = unmatched(selector, list(namespaces.values()), "namespace") if selector else []
        if gaps:
            return gaps
        chosen = {name for name, labels in namespaces.items() if selects(selector, labels)}
        candidates = [pod for pod in found if not selector or pod.namespace in chosen]
    return unmatched(peer["podSelector"], _labels(candidates), "pod") if "podSelector" in peer else []


def _labels(found: Iterable[Pod]) -> list[Labels]:
    return [pod.labels for pod in found]
