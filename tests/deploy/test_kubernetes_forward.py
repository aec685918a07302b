"""deploy/kubernetes/sidecar-forward: the sidecar in forward-proxy mode.

Rendering, schema validation, hardening, probes and drain are checked with the
other overlays (tests/deploy/test_kubernetes.py, OVERLAYS). Here: the app keeps
its vendor URLs through HTTPS_PROXY, cluster traffic bypasses Signet, the app
trusts the CA from a ConfigMap, and the CA key reaches the Signet container only.
"""

from __future__ import annotations

import yaml

from .test_kubernetes import (
    K8S,
    all_containers,
    embedded_config,
    pod_spec,
    signet_container,
    signet_deployment,
)

OVERLAY = "sidecar-forward"


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def _mounts(container: dict, volumes: dict) -> dict[str, dict]:
    return {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}


def test_the_app_goes_through_signet_and_trusts_its_ca() -> None:
    _, config = embedded_config(OVERLAY)
    pod = pod_spec(signet_deployment(OVERLAY))
    volumes = {v["name"]: v for v in pod["volumes"]}
    app = next(c for c in all_containers(pod) if c["name"] != "signet")
    env = _env(app)
    port = config["listen"].rpartition(":")[2]
    assert config["listen"].startswith("127.0.0.1:")
    assert env["HTTPS_PROXY"] == env["https_proxy"] == f"http://127.0.0.1:{port}"
    no_proxy = env["NO_PROXY"].split(",")
    assert env["no_proxy"] == env["NO_PROXY"]
    assert {"localhost", "127.0.0.1", ".svc", ".cluster.local"} <= set(no_proxy)
    # the app's trust store entry is the very certificate Signet signs with
    cert_file = config["forward_proxy"]["ca"]["cert_file"]
    directory, _, name = cert_file.rpartition("/")
    assert env["NODE_EXTRA_CA_CERTS"] == cert_file == env["CURL_CA_BUNDLE"]
    app_mounts = _mounts(app, volumes)
    signet_mounts = _mounts(signet_container(pod), volumes)
    assert app_mounts[directory]["configMap"]["name"] == "signet-ca"
    assert signet_mounts[directory]["configMap"]["name"] == "signet-ca"


def test_the_ca_key_is_in_the_signet_container_only() -> None:
    _, config = embedded_config(OVERLAY)
    pod = pod_spec(signet_deployment(OVERLAY))
    volumes = {v["name"]: v for v in pod["volumes"]}
    key_dir = config["forward_proxy"]["ca"]["key_file"].rpartition("/")[0]
    signet_mounts = _mounts(signet_container(pod), volumes)
    assert signet_mounts[key_dir]["secret"]["secretName"] == "signet-ca-key"
    assert signet_mounts[key_dir]["secret"]["defaultMode"] == 0o440
    for other in all_containers(pod):
        if other["name"] != "signet":
            assert not any("secret" in v for v in _mounts(other, volumes).values()), other["name"]
    examples = {d["metadata"]["name"]: d for d in yaml.safe_load_all((K8S / OVERLAY / "secret.example.yaml").read_text())}
    assert config["forward_proxy"]["ca"]["key_file"].rpartition("/")[2] in examples["signet-ca-key"]["stringData"]


def test_hosts_of_no_route_are_refused() -> None:
    _, config = embedded_config(OVERLAY)
    assert config["forward_proxy"]["other_hosts"] == "refuse"
