"""The mock OAuth2 server itself: strict token endpoint, protected API, knobs."""

from __future__ import annotations

import base64

import pytest

from proxy.clock import FrozenClock
from proxy.mock.oauth import OAUTH_STATE, create_app
from proxy.tokens import client_basic_authorization

CID, SECRET = "cid", "top secret"
BASIC = client_basic_authorization(CID, SECRET)
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def clock():
    return FrozenClock()


@pytest.fixture
async def client(aiohttp_client, clock):
    app = create_app(client_id=CID, client_secret=SECRET, lifetime=100, clock=clock)
    return await aiohttp_client(app)


async def get_token(client) -> str:
    resp = await client.post(
        "/oauth/token",
        data="grant_type=client_credentials",
        headers={"Authorization": BASIC, "Content-Type": FORM, "Accept": "application/json"},
    )
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 100
    return body["access_token"]


async def test_token_then_protected_api(client):
    token = await get_token(client)
    resp = await client.post(
        "/v1/orders%2F7?x=1", data=b"12345", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 200
    assert await resp.json() == {
        "ok": True,
        "vendor": "oauth2",
        "method": "POST",
        "path": "/v1/orders%2F7",
        "query": "x=1",
        "body_bytes": 5,
    }
    state = client.app[OAUTH_STATE]
    assert (state.token_requests, state.api_requests) == (1, 1)
    call = state.api_calls[-1]
    assert call.method == "POST" and call.raw_path == "/v1/orders%2F7?x=1" and call.body == b"12345"


@pytest.mark.parametrize(
    ("headers", "data", "status", "error"),
    [
        ({"Content-Type": FORM}, "grant_type=client_credentials", 401, "invalid_client"),
        (
            {"Authorization": client_basic_authorization(CID, "nope"), "Content-Type": FORM},
            "grant_type=client_credentials",
            401,
            "invalid_client",
        ),
        (
            {"Authorization": BASIC, "Content-Type": "application/json"},
            '{"grant_type": "client_credentials"}',
            400,
            "invalid_request",
        ),
        (
            {"Authorization": BASIC, "Content-Type": FORM},
            "grant_type=password",
            400,
            "unsupported_grant_type",
        ),
        ({"Authorization": BASIC, "Content-Type": FORM}, "scope=x", 400, "invalid_request"),
        (
            {"Authorization": BASIC, "Content-Type": FORM},
            "grant_type=client_credentials&grant_type=client_credentials",
            400,
            "invalid_request",
        ),
        (
            {"Authorization": BASIC, "Content-Type": FORM},
            f"grant_type=client_credentials&client_id={CID}",
            400,
            "invalid_request",
        ),
        (
            {"Authorization": "Basic !!!", "Content-Type": FORM},
            "grant_type=client_credentials",
            401,
            "invalid_client",
        ),
    ],
)
async def test_token_endpoint_rejections(client, headers, data, status, error):
    resp = await client.post("/oauth/token", data=data, headers=headers)
    assert resp.status == status
    body = await resp.json()
    assert body["error"] == error and body["error_description"]
    assert SECRET not in await resp.text()
    assert client.app[OAUTH_STATE].issued == []


async def test_plain_basic_without_form_encoding_is_equivalent_for_simple_secrets(client):
    raw = base64.b64encode(f"{CID}:{SECRET}".encode()).decode()  # space not encoded as '+'
    resp = await client.post(
        "/oauth/token",
        data="grant_type=client_credentials",
        headers={"Authorization": f"Basic {raw}", "Content-Type": FORM},
    )
    assert resp.status == 200


async def test_api_401_reasons_and_knobs(client, clock):
    state = client.app[OAUTH_STATE]

    async def api(token):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = await client.get("/anything", headers=headers)
        text = await resp.text()
        if token:
            assert token not in text
        return resp.status, (await resp.json()).get("error"), resp

    assert (await api(None))[:2] == (401, "missing bearer token")
    assert (await api("made-up"))[:2] == (401, "unknown token")
    token = await get_token(client)
    status, _, resp = await api(token)
    assert status == 200

    resp = await client.post("/__mock/control", json={"reject_next_api": 2})
    assert (await resp.json())["reject_next_api"] == 2
    assert (await api(token))[:2] == (401, "token rejected")
    assert (await api(token))[:2] == (401, "token rejected")
    assert (await api(token))[0] == 200

    clock.advance(101)
    assert (await api(token))[:2] == (401, "expired token")
    token2 = await get_token(client)
    assert (await api(token2))[0] == 200
    status, _, resp = await api(token2)
    assert 'error="invalid_token"' not in resp.headers.get("WWW-Authenticate", "")  # 200 has none

    resp = await client.post("/__mock/control", json={"revoke_all": True})
    assert resp.status == 200
    status, reason, resp = await api(token2)
    assert (status, reason) == (401, "revoked token")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
    assert state.api_requests == 10


async def test_control_endpoint(client):
    state = client.app[OAUTH_STATE]
    resp = await client.post("/__mock/control", json={"fail_mode": "down", "lifetime": 5})
    assert resp.status == 200 and state.fail_mode == "down" and state.lifetime == 5
    resp = await client.post(
        "/oauth/token",
        data="grant_type=client_credentials",
        headers={"Authorization": BASIC, "Content-Type": FORM},
    )
    assert resp.status == 500
    assert (await client.post("/__mock/control", json={"fail_mode": "bogus"})).status == 400
    assert (await client.post("/__mock/control", json={"nope": 1})).status == 400
    assert (await client.post("/__mock/control", data="x")).status == 400
    await client.post("/__mock/control", json={"fail_mode": None})
    assert state.fail_mode is None
    assert (await client.get("/__mock/state")).status == 200
    resp = await client.get("/oauth/token")
    assert resp.status == 405


async def test_body_client_auth_json_with_required_fields(aiohttp_client, clock):
    app = create_app(
        client_id=CID,
        client_secret=SECRET,
        client_auth="body",
        request_format="json",
        required_fields={"user_login": "bob"},
        clock=clock,
    )
    client = await aiohttp_client(app)
    base = {"grant_type": "client_credentials", "client_id": CID, "client_secret": SECRET}
    resp = await client.post("/oauth/token", json={**base, "user_login": "bob"})
    assert resp.status == 200
    resp = await client.post("/oauth/token", json=base)
    assert (
        resp.status == 400 and "user_login is missing" in (await resp.json())["error_description"]
    )
    wrong = {**base, "client_secret": "x", "user_login": "bob"}
    resp = await client.post("/oauth/token", json=wrong)
    assert resp.status == 401
    resp = await client.post(
        "/oauth/token", json={**base, "user_login": "bob"}, headers={"Authorization": BASIC}
    )
    assert resp.status == 400  # two client authentication methods
