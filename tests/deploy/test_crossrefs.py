"""The cross-reference checks pass on every real render, and each fails on a copy of the
tree with one mistake planted in it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.deploy.crossrefs import documented_inputs, missing_inputs, missing_ports, policy_gaps, unmatched_targets
from tests.deploy.kustomize import K8S, VARIANTS, Plant, Render

CHECKS: dict[str, Callable[[Render], list[str]]] = {
    "targets": lambda render: unmatched_targets(render.objects),
    "ports": lambda render: missing_ports(render.objects),
    "inputs": lambda render: missing_inputs(render.objects, documented_inputs((render.root / "README.md").read_text())),
    "policies": lambda render: policy_gaps(render.objects),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("check", sorted(CHECKS))
def test_the_real_render_passes(check: str, variant: str, rendered: dict[str, Render]) -> None:
    assert CHECKS[check](rendered[variant]) == []


def test_readme_documents_the_secrets_the_pods_read() -> None:
    readme = (K8S / "README.md").read_text()
    assert documented_inputs(readme) == {
        ("Secret", "workpulse-connections"): {"DATABASE_URL", "REDIS_URL"},
        ("Secret", "workpulse-keys"): {"access_public.pem", "service_private.pem", "service_public.pem"},
        ("Secret", "workpulse-access-signing-key"): {"access_private.pem"},
    }


def mistake(*, id: str, check: str, variant: str, file: str, old: str, new: str, fails_with: str) -> object:
    """In the copy rendered as ``variant``, ``file`` has ``old`` replaced by ``new``: ``check``
    reports a problem containing ``fails_with``, and the other checks still pass."""
    return pytest.param(check, variant, file, old, new, fails_with, id=id)


AUTH_CALLERS = "                  - realtime\n                  - scheduler\n      ports:\n        - port: 50051"
MISTAKES = [
    # targets
    mistake(
        id="service-selector",
        check="targets",
        variant="base",
        file="base/auth.yaml",
        old="  selector:\n    app: auth\n",
        new="  selector:\n    app: auht\n",
        fails_with="Service/auth: no pod matches app=auht",
    ),
    mistake(
        id="disruption-budget-selector",
        check="targets",
        variant="base",
        file="base/gateway.yaml",
        old="  maxUnavailable: 1\n  selector:\n    matchLabels:\n      app: gateway",
        new="  maxUnavailable: 1\n  selector:\n    matchLabels:\n      app: gateways",
        fails_with="PodDisruptionBudget/gateway: no pod matches app=gateways",
    ),
    mistake(
        id="autoscaler-target",
        check="targets",
        variant="production",
        file="base/ingest.yaml",
        old="    kind: Deployment\n    name: ingest",
        new="    kind: Deployment\n    name: ingester",
        fails_with="HorizontalPodAutoscaler/ingest: scales Deployment/ingester",
    ),
    # ports
    mistake(
        id="grpc-probe-port",
        check="ports",
        variant="base",
        file="base/sessions.yaml",
        old="readinessProbe:\n            grpc:\n              port: 50052",
        new="readinessProbe:\n            grpc:\n              port: 50053",
        fails_with="Deployment/sessions: container sessions: readinessProbe port 50053",
    ),
    mistake(
        id="http-probe-port",
        check="ports",
        variant="production",
        file="base/gateway.yaml",
        old="startupProbe:\n            httpGet:\n              path: /health\n              port: 3000",
        new="startupProbe:\n            httpGet:\n              path: /health\n              port: 8080",
        fails_with="Deployment/gateway: container gateway: startupProbe port 8080",
    ),
    mistake(
        id="service-target-port-renamed",
        check="ports",
        variant="base",
        file="base/realtime.yaml",
        old="- name: grpc\n              containerPort: 50054",
        new="- name: grpc-api\n              containerPort: 50054",
        fails_with="Service/realtime: targetPort 'grpc' is not a port of Deployment/realtime",
    ),
    # inputs
    mistake(
        id="secret-key",
        check="inputs",
        variant="base",
        file="base/auth.yaml",
        old="key: REDIS_URL",
        new="key: REDIS_URI",
        fails_with="Deployment/auth: env REDIS_URL: Secret workpulse-connections has no key 'REDIS_URI'",
    ),
    mistake(
        id="undocumented-key",
        check="inputs",
        variant="production",
        file="README.md",
        old=" \\\n  --from-literal=REDIS_URL='rediss://:…@cache.example.com:6380/0'",
        new="",
        fails_with="Deployment/gateway: env REDIS_URL: Secret workpulse-connections has no key 'REDIS_URL'",
    ),
    mistake(
        id="mounted-file-in-env",
        check="inputs",
        variant="base",
        file="base/auth.yaml",
        old="value: /etc/workpulse/signing/access_private.pem",
        new="value: /etc/workpulse/signing/access_signing.pem",
        fails_with="Secret workpulse-access-signing-key has no key 'access_signing.pem'",
    ),
    mistake(
        id="mounted-file-in-config",
        check="inputs",
        variant="production",
        file="base/config.env",
        old="SERVICE_PUBLIC_KEY_FILE=/etc/workpulse/keys/service_public.pem",
        new="SERVICE_PUBLIC_KEY_FILE=/etc/workpulse/keys/service.pub",
        fails_with="file /etc/workpulse/keys/service.pub: Secret workpulse-keys has no key 'service.pub'",
    ),
    mistake(
        id="config-map-name",
        check="inputs",
        variant="base",
        file="base/migrate-job.yaml",
        old="name: workpulse-config",
        new="name: workpulse-settings",
        fails_with="Job/workpulse-migrate: container migrate: envFrom: ConfigMap workpulse-settings is neither",
    ),
    mistake(
        id="service-account",
        check="inputs",
        variant="base",
        file="base/scheduler.yaml",
        old="serviceAccountName: scheduler",
        new="serviceAccountName: schedulers",
        fails_with="Deployment/scheduler: runs as ServiceAccount schedulers",
    ),
    # policies
    mistake(
        id="peer-pod-selector",
        check="policies",
        variant="base+policies",
        file="components/network-policies/network-policies.yaml",
        old=AUTH_CALLERS,
        new=AUTH_CALLERS.replace("- scheduler", "- schedular"),
        fails_with="NetworkPolicy/auth: ingress peer: no pod matches app In [schedular]",
    ),
    mistake(
        id="policy-pod-selector",
        check="policies",
        variant="production",
        file="components/network-policies/network-policies.yaml",
        old="  name: sessions\nspec:\n  podSelector:\n    matchLabels:\n      app: sessions",
        new="  name: sessions\nspec:\n  podSelector:\n    matchLabels:\n      app: session",
        fails_with="NetworkPolicy/sessions: podSelector: no pod matches app=session",
    ),
    mistake(
        id="peer-namespace-selector",
        check="policies",
        variant="production",
        file="components/network-policies/network-policies.yaml",
        old="  ingress:\n    - ports:\n        - port: 3000",
        new="  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels:\n"
        "              kubernetes.io/metadata.name: ingress-nginx\n      ports:\n        - port: 3000",
        fails_with="NetworkPolicy/gateway: ingress peer: no namespace matches kubernetes.io/metadata.name=ingress-",
    ),
    mistake(
        id="policy-port",
        check="policies",
        variant="base+policies",
        file="components/network-policies/network-policies.yaml",
        old="        - port: 50055",
        new="        - port: 50056",
        fails_with="NetworkPolicy/scheduler: port 50056 is not a port of Deployment/scheduler",
    ),
]


@pytest.mark.parametrize(("check", "variant", "file", "old", "new", "fails_with"), MISTAKES)
def test_a_planted_mistake_fails_its_check(
    plant: Plant, check: str, variant: str, file: str, old: str, new: str, fails_with: str
) -> None:
    render = plant(variant, file, old, new)
    problems = CHECKS[check](render)
    assert any(fails_with in problem for problem in problems), problems
    others = {other: run(render) for other, run in CHECKS.items() if other != check}
    assert not any(others.values()), others
