"""Mock vendors: real aiohttp apps that verify requests exactly as each vendor documents.

They back ``signet demo``, ``signet demo --selftest`` and the end-to-end
tests, and are written from the vendor documents independently of Signet's
signers (nothing here imports ``proxy.auth``). Each vendor module exposes
``create_app(...)``, a catch-all app (any method, any path) that answers 200
with a JSON echo when the request verifies and 401 with the precise reason
otherwise, and records every request in ``app[proxy.mock.common.RECORDED]``.
``GET /__mock/requests`` lists them with secrets masked.
``proxy.mock.vendors.start_mock_vendors()`` runs them all on loopback.
"""
