"""deploy/kubernetes/shared-redis: the shared overlay plus the optional Redis component.

Rendered (real kustomize when present, else tests/deploy/kustomize.py, and the
two compared), validated offline against the Kubernetes schemas, and checked:
Redis is hardened and reachable only from Signet's pods, and Signet's config
is the shared one plus ``state.redis`` pointing at the component's Service.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.redisurl import redis_url_problem

from . import kustomize
from .test_kubernetes import K8S, embedded_config, objects, pod_spec, rendered, validate

OVERLAY = "shared-redis"


def redis_objects(kind: str) -> list[dict[str, Any]]:
    return [
        o for o in objects(OVERLAY, kind)
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "redis"
    ]


def test_python_renderer_matches_kustomize() -> None:
    command = kustomize.real_renderer()
    if command is None:
        pytest.skip("no kustomize/kubectl on PATH")
    try:
        real = kustomize.render_real(K8S / OVERLAY, command)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{' '.join(command)} does not work here: {exc}")
    assert kustomize.render_python(K8S / OVERLAY) == real


def test_rendered_output_validates(tmp_path: Path) -> None:
    out = tmp_path / "shared-redis.yaml"
    out.write_text(kustomize.dump(list(rendered(OVERLAY))))
    result = validate(out)
    assert result.returncode == 0, result.stdout + result.stderr


def test_overlay_is_shared_plus_redis() -> None:
    def names(overlay: str) -> set[tuple[str, str]]:
        return {
            (o["kind"], o["metadata"]["name"]) for o in rendered(overlay) if o["kind"] != "ConfigMap"
        }

    assert names(OVERLAY) - names("shared") == {
        ("Deployment", "signet-redis"), ("Service", "signet-redis"), ("NetworkPolicy", "signet-redis"),
    }
    assert all(o["metadata"].get("namespace") == "signet" for o in rendered(OVERLAY) if o["kind"] != "Namespace")
    assert len(objects(OVERLAY, "ConfigMap")) == 1  # replaced, not added


def test_redis_is_small_hardened_and_ephemeral() -> None:
    (deployment,) = redis_objects("Deployment")
    pod = pod_spec(deployment)
    (c,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    assert ":" in c["image"] and not c["image"].endswith(":latest")
    args = c["args"]
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"
    assert deployment["spec"]["replicas"] == 1


def test_only_signet_reaches_redis() -> None:
    (deployment,) = redis_objects("Deployment")
    (service,) = redis_objects("Service")
    (policy,) = redis_objects("NetworkPolicy")
    redis_labels = deployment["spec"]["template"]["metadata"]["labels"]
    proxy_labels = next(
        d for d in objects(OVERLAY, "Deployment") if d["metadata"]["name"] == "signet"
    )["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= redis_labels.items()
    assert not service["spec"]["selector"].items() <= proxy_labels.items()
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= redis_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert set(source) == {"podSelector"}  # this namespace only
    assert source["podSelector"]["matchLabels"].items() <= proxy_labels.items()
    assert [p["port"] for p in rule["ports"]] == ["redis"]


def test_config_is_the_shared_one_plus_state() -> None:
    _, config = embedded_config(OVERLAY)
    _, shared = embedded_config("shared")
    state = config.pop("state")
    assert config == shared, "deploy/kubernetes/shared-redis/signet.yaml drifted from shared/signet.yaml"
    url = state["redis"]
    assert redis_url_problem(url) is None
    (service,) = redis_objects("Service")
    port = service["spec"]["ports"][0]["port"]
    assert url == f"redis://{service['metadata']['name']}.signet.svc:{port}/0"
    assert state["on_error"] in ("allow", "deny")


def test_component_is_a_component() -> None:
    kust = yaml.safe_load((K8S / "components" / "redis" / "kustomization.yaml").read_text())
    assert kust["kind"] == "Component"
