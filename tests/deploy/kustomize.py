"""Render the kustomizations under deploy/kubernetes, with or without kustomize.

``render(directory)`` uses a real renderer when one is on PATH (``kustomize
build`` or ``kubectl kustomize``) and otherwise :func:`render_python`, a small
pure-Python renderer that implements exactly the kustomization features the
deploy/ tree uses, and refuses anything else (so a new feature in a
kustomization.yaml fails loudly instead of being silently ignored):

* ``resources`` (files, and directories holding a kustomization.yaml);
* ``components`` (directories holding a ``kind: Component`` kustomization
  with ``resources`` only);
* ``namespace`` (set on every namespaced object, cluster-scoped kinds untouched);
* ``labels`` (``pairs``, ``includeSelectors``, ``includeTemplates``) and
  ``commonLabels`` (= labels with selectors and templates);
* ``configMapGenerator`` / ``secretGenerator`` with ``files`` (``key=path`` or
  ``path``) and ``literals``, plus the content-hash name suffix; ``behavior:
  replace`` swaps the data of the object a resource generated (its metadata
  kept), with a new hash and every reference renamed;
* ``images`` (``newName``, ``newTag``, ``digest``) on containers and
  initContainers of workload pod templates;
* name references to generated ConfigMaps/Secrets from pod templates
  (volumes, projected volumes, ``envFrom``, ``env[].valueFrom``).

The hash suffix is computed the way kustomize v5 does it (api/hasher):
sha256 of the JSON encoding (sorted keys, Go's ``json.Marshal`` escaping) of
``{"kind", "name", "data"[, "binaryData"]}`` for a ConfigMap and ``{"kind",
"type", "name", "data"[, "stringData"]}`` for a Secret, first 10 hex digits,
with 0→g 1→h 3→k a→m e→t. kustomize v5 hashes the generated object before
its name is set, so ``name`` is the empty string in the encoded JSON; this
was checked against ``kubectl kustomize`` (kustomize v5.5.0), and
``test_python_renderer_matches_kustomize`` keeps checking it wherever a real
kustomize is installed.

Set ``SIGNET_KUSTOMIZE=python`` to force the Python renderer.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_KEYS = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "commonLabels",
    "resources",
    "components",
    "configMapGenerator",
    "secretGenerator",
    "images",
}

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
# kustomize's "legacy" output order (kinds not listed come after, by kind).
ORDER_FIRST = [
    "Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition",
    "ServiceAccount", "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding",
    "ClusterRoleBinding", "ConfigMap", "Secret", "Endpoints", "Service",
    "LimitRange", "PriorityClass", "PersistentVolume", "PersistentVolumeClaim",
    "Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget",
]  # fmt: skip
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]


class UnsupportedFeature(Exception):
    """The kustomization uses something render_python does not implement."""


# ------------------------------------------------------------------ real tools


def real_renderer() -> list[str] | None:
    """The command prefix of an installed kustomize, or None."""
    if os.environ.get("SIGNET_KUSTOMIZE") == "python":
        return None
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render_real(directory: Path, command: list[str]) -> list[dict[str, Any]]:
    out = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} {directory} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def render(directory: Path) -> tuple[list[dict[str, Any]], str]:
    """Rendered documents and the name of the renderer that produced them."""
    command = real_renderer()
    if command is not None:
        try:
            return render_real(directory, command), " ".join(command)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            # e.g. a kubectl too old for `labels:`; the Python renderer is the
            # reference the tests are written against anyway.
            pass
    return render_python(directory), "python (tests/deploy/kustomize.py)"


# --------------------------------------------------------------------- hashing


def _go_json(value: Any) -> str:
    """json.Marshal output: sorted keys, no spaces, HTML-safe escaping."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


def _encode(hexdigest: str) -> str:
    return hexdigest[:10].translate(str.maketrans("013ae", "ghkmt"))


def name_hash(obj: dict[str, Any]) -> str:
    """kustomize's hash suffix for a generated ConfigMap or Secret."""
    name = ""  # kustomize v5 hashes the object before naming it (see module doc)
    if obj["kind"] == "ConfigMap":
        enc: dict[str, Any] = {"kind": "ConfigMap", "name": name, "data": obj.get("data", "")}
        if obj.get("binaryData"):
            enc["binaryData"] = obj["binaryData"]
    elif obj["kind"] == "Secret":
        enc = {
            "kind": "Secret",
            "type": obj.get("type", ""),
            "name": name,
            "data": obj.get("data", ""),
        }
        if obj.get("stringData"):
            enc["stringData"] = obj["stringData"]
    else:
        raise UnsupportedFeature(f"hash of kind {obj['kind']}")
    return _encode(hashlib.sha256(_go_json(enc).encode("utf-8")).hexdigest())


# ------------------------------------------------------------------ generators


def _generator_data(directory: Path, spec: dict[str, Any]) -> dict[str, str]:
    unknown = set(spec) - {"name", "files", "literals", "type", "behavior"}
    if spec.get("behavior", "create") not in ("create", "replace"):
        raise UnsupportedFeature(f"generator behavior {spec['behavior']!r}")
    if unknown:
        raise UnsupportedFeature(f"generator keys {sorted(unknown)}")
    data: dict[str, str] = {}
    for entry in spec.get("files", []):
        key, _, path = entry.rpartition("=") if "=" in entry else ("", "", entry)
        key = key or Path(path).name
        data[key] = (directory / path).read_text(encoding="utf-8")
    for entry in spec.get("literals", []):
        key, _, value = entry.partition("=")
        data[key] = value
    return data


def _replaced(existing: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The object a resource generated as ``name`` (now ``name-<hash>``), for ``behavior: replace``."""
    for obj in existing:
        got = obj.get("metadata", {}).get("name", "")
        if obj.get("kind") == kind and got.startswith(name + "-") and len(got) == len(name) + 11:
            return obj
    raise UnsupportedFeature(f"behavior: replace of {kind} {name!r}, which no resource generated")


def _generate(
    directory: Path, kust: dict[str, Any], existing: list[dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], dict]:
    objects: list[dict[str, Any]] = []
    renames: dict[tuple[str, str], str] = {}
    for spec in kust.get("configMapGenerator", []):
        data = _generator_data(directory, spec)
        if spec.get("behavior") == "replace":
            target = _replaced(existing or [], "ConfigMap", spec["name"])
            target["data"] = data
            renamed = f"{spec['name']}-{name_hash(target)}"
            renames[("ConfigMap", target["metadata"]["name"])] = renamed
            target["metadata"]["name"] = renamed
            continue
        obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": spec["name"]},
            "data": data,
        }
        objects.append(obj)
    for spec in kust.get("secretGenerator", []):
        if spec.get("behavior", "create") != "create":
            raise UnsupportedFeature("secretGenerator behavior")
        raw = _generator_data(directory, spec)
        obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": spec["name"]},
            "type": spec.get("type", "Opaque"),
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in raw.items()},
        }
        objects.append(obj)
    for obj in objects:  # replaced objects were renamed above
        old = obj["metadata"]["name"]
        new = f"{old}-{name_hash(obj)}"
        obj["metadata"]["name"] = new
        renames[(obj["kind"], old)] = new
    return objects, renames


# ---------------------------------------------------------------- transformers


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") in WORKLOAD_KINDS:
        return obj.get("spec", {}).get("template", {}).get("spec")
    if obj.get("kind") == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj.get("kind") == "Pod":
        return obj.get("spec")
    return None


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _rename_refs(obj: dict[str, Any], renames: dict[tuple[str, str], str]) -> None:
    pod = _pod_spec(obj)
    if pod is None or not renames:
        return

    def fix(kind: str, holder: dict[str, Any] | None, field: str) -> None:
        if holder and (kind, holder.get(field)) in renames:
            holder[field] = renames[(kind, holder[field])]

    for volume in pod.get("volumes", []):
        fix("ConfigMap", volume.get("configMap"), "name")
        fix("Secret", volume.get("secret"), "secretName")
        for source in (volume.get("projected") or {}).get("sources", []):
            fix("ConfigMap", source.get("configMap"), "name")
            fix("Secret", source.get("secret"), "name")
    for container in _containers(pod):
        for env_from in container.get("envFrom", []):
            fix("ConfigMap", env_from.get("configMapRef"), "name")
            fix("Secret", env_from.get("secretRef"), "name")
        for env in container.get("env", []):
            value_from = env.get("valueFrom") or {}
            fix("ConfigMap", value_from.get("configMapKeyRef"), "name")
            fix("Secret", value_from.get("secretKeyRef"), "name")


def _set_images(obj: dict[str, Any], images: list[dict[str, Any]]) -> None:
    pod = _pod_spec(obj)
    if pod is None:
        return
    for rule in images:
        unknown = set(rule) - {"name", "newName", "newTag", "digest"}
        if unknown:
            raise UnsupportedFeature(f"images keys {sorted(unknown)}")
        for container in _containers(pod):
            image = container.get("image", "")
            name, digest = image.partition("@")[::2]
            last = name.rsplit("/", 1)[-1]
            tag = ""
            if ":" in last:
                name, tag = name.rsplit(":", 1)
            if name != rule["name"]:
                continue
            name = rule.get("newName", name)
            if "digest" in rule:
                container["image"] = f"{name}@{rule['digest']}"
            elif "newTag" in rule:
                container["image"] = f"{name}:{rule['newTag']}"
            else:
                suffix = f":{tag}" if tag else ""
                container["image"] = name + suffix + (f"@{digest}" if digest else "")


def _add_labels(obj: dict[str, Any], pairs: dict[str, str], selectors: bool, templates: bool):
    obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind in WORKLOAD_KINDS:
        if selectors or templates:
            spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if selectors:
            spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)
    elif selectors and kind == "Service":
        spec.setdefault("selector", {}).update(pairs)
    elif selectors and kind in {"PodDisruptionBudget", "NetworkPolicy"}:
        raise UnsupportedFeature(f"label selectors on {kind}")


# ---------------------------------------------------------------------- render


def _legacy_key(obj: dict[str, Any]) -> tuple[int, str, str, str]:
    kind = obj.get("kind", "")
    if kind in ORDER_FIRST:
        rank = ORDER_FIRST.index(kind)
    elif kind in ORDER_LAST:
        rank = len(ORDER_FIRST) + 1 + ORDER_LAST.index(kind)
    else:
        rank = len(ORDER_FIRST)
    meta = obj.get("metadata", {})
    return rank, _gvk_string(obj), meta.get("namespace", ""), meta.get("name", "")


def _gvk_string(obj: dict[str, Any]) -> str:
    """kustomize's Gvk.String(), its tie-breaker after the kind order: group_version_kind, "~G" for core."""
    group, _, version = obj.get("apiVersion", "").rpartition("/")
    return "_".join((group or "~G", version or "~V", obj.get("kind", "") or "~K"))


def render_python(directory: Path) -> list[dict[str, Any]]:
    directory = Path(directory)
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kust) - SUPPORTED_KEYS
    if unknown:
        raise UnsupportedFeature(f"{directory}: kustomization keys {sorted(unknown)}")

    objects: list[dict[str, Any]] = []
    for entry in kust.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects.extend(render_python(path))
        else:
            objects.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    for entry in kust.get("components", []):
        component = yaml.safe_load((directory / entry / "kustomization.yaml").read_text(encoding="utf-8"))
        if component.get("kind") != "Component" or set(component) - {"apiVersion", "kind", "resources"}:
            raise UnsupportedFeature(f"{directory / entry}: only a Component with resources")
        objects.extend(render_python(directory / entry))
    objects = [copy.deepcopy(o) for o in objects]
    generated, renames = _generate(directory, kust, objects)
    objects.extend(generated)

    label_rules: list[tuple[dict[str, str], bool, bool]] = []
    if kust.get("commonLabels"):
        label_rules.append((kust["commonLabels"], True, True))
    for rule in kust.get("labels", []):
        unknown = set(rule) - {"pairs", "includeSelectors", "includeTemplates"}
        if unknown:
            raise UnsupportedFeature(f"labels keys {sorted(unknown)}")
        label_rules.append(
            (
                rule["pairs"],
                rule.get("includeSelectors", False),
                rule.get("includeTemplates", False),
            )
        )

    for obj in objects:
        if "namespace" in kust and obj.get("kind") not in CLUSTER_SCOPED_KINDS:
            obj.setdefault("metadata", {})["namespace"] = kust["namespace"]
        for pairs, selectors, templates in label_rules:
            _add_labels(obj, pairs, selectors, templates)
        _set_images(obj, kust.get("images", []))
        _rename_refs(obj, renames)
    return sorted(objects, key=_legacy_key)


def dump(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=True, default_flow_style=False)
