"""The mock vendors accept requests signed by hand from the vendor docs and reject each mistake.

Signatures here are written out with hashlib/hmac/base64 from the vendors'
formulas, not with Signet's signers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from proxy.mock import apliiq, quicklizard, simple, threeclicks, threecommas
from proxy.mock.common import RECORDED
from tests.conftest import secret

T = 1_717_128_481
TC_KEY, TC_SECRET = "tc-key", secret("tc-mock-secret-Lq02")
C3_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
C3_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
QL_KEY = "ccae6d912a41bfefd569a77b5cd86603cde92e53cdd45813cba9e5bf080b3734"
QL_SECRET = "0d66f4f97239b4530a5ab226eede766657933948c4fdd1ea22e14773c8342ee5"
AP_ID, AP_SECRET = "app-1", secret("apliiq-mock-secret-Vv81")


def tc_sig(method: str, body: bytes, ts: str, secret_: str = TC_SECRET) -> str:
    data = body or b"{}"
    message = (TC_KEY + TC_SECRET + method).encode() + data + ts.encode()  # key, secret, method, data, ts
    return hmac.new(secret_.encode(), message, hashlib.sha256).hexdigest()


async def call(client: Any, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    async with client.request(method, path, **kw) as r:
        return r.status, await r.json()


async def test_threeclicks_strict_accepts_and_rejects(aiohttp_client: Any) -> None:
    client = await aiohttp_client(threeclicks.create_app(api_key=TC_KEY, api_secret=TC_SECRET, clock=lambda: T + 5))
    body = b'{"style_number":"A00416","name":"Activewear"}'
    good = {"X-Api-Key": TC_KEY, "X-Api-Timestamp": str(T), "X-Api-Signature": tc_sig("put", body, str(T))}
    assert (await call(client, "PUT", "/api-user/v1/style/ecommerce/tags-create", data=body, headers=good))[0] == 200
    empty = {**good, "X-Api-Signature": tc_sig("get", b"", str(T))}
    assert (await call(client, "GET", "/api-user/v1/style/ABC%2F123?x=1", headers=empty))[0] == 200
    cases = {
        "X-Api-Signature mismatch": {**good, "X-Api-Signature": tc_sig("PUT", body, str(T))},  # method case
        "must be lowercase": {**good, "X-Api-Signature": good["X-Api-Signature"].upper()},
        "missing header X-Api-Timestamp": {k: v for k, v in good.items() if k != "X-Api-Timestamp"},
        "milliseconds": {**good, "X-Api-Timestamp": str(T * 1000)},
        "window": {**good, "X-Api-Timestamp": str(T - 700)},
    }
    for reason, headers in cases.items():
        status, answer = await call(client, "PUT", "/api-user/v1/x", data=body, headers=headers)
        assert status == 401 and reason in answer["error"], (reason, answer)
        assert TC_SECRET not in answer["error"]
    status, answer = await call(client, "PUT", "/api-user/v1/x", data=body + b" ", headers=good)
    assert status == 401 and "data=<" in answer["error"]
    assert len(client.app[RECORDED]) == 8


async def test_threeclicks_simple(aiohttp_client: Any) -> None:
    client = await aiohttp_client(threeclicks.create_app(api_key=TC_KEY, api_secret=TC_SECRET, mode="simple"))
    ok = {"X-Api-Key": TC_KEY, "X-Api-Secret": TC_SECRET}
    assert (await call(client, "GET", "/x", headers=ok))[0] == 200
    status, answer = await call(client, "GET", "/x", headers={**ok, "X-Api-Secret": "wrong"})
    assert status == 401 and "X-Api-Secret" in answer["error"]


async def test_threecommas_published_vector(aiohttp_client: Any) -> None:
    client = await aiohttp_client(threecommas.create_app(api_key=C3_KEY, secret=C3_SECRET))
    headers = {"Apikey": C3_KEY, "Signature": "bca8d8c10acfbe8e76c5335d3efbe0a550487170a8bb7aaea0a13efabab55316"}
    assert (await call(client, "POST", "/public/api/ver1/users/change_mode?mode=paper", headers=headers))[0] == 200
    # not case sensitive, per the docs
    headers["Signature"] = headers["Signature"].upper()
    assert (await call(client, "POST", "/public/api/ver1/users/change_mode?mode=paper", headers=headers))[0] == 200
    status, answer = await call(client, "POST", "/public/api/ver1/users/change_mode?mode=live", headers=headers)
    assert status == 401 and "query='mode=live'" in answer["error"]
    sig = hmac.new(C3_SECRET.encode(), b"/a/ABC%2F123?x=1{}", hashlib.sha256).hexdigest()
    assert (await call(client, "POST", "/a/ABC%2F123?x=1", data=b"{}", headers={"Apikey": C3_KEY, "Signature": sig}))[0] == 200


async def test_quicklizard_published_vector_and_mistakes(aiohttp_client: Any) -> None:
    client = await aiohttp_client(quicklizard.create_app(api_key=QL_KEY, api_secret=QL_SECRET,
                                                         clock=lambda: 1414562585.331))
    headers = {"API_KEY": QL_KEY, "API_DIGEST": "9f910f3354fd28e4d9b54d902ed881c8e5a912337bce02d51d5f24a1755b552d"}
    url = "/api/v1/dummy?paramA=1&paramB=2&qts=1414562585331"
    assert (await call(client, "GET", url, headers=headers))[0] == 200
    with_q = hashlib.sha256(b"/api/v1/dummy?paramA=1&paramB=2&qts=1414562585331" + QL_SECRET.encode()).hexdigest()
    cases = [
        ("/api/v1/dummy?paramA=1&paramB=2&qts=1414562585331", {**headers, "API_DIGEST": with_q}, "API_DIGEST mismatch"),
        ("/api/v1/dummy?paramA=1&paramB=2", headers, "missing qts"),
        ("/api/v1/dummy?qts=1&qts=1414562585331", headers, "more than once"),
        ("/api/v1/dummy?paramA=1&qts=1414562585", headers, "looks like seconds"),
        ("/api/v1/dummy?paramA=1&qts=1414562000000", headers, "window"),
    ]
    for path, h, reason in cases:
        status, answer = await call(client, "GET", path, headers=h)
        assert status == 401 and reason in answer["error"], (reason, answer)
        assert QL_SECRET not in answer["error"]


async def test_apliiq_signature_and_replay(aiohttp_client: Any) -> None:
    client = await aiohttp_client(apliiq.create_app(app_id=AP_ID, shared_secret=AP_SECRET, clock=lambda: T))
    nonce = "0123456789abcdef0123456789abcdef"
    body = b'{"order": 1}'

    def auth(n: str, b: bytes, ts: int = T) -> dict[str, str]:
        msg = AP_ID.encode() + str(ts).encode() + n.encode() + (base64.b64encode(b) if b else b"")
        sig = base64.b64encode(hmac.new(AP_SECRET.encode(), msg, hashlib.sha256).digest()).decode()
        return {"Authorization": f"x-apliiq-auth {ts}:{sig}:{AP_ID}:{n}"}

    assert (await call(client, "POST", "/api/Order", data=body, headers=auth(nonce, body)))[0] == 200
    status, answer = await call(client, "POST", "/api/Order", data=body, headers=auth(nonce, body))
    assert status == 401 and "replay" in answer["error"]
    n2 = "f" * 32
    assert (await call(client, "GET", "/api/Order", headers=auth(n2, b"")))[0] == 200
    status, answer = await call(client, "POST", "/api/Order", data=body + b"x", headers=auth("e" * 32, body))
    assert status == 401 and "SIG mismatch" in answer["error"] and AP_SECRET not in answer["error"]
    status, answer = await call(client, "GET", "/api/Order", headers=auth("ABC", b""))
    assert status == 401 and "STATE" in answer["error"]


async def test_simple_expectations(aiohttp_client: Any) -> None:
    client = await aiohttp_client(simple.create_app(expect_headers={"X-Token": "t1"}, forbid_headers=["Cookie"]))
    assert (await call(client, "GET", "/a", headers={"X-Token": "t1"}))[0] == 200
    assert (await call(client, "GET", "/a", headers={"X-Token": "t2"}))[0] == 401
    assert (await call(client, "GET", "/a", headers={"X-Token": "t1", "Cookie": "c=1"}))[0] == 401
    async with client.get("/__mock/requests") as r:
        recorded = await r.json()
    assert len(recorded) == 3 and all("t1" not in str(rec["headers"]) for rec in recorded)
