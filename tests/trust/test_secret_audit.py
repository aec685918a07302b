"""Secret hygiene audit: one representative session at debug level, then grep everything.

Every scheme, inbound clients, every kind of error Signet answers, a token
failure, a reload that changes secrets. Afterwards no configured secret,
client token, signature key or issued OAuth2 token may appear in stderr, in
any body Signet answered, in /metrics, in `signet check` output or in repr()
of the loaded config.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from proxy.config import load_config, load_config_text
from proxy.mock.oauth import OAUTH_STATE, create_app, threeplcentral_app
from tests.conftest import ROOT, SUITE_SECRETS, config_text, secret

SECRETS = {
    name: secret(f"audit-{name.lower()}-{i:02d}-Zq8vW3xR")
    for i, name in enumerate(
        [
            "TC_KEY",
            "TC_SECRET",
            "TCS_KEY",
            "TCS_SECRET",
            "C3_KEY",
            "C3_SECRET",
            "AP_ID",
            "AP_SECRET",
            "QL_KEY",
            "QL_SECRET",
            "HM_KEY",
            "HM_SECRET",
            "OA_SECRET",
            "OA_WRONG",
            "TPL_SECRET",
            "ST_VALUE",
            "BA_PASSWORD",
            "BE_TOKEN",
            "CLIENT_A",
            "CLIENT_B",
            "SET_HEADER",
        ]
    )
}
RELOADED = {k: secret(v + "-reloaded") for k, v in SECRETS.items()}


def routes(upstream: Any, oauth: Any, tpl: Any, refused_port: int) -> list[dict[str, Any]]:
    up = str(upstream.make_url(""))
    signed = [
        (
            "3c-simple",
            {"scheme": "threeclicks-simple", "api_key": "${TCS_KEY}", "api_secret": "${TCS_SECRET}"},
        ),
        ("3c-strict", {"scheme": "threeclicks-strict", "api_key": "${TC_KEY}", "api_secret": "${TC_SECRET}"}),
        ("3commas", {"scheme": "threecommas", "api_key": "${C3_KEY}", "secret": "${C3_SECRET}"}),
        ("apliiq", {"scheme": "apliiq", "app_id": "${AP_ID}", "shared_secret": "${AP_SECRET}"}),
        ("quicklizard", {"scheme": "quicklizard", "api_key": "${QL_KEY}", "api_secret": "${QL_SECRET}"}),
        (
            "recipe",
            {
                "scheme": "hmac",
                "vars": {"key_id": "${HM_KEY}", "secret": "${HM_SECRET}"},
                "message": "{method}\n{path}\n{query}\n{body_sha256}\n{timestamp}",
                "key": "{secret}",
                "algorithm": "sha256",
                "encoding": "hex",
                "headers": {"X-Key": "{key_id}", "X-Sig": "{signature}", "X-Ts": "{timestamp}"},
            },
        ),
        ("static", {"scheme": "static", "headers": {"X-Static": "${ST_VALUE}"}}),
        ("basic", {"scheme": "basic", "username": "user", "password": "${BA_PASSWORD}"}),
        ("bearer", {"scheme": "bearer", "token": "${BE_TOKEN}"}),
        ("none", {"scheme": "none"}),
    ]
    out: list[dict[str, Any]] = [
        {
            "name": n,
            "prefix": f"/{n}",
            "upstream": up,
            "auth": a,
            "max_body_bytes": 4096,
            "timeout": {"read": 1},
            "set_headers": {"X-Set": "${SET_HEADER}"},
        }
        for n, a in signed
    ]
    out += [
        {
            "name": "oauth",
            "prefix": "/oauth",
            "upstream": str(oauth.make_url("/api")),
            "auth": {
                "scheme": "oauth2-client-credentials",
                "token_url": str(oauth.make_url("/oauth/token")),
                "client_id": "cid",
                "client_secret": "${OA_SECRET}",
            },
        },
        {
            "name": "oauth-bad",
            "prefix": "/oauth-bad",
            "upstream": str(oauth.make_url("/api")),
            "auth": {
                "scheme": "oauth2-client-credentials",
                "token_url": str(oauth.make_url("/oauth/token")),
                "client_id": "cid",
                "client_secret": "${OA_WRONG}",
            },
        },
        {
            "name": "3pl",
            "prefix": "/3pl",
            "upstream": str(tpl.make_url("/api")),
            "auth": {
                "scheme": "threeplcentral",
                "client_id": "tpl-id",
                "client_secret": "${TPL_SECRET}",
                "user_login": "auditor",
                "token_url": str(tpl.make_url("/AuthServer/api/Token")),
            },
        },
        {"name": "dead", "prefix": "/dead", "upstream": f"http://127.0.0.1:{refused_port}"},
    ]
    return out


def config(upstream: Any, oauth: Any, tpl: Any, port: int) -> str:
    return config_text(
        routes(upstream, oauth, tpl, port),
        clients=[
            {"name": "app-a", "token": "${CLIENT_A}"},
            {"name": "app-b", "token": "${CLIENT_B}", "routes": ["none"]},
        ],
    )


async def test_no_secret_anywhere_after_a_representative_session(
    aiohttp_server: Any, upstream: Any, signet_process: Any, unused_tcp_port: int, tmp_path: Any
) -> None:
    oauth = await aiohttp_server(
        create_app(client_id="cid", client_secret=SECRETS["OA_SECRET"]), host="127.0.0.1"
    )
    tpl = await aiohttp_server(
        threeplcentral_app(client_id="tpl-id", client_secret=SECRETS["TPL_SECRET"], user_login="auditor"),
        host="127.0.0.1",
    )
    text = config(upstream, oauth, tpl, unused_tcp_port)
    p = signet_process(text, env=SECRETS, args=["--log-level", "debug"])
    bodies: list[str] = []
    statuses: dict[str, int] = {}
    auth = {"Proxy-Authorization": f"Bearer {SECRETS['CLIENT_A']}"}

    async def session(s: aiohttp.ClientSession, tag: str) -> None:
        names = [r["name"] for r in routes(upstream, oauth, tpl, unused_tcp_port)]
        for n in names:
            for method, data in (("GET", None), ("POST", b'{"a": 1}')):
                async with s.request(method, p.proxy_url + f"/{n}/items?x=1", data=data, headers=auth) as r:
                    bodies.append(await r.text())
                    statuses[f"{tag}:{n}:{method}"] = r.status
        errors = [
            ("GET", "/none/x", {}, None),  # 407
            ("GET", "/none/x", {"X-Signet-Token": "not-a-client-token-000"}, None),  # 403
            ("GET", "/3commas/x", {"X-Signet-Token": SECRETS["CLIENT_B"]}, None),  # 403 route
            ("GET", "/nowhere", auth, None),  # 404
            ("GET", "/none/a/%2e%2e/b", auth, None),  # 400
            ("POST", "/3commas/x", auth, b"z" * 10000),  # 413
            ("GET", "/dead/x", auth, None),  # 502
            ("GET", "/none/silent", auth, None),  # 504
            ("GET", "/oauth-bad/x", auth, None),  # 502 token_error
        ]
        for method, path, headers, data in errors:
            async with s.request(method, p.proxy_url + path, headers=headers, data=data) as r:
                bodies.append(await r.text())
                statuses[f"{tag}:{path}:{method}"] = r.status
        # a malformed request answered by the protocol layer, token in a header
        reader, writer = await asyncio.open_connection(*p.proxy_url.removeprefix("http://").split(":"))
        writer.write(f"GET /none/x HTTP/1.1\r\nX-Signet-Token: {SECRETS['CLIENT_A']}\x00\r\n\r\n".encode())
        bodies.append((await asyncio.wait_for(reader.read(), 10)).decode("latin-1"))
        writer.close()

    async with aiohttp.ClientSession() as s:
        await session(s, "first")
        # reload with every secret changed, now read from files (${file:...})
        reloaded_text = text
        for k, v in RELOADED.items():
            f = tmp_path / f"secret-{k}"
            f.write_text(v + "\n")
            reloaded_text = reloaded_text.replace("${" + k + "}", "${file:" + str(f) + "}")
        _config_path(p).write_text(reloaded_text)
        oauth.app[OAUTH_STATE].client_secret = RELOADED["OA_SECRET"]
        tpl.app[OAUTH_STATE].client_secret = RELOADED["TPL_SECRET"]
        p.signal(signal.SIGHUP)
        p.wait_event("reloaded")
        auth["Proxy-Authorization"] = f"Bearer {RELOADED['CLIENT_A']}"
        await session(s, "reloaded")
        async with s.get(p.admin_url + "/metrics") as r:
            metrics = await r.text()
        async with s.get(p.proxy_url + "/none/x", headers={"X-Signet-Token": RELOADED["CLIENT_B"]}) as r:
            assert r.status == 200

    for state in (oauth.app[OAUTH_STATE], tpl.app[OAUTH_STATE]):
        for token in state.issued:
            SUITE_SECRETS.add(token)
    assert p.stop() == 0
    stderr = p.text()

    # the session really covered what it claims
    for tag in ("first", "reloaded"):
        for n in (
            "3c-simple",
            "3c-strict",
            "3commas",
            "apliiq",
            "quicklizard",
            "recipe",
            "static",
            "basic",
            "bearer",
            "none",
            "oauth",
            "3pl",
        ):
            assert statuses[f"{tag}:{n}:GET"] == 200, (tag, n, statuses)
        assert statuses[f"{tag}:/none/x:GET"] in (403, 407)
        assert statuses[f"{tag}:/nowhere:GET"] == 404
        assert statuses[f"{tag}:/3commas/x:POST"] == 413
        assert statuses[f"{tag}:/dead/x:GET"] == 502
        assert statuses[f"{tag}:/none/silent:GET"] == 504
        assert statuses[f"{tag}:/oauth-bad/x:GET"] == 502
    # the audited log is the whole session: a line per request, the reload, the token fetches
    events = [e.get("event") for e in p.events()]
    assert events.count("request") >= len(statuses), events
    assert {"reloaded", "token_fetch", "stopped"} <= set(events), events

    issued = {t for st in (oauth.app[OAUTH_STATE], tpl.app[OAUTH_STATE]) for t in st.issued}
    assert issued, "the OAuth2 routes fetched tokens"
    everything = set(SECRETS.values()) | set(RELOADED.values()) | issued
    settings_first = load_config_text(text, env=SECRETS)
    reprs = (
        repr(settings_first)
        + str(settings_first)
        + "".join(repr(r) + repr(r.auth) for r in settings_first.routes)
        + repr(settings_first.clients)
        + repr(load_config(_config_path(p)))
    )
    check = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(_config_path(p))],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert check.returncode == 0, check.stderr
    places = {
        "stderr": stderr,
        "error bodies": "\n".join(bodies),
        "/metrics": metrics,
        "repr(config)": reprs,
        "signet check": check.stdout + check.stderr,
    }
    for where, haystack in places.items():
        for value in everything:
            assert value not in haystack, f"a secret ({len(value)} chars) leaked into {where}"


def _config_path(p: Any) -> Path:
    return Path(next(a for a in p.proc.args if str(a).endswith(".yaml")))
