"""Checks on deploy/kubernetes: render, validate against the Kubernetes schemas
(kubernetes-validate, offline), and assert the hardening and rollout rules.

Renderer: a real kustomize if one is on PATH, else tests/deploy/kustomize.py
(see its docstring); both give the same output where both exist.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import kustomize

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
OVERLAYS = ["sidecar", "shared", "sidecar-vault", "sidecar-forward"]
K8S_VERSION = "1.30.0"  # oldest version we support; kubernetes-validate bundles its schemas

CONFIG_MOUNT = "/etc/signet"
ADMIN_PORT = 9191


# --------------------------------------------------------------------- helpers


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    docs, _ = kustomize.render(K8S / overlay)
    return tuple(docs)


def objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in rendered(overlay) if d.get("kind") == kind]


def only(overlay: str, kind: str) -> dict[str, Any]:
    found = objects(overlay, kind)
    assert len(found) == 1, f"{overlay}: expected one {kind}, got {len(found)}"
    return found[0]


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def signet_container(pod: dict[str, Any]) -> dict[str, Any]:
    found = [c for c in all_containers(pod) if c["name"] == "signet"]
    assert len(found) == 1
    return found[0]


def signet_deployment(overlay: str) -> dict[str, Any]:
    found = [
        d
        for d in objects(overlay, "Deployment")
        if any(c["name"] == "signet" for c in all_containers(pod_spec(d)))
    ]
    assert len(found) == 1
    return found[0]


def embedded_config(overlay: str) -> tuple[str, dict[str, Any]]:
    """The signet.yaml text in the ConfigMap mounted at /etc/signet."""
    pod = pod_spec(signet_deployment(overlay))
    mount = next(m for m in signet_container(pod)["volumeMounts"] if m["mountPath"] == CONFIG_MOUNT)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    cm_name = volume["configMap"]["name"]
    cm = next(c for c in objects(overlay, "ConfigMap") if c["metadata"]["name"] == cm_name)
    text = cm["data"]["signet.yaml"]
    return text, yaml.safe_load(text)


def prestop_sleep(container: dict[str, Any]) -> float:
    pre = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    command = (pre.get("exec") or {}).get("command") or []
    if command and Path(command[0]).name == "sleep":
        return float(command[1])
    return 0.0


def validator() -> str:
    here = Path(sys.executable).parent / "kubernetes-validate"
    if here.exists():
        return str(here)
    found = shutil.which("kubernetes-validate")
    assert found, "kubernetes-validate is missing: pip install -e '.[test]'"
    return found


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [validator(), "--strict", "--quiet", "-k", K8S_VERSION, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest under deploy/kubernetes (not kustomize's own
    file, not Signet's config)."""
    return sorted(p for p in K8S.rglob("*.yaml") if p.name not in {"kustomization.yaml", "signet.yaml"})


# ------------------------------------------------------------------- rendering


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomization_renders(overlay: str) -> None:
    kinds = {d["kind"] for d in rendered(overlay)}
    assert {"ConfigMap", "Deployment"} <= kinds
    # Secrets are created out of band from files, never rendered from git.
    assert "Secret" not in kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_python_renderer_matches_kustomize(overlay: str) -> None:
    command = kustomize.real_renderer()
    if command is None:
        pytest.skip("no kustomize/kubectl on PATH; the Python renderer is used alone")
    try:
        real = kustomize.render_real(K8S / overlay, command)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{' '.join(command)} does not work here: {exc}")
    assert kustomize.render_python(K8S / overlay) == real


@pytest.mark.parametrize(
    ("obj", "expected"),
    [  # kustomize's own test vectors (api/hasher/hasher_test.go)
        ({"kind": "ConfigMap"}, "6ct58987ht"),
        ({"kind": "ConfigMap", "data": {"one": ""}}, "9g67k2htb6"),
        ({"kind": "ConfigMap", "data": {"one": ""}, "binaryData": {"two": ""}}, "698h7c7t9m"),
        ({"kind": "Secret", "type": "my-type"}, "5gmgkf8578"),
        ({"kind": "Secret", "type": "my-type", "data": {"one": ""}}, "74bd68bm66"),
    ],
)
def test_python_renderer_hash_matches_kustomize_vectors(obj: dict, expected: str) -> None:
    assert kustomize.name_hash(obj) == expected


def test_python_renderer_refuses_unknown_features(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("patches: []\n")
    with pytest.raises(kustomize.UnsupportedFeature):
        kustomize.render_python(tmp_path)


# ------------------------------------------------------------------ validation


def test_manifest_files_validate() -> None:
    files = manifest_files()
    assert len(files) >= 8
    result = validate(*files)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_output_validates(overlay: str, tmp_path: Path) -> None:
    out = tmp_path / f"{overlay}.yaml"
    out.write_text(kustomize.dump(list(rendered(overlay))))
    result = validate(out)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validator_is_strict(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80}], selectr: {a: b}}\n"
    )
    assert validate(bad).returncode != 0


# -------------------------------------------------------------------- hardening


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_hardened(overlay: str) -> None:
    for deployment in objects(overlay, "Deployment"):
        pod = pod_spec(deployment)
        pod_sc = pod.get("securityContext", {})
        assert pod.get("automountServiceAccountToken") is False
        for c in all_containers(pod):
            where = f"{overlay}/{deployment['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            assert isinstance(uid, int) and uid > 0, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("privileged") in (None, False), where
            seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
            assert seccomp.get("type") == "RuntimeDefault", where
            resources = c.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{where} {part}"
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] or "@" in image, f"{where}: untagged image"
            assert not image.endswith(":latest"), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_admin_endpoints(overlay: str) -> None:
    container = signet_container(pod_spec(signet_deployment(overlay)))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        http = container[probe]["httpGet"]
        assert http["path"] == path
        port = ports.get(http["port"], http["port"])
        assert port == ADMIN_PORT, probe
    _, config = embedded_config(overlay)
    # kubelet probes the pod IP, so admin must listen on all interfaces in a pod
    assert config["admin_listen"] == f"0.0.0.0:{ADMIN_PORT}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_signet_runs_the_mounted_config(overlay: str) -> None:
    pod = pod_spec(signet_deployment(overlay))
    container = signet_container(pod)
    assert container.get("args") == ["serve", "--config", f"{CONFIG_MOUNT}/signet.yaml"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert all(m.get("readOnly") for m in mounts.values())
    # the generated ConfigMap carries a content hash, so config edits roll out
    cm_volume = next(v for v in pod["volumes"] if v["name"] == mounts[CONFIG_MOUNT]["name"])
    assert re.fullmatch(r"signet-config-[a-z0-9]{10}", cm_volume["configMap"]["name"])


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "sidecar-vault"])
def test_secret_files_are_mounted_and_match_the_example(overlay: str) -> None:
    text, _ = embedded_config(overlay)
    pod = pod_spec(signet_deployment(overlay))
    container = signet_container(pod)
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret_mounts = {
        m["mountPath"]: volumes[m["name"]]["secret"]["secretName"]
        for m in container["volumeMounts"]
        if "secret" in volumes[m["name"]]
    }
    examples = {
        d["metadata"]["name"]: set(d["stringData"])
        for d in yaml.safe_load_all((K8S / overlay / "secret.example.yaml").read_text())
    }
    for d in yaml.safe_load_all((K8S / overlay / "secret.example.yaml").read_text()):
        assert all(v.startswith("REPLACE_ME") for v in d["stringData"].values())
    referenced = re.findall(r"\$\{file:([^}]+)\}", text)
    assert referenced
    for path in referenced:
        directory, _, key = path.rpartition("/")
        assert directory in secret_mounts, f"{path} is not on a mounted Secret"
        assert key in examples[secret_mounts[directory]], f"{key} missing in secret.example"
    kust = (K8S / overlay / "kustomization.yaml").read_text()
    assert "secret.example" not in kust


def test_vault_sidecar_logs_in_with_a_projected_token_for_vault() -> None:
    """Kubernetes auth: the jwt_file is a projected service-account token with an audience."""
    _, config = embedded_config("sidecar-vault")
    k8s = config["vault"]["auth"]["kubernetes"]
    directory, _, name = k8s["jwt_file"].rpartition("/")
    deployment = signet_deployment("sidecar-vault")
    pod = pod_spec(deployment)
    assert pod.get("automountServiceAccountToken") is False  # no default token anywhere
    accounts = {o["metadata"]["name"] for o in objects("sidecar-vault", "ServiceAccount")}
    assert pod["serviceAccountName"] in accounts
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in signet_container(pod)["volumeMounts"] if m["mountPath"] == directory)
    sources = volumes[mount["name"]]["projected"]["sources"]
    token = next(s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s)
    assert token["path"] == name
    assert token["audience"] == "vault"
    assert 600 <= token["expirationSeconds"] <= 86400
    # only Signet sees the Vault token
    for other in all_containers(pod):
        if other["name"] != "signet":
            assert all(m["name"] != mount["name"] for m in other.get("volumeMounts", []))
    # every credential comes from Vault, and it is re-read
    assert config["secret_refresh"] > 0
    for route in config["routes"]:
        for key, value in route["auth"].items():
            if key != "scheme":
                assert value.startswith("${vault:"), (route["name"], key)


def test_sidecar_proxy_is_loopback_only() -> None:
    _, config = embedded_config("sidecar")
    assert config["listen"].startswith("127.0.0.1:")
    assert "clients" not in config and not config.get("allow_unauthenticated")
    container = signet_container(pod_spec(signet_deployment("sidecar")))
    assert {p["containerPort"] for p in container["ports"]} == {ADMIN_PORT}
    # only the Signet container sees the vendor secrets
    for other in all_containers(pod_spec(signet_deployment("sidecar"))):
        if other["name"] != "signet":
            assert not any("secrets" in m["mountPath"] for m in other.get("volumeMounts", []))


def test_shared_is_highly_available() -> None:
    deployment = only("shared", "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = pod_spec(deployment)
    spread = pod.get("topologySpreadConstraints", [])
    anti = (pod.get("affinity") or {}).get("podAntiAffinity")
    assert anti or any(c["topologyKey"] == "kubernetes.io/hostname" for c in spread)

    pdb = only("shared", "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    hpa = only("shared", "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert any(m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])

    service = only("shared", "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert 8080 in {p["port"] for p in service["spec"]["ports"]}


def test_shared_network_policy_admits_only_labelled_clients() -> None:
    policy = only("shared", "NetworkPolicy")
    pod_labels = only("shared", "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert "Ingress" in policy["spec"]["policyTypes"]
    proxy_rules = [r for r in policy["spec"]["ingress"] if {p["port"] for p in r["ports"]} & {"proxy", 8080}]
    assert proxy_rules
    for rule in proxy_rules:
        for peer in rule["from"]:
            assert peer["podSelector"]["matchLabels"] == {"signet-client": "true"}


def test_shared_listens_publicly_only_with_clients() -> None:
    _, config = embedded_config("shared")
    assert config["listen"] == "0.0.0.0:8080"
    assert config["clients"] and not config.get("allow_unauthenticated")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shutdown_drains_before_sigkill(overlay: str) -> None:
    deployment = signet_deployment(overlay)
    pod = pod_spec(deployment)
    _, config = embedded_config(overlay)
    grace = pod["terminationGracePeriodSeconds"]
    sleep = prestop_sleep(signet_container(pod))
    assert sleep > 0
    assert grace > config["shutdown_grace"] + sleep


# ------------------------------------------------------------ the config itself


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmaps_hold_no_secrets(overlay: str) -> None:
    from .test_config import assert_no_secret_values

    for cm in objects(overlay, "ConfigMap"):
        for text in cm.get("data", {}).values():
            assert_no_secret_values(yaml.safe_load(text))
    text, _ = embedded_config(overlay)
    assert text == (K8S / overlay / "signet.yaml").read_text()
