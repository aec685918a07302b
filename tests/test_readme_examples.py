"""Every YAML example in the README and the docs pages loads as a config (the docs stay true).

Each ```yaml block is made into a whole config the way a reader would use it:
a full config as it is, a route (``- name: ...``) under ``routes:``, an
``auth:`` block (each alternative line on its own) on a route, a top-level
section (``defaults:``, ``vault:``, ``state:``) next to a route. References
are given values: ``${NAME}`` from the environment, ``${file:...}`` and
``${vault:...}`` replaced by environment references (loading them for real is
tested in tests/secrets), so what is checked is the shape: every key, scheme
and option the README shows exists and validates.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import trustme
import yaml

from proxy.config import load_config_text
from proxy.forward_proxy.ca import write_ca
from tests.docs.pages import ROOT, pages

BLOCKS = [
    (f"{path.relative_to(ROOT)} yaml block {i}", block)
    for path in pages()
    for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S))
]
ROUTE = "routes:\n  - {name: example, prefix: /example, upstream: 'http://127.0.0.1:9'}\n"


def _offline(text: str) -> str:
    """``${file:...}`` and ``${vault:...}`` become environment references."""
    return re.sub(r"\$\{(file|vault):[^}]*\}", "${README_STUB}", text)


def configs(block: str) -> list[str]:
    text = _offline(textwrap.dedent(block))  # blocks inside a list item are indented
    first = text.lstrip().split("\n", 1)[0]
    if re.match(r"(routes|clients|listen):", first):
        return [text]
    if first.startswith("- name:"):
        return ["routes:\n" + "".join(f"  {line}\n" for line in text.splitlines())]
    if first.startswith("auth:"):
        tops = [i for i, line in enumerate(text.splitlines()) if line.startswith("auth:")]
        lines = text.splitlines()
        parts = ["\n".join(lines[a:b]) for a, b in zip(tops, [*tops[1:], len(lines)], strict=True)]
        return [
            "routes:\n  - name: example\n    prefix: /example\n    upstream: 'http://127.0.0.1:9'\n"
            + "".join(f"    {line}\n" for line in part.splitlines())
            for part in parts
        ]
    return [text + "\n" + ROUTE]


def _real_listen_tls_files(text: str, tmp_path: Path) -> str:
    """A listen_tls example names files of a deployed host: made here by trustme, so Signet loads them."""
    data = yaml.safe_load(re.sub(r"\$\{[^}]*\}", "x", text))
    tls = data.get("listen_tls") if isinstance(data, dict) else None
    if not tls:
        return text
    ca = trustme.CA()
    leaf = ca.issue_cert("signet.example")
    blobs = {"cert_file": leaf.cert_chain_pems[0], "key_file": leaf.private_key_pem, "client_ca_file": ca.cert_pem}
    for key, blob in blobs.items():
        if tls.get(key):
            made = tmp_path / f"listen-{key}.pem"
            blob.write_to_path(str(made))
            text = text.replace(f"{key}: {tls[key]}", f"{key}: {made}")
    return text


@pytest.mark.parametrize(("where", "block"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_readme_yaml_example_loads(
    where: str, block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths that exist only on a deployed host (``spool_dir``) point into a temp dir here."""
    token_file = tmp_path / "web-identity-token"
    token_file.write_text("eyJ.example.token")
    env = {"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/example", "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file)}
    for name, value in env.items():  # web identity reads the process environment, as EKS sets it
        monkeypatch.setenv(name, value)
    for text in configs(block):
        text = re.sub(r"(spool_dir:) *\S+", rf"\1 {tmp_path}", text)
        if "forward_proxy:" in text:  # the CA files a reader creates with `signet ca init`
            cert, key = (tmp_path / "ca" / "ca.pem", tmp_path / "ca" / "ca-key.pem")
            if not cert.exists():
                write_ca(tmp_path / "ca")
            text = re.sub(r"[^\s,{}]*/ca-key\.pem", str(key), re.sub(r"[^\s,{}]*/ca\.pem", str(cert), text))
        text = _real_listen_tls_files(text, tmp_path)
        for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text):
            value = "redis://127.0.0.1:6379/0" if "REDIS" in name else f"readme-{name.lower()}-value"
            env.setdefault(name, value)
        assert isinstance(yaml.safe_load(re.sub(r"\$\{[^}]*\}", "x", text)), dict), text
        load_config_text(text, env=env, source=where)


def test_the_docs_have_examples() -> None:
    assert len(BLOCKS) >= 15
    assert {where.split(" ")[0] for where, _ in BLOCKS} >= {
        "docs/vendors.md", "docs/aws.md", "docs/recipes.md", "docs/secrets.md", "docs/shared-service.md"
    }
