"""Forward-proxy mode: apps keep their vendor URLs and send them through Signet.

``ca``: the local certificate authority (``signet ca init``/``show``, loading and
checking it). ``leaf``: per-host server certificates minted from it on first use.
``tunnel``: CONNECT and absolute-form requests on the proxy listener.
"""
