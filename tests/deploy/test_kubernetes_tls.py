"""The shared overlays speak TLS by default; shared-mtls knows its clients by certificate.

Checked offline on the rendered manifests: the certificate cert-manager issues
is the one the pod mounts where Signet's config looks for it, it names the
Service, the client CA of the mTLS variant is in the same Secret, and the
admin port stays plain HTTP for the kubelet's probes and Prometheus.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from . import kustomize
from .test_kubernetes import (
    K8S,
    embedded_config,
    objects,
    only,
    pod_spec,
    rendered,
    signet_container,
    signet_deployment,
    validate,
)

TLS_OVERLAYS = ["shared", "shared-redis", "shared-mtls"]


def _mounted_secret_dirs(overlay: str) -> dict[str, str]:
    """mountPath -> secretName for the Signet container."""
    pod = pod_spec(signet_deployment(overlay))
    volumes = {v["name"]: v for v in pod["volumes"]}
    return {
        m["mountPath"]: volumes[m["name"]]["secret"]["secretName"]
        for m in signet_container(pod)["volumeMounts"]
        if "secret" in volumes[m["name"]]
    }


@pytest.mark.parametrize("overlay", TLS_OVERLAYS)
def test_listener_certificate_is_issued_and_mounted_where_the_config_reads_it(overlay: str) -> None:
    _, config = embedded_config(overlay)
    tls = config["listen_tls"]
    certificate = only(overlay, "Certificate")
    secret_name = certificate["spec"]["secretName"]
    mounts = _mounted_secret_dirs(overlay)
    for key in ("cert_file", "key_file", "client_ca_file"):
        if key in tls:
            directory, _, name = tls[key].rpartition("/")
            assert mounts.get(directory) == secret_name, (key, mounts)
            assert name in {"tls.crt", "tls.key", "ca.crt"}  # the keys cert-manager writes
    service = next(x for x in objects(overlay, "Service") if x["metadata"]["name"] == "signet")
    namespace = service["metadata"]["namespace"]
    name = service["metadata"]["name"]
    assert {name, f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"} <= set(
        certificate["spec"]["dnsNames"]
    )
    assert "server auth" in certificate["spec"]["usages"]
    assert certificate["spec"]["privateKey"]["rotationPolicy"] == "Always"
    assert certificate["spec"]["issuerRef"]["name"]


@pytest.mark.parametrize("overlay", TLS_OVERLAYS)
def test_admin_stays_plain_and_only_monitoring_may_reach_it(overlay: str) -> None:
    _, config = embedded_config(overlay)
    assert config["admin_listen"].endswith(":9191")
    container = signet_container(pod_spec(signet_deployment(overlay)))
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"].get("scheme", "HTTP") == "HTTP"
    policy = next(p for p in objects(overlay, "NetworkPolicy") if p["metadata"]["name"] == "signet")
    admin_rules = [r for r in policy["spec"]["ingress"] if {p["port"] for p in r["ports"]} == {"admin"}]
    assert len(admin_rules) == 1
    assert admin_rules[0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


def test_mtls_variant_requires_certificates_and_names_clients_by_spiffe_id() -> None:
    _, config = embedded_config("shared-mtls")
    tls = config["listen_tls"]
    assert tls["require_client_cert"] is True and tls["client_ca_file"].endswith("/ca.crt")
    uris = {c["name"]: c["cert"]["san_uri"] for c in config["clients"]}
    assert all(u.startswith("spiffe://") for u in uris.values()) and not any(
        "token" in c for c in config["clients"]
    )
    example = yaml.safe_load((K8S / "shared-mtls" / "app-certificate.example.yaml").read_text())
    assert example["kind"] == "Certificate" and "client auth" in example["spec"]["usages"]
    assert example["spec"]["uris"] == [uris["billing-app"]]
    # the tokens Secret is not needed by this variant, so the pod must start without it
    pod = pod_spec(signet_deployment("shared-mtls"))
    tokens = next(v for v in pod["volumes"] if v["name"] == "client-tokens")
    assert tokens["secret"]["optional"] is True


def test_mtls_variant_renders_validates_and_matches_kustomize(tmp_path: Path) -> None:
    out = tmp_path / "shared-mtls.yaml"
    out.write_text(kustomize.dump(list(rendered("shared-mtls"))))
    result = validate(out)
    assert result.returncode == 0, result.stdout + result.stderr
    command = kustomize.real_renderer()
    if command is not None:
        assert kustomize.render_python(K8S / "shared-mtls") == kustomize.render_real(K8S / "shared-mtls", command)


def _kinds_and_names(overlay: str) -> set[tuple[str, str]]:
    return {(d["kind"], d["metadata"]["name"].rsplit("-", 1)[0] if d["kind"] == "ConfigMap" else d["metadata"]["name"]) for d in rendered(overlay)}


def test_mtls_variant_is_shared_with_another_config() -> None:
    assert _kinds_and_names("shared-mtls") == _kinds_and_names("shared")
    shared_text, _ = embedded_config("shared")
    mtls_text, _ = embedded_config("shared-mtls")
    assert shared_text != mtls_text
