"""Mock vendors: real aiohttp apps that verify requests as each vendor documents.

They back ``signet demo``, ``signet demo --selftest`` and the end-to-end
tests. Each module exposes ``create_app(...)``; every app records what it
received in ``app[proxy.mock.common.RECORDED]``.
"""
