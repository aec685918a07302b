"""config/signet.yaml shows every option: the option list comes from the config
models (proxy.docgen), so an option added to a model and not to the sample fails
here. The sample loads as it is and with every optional block switched on.

Convention in the sample: ``#: `` starts an optional line (remove the marker to
use it), ``#| `` an alternative to the line above (one of them at a time).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import trustme
import yaml

from proxy.auth import SCHEMES
from proxy.config import load_config_text
from proxy.docgen import options, scheme_options
from proxy.forward_proxy.ca import write_ca
from tests.docs.pages import ROOT

SAMPLE = ROOT / "config" / "signet.yaml"


def _uncomment(text: str, markers: tuple[str, ...]) -> str:
    for marker in markers:
        text = re.sub(rf"^{re.escape(marker)} ", "", text, flags=re.M)
    return text


def _env(text: str) -> dict[str, str]:
    names = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
    return {n: "redis://127.0.0.1:6379/0" if "REDIS" in n else f"sample-{n.lower()}-0123456789" for n in names}


def _paths(node: Any, prefix: str = "") -> set[str]:
    """Option paths as docgen names them; an auth block's fields as ``auth[scheme].field``."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}{key}"
            found.add(path)
            if key == "auth" and prefix == "routes[].":
                found |= {f"auth[{value['scheme']}].{field}" for field in value if field != "scheme"}
            elif key == "auth_by_client" and prefix == "routes[].":
                for entry in value.values():
                    found |= {f"auth[{entry['scheme']}].{field}" for field in entry if field != "scheme"}
            elif key not in ("set_headers", "extra", "vars", "headers", "query") or prefix == "":
                found |= _paths(value, path + ("[]." if isinstance(value, list) else "."))
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict):
                found |= _paths(item, prefix)
    return found


def _expected() -> set[str]:
    paths = {opt.path for opt in options()}
    for scheme in SCHEMES:
        paths |= {f"auth[{scheme}].{opt.name}" for opt in scheme_options(scheme)}
    return paths


def test_the_sample_loads_as_it_is() -> None:
    text = SAMPLE.read_text()
    settings = load_config_text(text, env=_env(text), source=str(SAMPLE))
    assert {r.name for r in settings.routes} >= {"threecommas", "s3", "acme-recipe", "billing-oauth"}


def test_the_sample_loads_with_every_optional_block(tmp_path: Path) -> None:
    text = _uncomment(SAMPLE.read_text(), ("#:",))
    text = text.replace("/var/lib/signet/spool", str(tmp_path))
    cert, key = write_ca(tmp_path / "ca")  # the CA `signet ca init` writes, for forward_proxy
    text = text.replace("/etc/signet/ca-key.pem", str(key)).replace("/etc/signet/ca.pem", str(cert))
    # listen_tls's files exist on a deployed host only: made here by trustme
    ca = trustme.CA()
    leaf = ca.issue_cert("signet.example")
    for path, blob in (
        ("/run/tls/tls.crt", leaf.cert_chain_pems[0]),
        ("/run/tls/tls.key", leaf.private_key_pem),
        ("/run/tls/clients-ca.crt", ca.cert_pem),
    ):
        made = tmp_path / path.rsplit("/", 1)[1]
        blob.write_to_path(str(made))
        text = text.replace(path, str(made))
    settings = load_config_text(text, env=_env(text), source=f"{SAMPLE} (every #: line on)")
    assert settings.clients and settings.state.redis is not None


def test_the_sample_names_every_option_of_the_models() -> None:
    text = _uncomment(SAMPLE.read_text(), ("#:", "#|"))
    shown = _paths(yaml.safe_load(re.sub(r"\$\{[^}\n]*\}", "x", text)))  # references are not YAML
    expected = _expected()
    assert sorted(expected - shown) == [], "options missing from config/signet.yaml"
    assert sorted(shown - expected) == [], "config/signet.yaml shows options the models do not have"
    assert {p.split("]")[0][5:] for p in shown if p.startswith("auth[")} | {"none"} >= set(SCHEMES)
