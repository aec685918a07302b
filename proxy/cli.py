"""Command line: ``signet serve | check | sign | ca | demo``.

The top of the import graph: nothing imports this module. What it shares
with the workers and the demo lives in :mod:`proxy.serving`.

Exit codes (contract): 0 ok, 1 a problem the user must fix, 2 usage.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proxy.config import (
    Route,
    Settings,
    load_config_async,
    override_listen,
    parse_hostport,
    route_secret_sources,
)
from proxy.errors import ConfigError, ConfigProblem, SignetError, count
from proxy.log import configure_logging
from proxy.serving import default_config_path, run_async

NONCE = re.compile(r"[0-9a-f]{32}")
LOG_FORMATS = ("json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


def version() -> str:
    """The installed package's version (``pyproject.toml``), not a copy of it."""
    from importlib import metadata  # only for --version: ~50 ms of every start otherwise

    try:
        return metadata.version("signet-proxy")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed)"


def _log_options(
    p: argparse.ArgumentParser, *, fmt: str, level: str | None, shown: str, requests: bool = True
) -> None:
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=fmt,
        help=f"log lines on stderr: one JSON object each, or console text for humans (default {fmt})",
    )
    what = "; 'info' logs one line per request" if requests else " (e.g. 'info' shows Vault logins)"
    p.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=level,
        help=f"least severe level logged{what} (default {shown})",
    )


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for (argparse's own needs the text up front)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"signet {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signet",
        description="Signet: a local reverse proxy that signs vendor API requests for you.",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, *, serving: bool = False) -> None:
        p.add_argument(
            "--config",
            default=None,
            help="config file (default $SIGNET_CONFIG, then config/signet.yaml)",
        )
        if serving:
            _log_options(p, fmt="json", level="info", shown="info")
        else:  # one-shot commands print for humans; their logs stay out of the way
            _log_options(p, fmt="console", level="warning", shown="warning", requests=False)

    p = sub.add_parser("serve", help="run the proxy")
    common(p, serving=True)
    p.add_argument("--listen", help="HOST:PORT, overrides 'listen'")
    p.add_argument("--admin-listen", help="HOST:PORT, overrides 'admin_listen'")
    p.add_argument(
        "--workers",
        default="1",
        help="worker processes accepting on one proxy socket (a number, or 'auto' = cores)",
    )

    p = sub.add_parser("check", help="validate the config and print one line per route")
    common(p)

    p = sub.add_parser("sign", help="print the exact request Signet would send upstream (dry run)")
    common(p)
    p.add_argument("method", metavar="METHOD", help="HTTP method, e.g. GET or POST")
    p.add_argument(
        "path_and_query",
        metavar="PATH_AND_QUERY",
        help="what a client would request from Signet, route prefix included: '/3commas/bots?x=1'",
    )
    p.add_argument("--data", "-d", help="request body; @FILE reads it from a file")
    p.add_argument("-H", "--header", action="append", default=[], help="'Name: value' (repeatable)")
    p.add_argument("--show-secrets", action="store_true", help="print secret-bearing values")
    p.add_argument("--fetch-token", action="store_true", help="fetch a real OAuth2 token")
    p.add_argument("--time", type=float, help="pin the Unix time used for signing (seconds)")
    p.add_argument("--nonce", help="pin the nonce (32 lowercase hex characters)")

    p = sub.add_parser("ca", help="the local CA of forward-proxy mode (init, show)")
    ca_sub = p.add_subparsers(dest="ca_command", required=True, metavar="ACTION")
    p = ca_sub.add_parser("init", help="write a new CA: DIR/ca.pem and DIR/ca-key.pem (0600)")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for ca.pem and ca-key.pem")
    p.set_defaults(log_format="console", log_level="warning")
    p = ca_sub.add_parser("show", help="the configured CA: subject, fingerprint, expiry, how to trust it")
    common(p)
    p.add_argument("--cert", metavar="FILE", help="show this CA certificate instead of the config's")

    p = sub.add_parser("demo", help="mock vendors + proxy, ready for curl")
    p.add_argument(
        "--selftest", action="store_true", help="send requests through every route and exit"
    )
    p.add_argument(
        "--listen", default="127.0.0.1:8080", help="proxy HOST:PORT (default 127.0.0.1:8080)"
    )
    p.add_argument(
        "--admin-listen", default="127.0.0.1:9191", help="admin HOST:PORT (default 127.0.0.1:9191)"
    )
    _log_options(p, fmt="console", level=None, shown="info; warning with --selftest")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.log_level is None and args.command == "demo":  # a line per request, but in its selftest
        args.log_level = "warning" if args.selftest else "info"
    configure_logging(args.log_format, args.log_level)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "check":
            return cmd_check(args)
        if args.command == "sign":
            return cmd_sign(args)
        if args.command == "ca":
            return cmd_ca(args)
        if args.command == "demo":
            from proxy.demo import run_demo

            return run_demo(args)
    except ConfigError as exc:
        _print_config_error(exc)
        return 1
    except SignetError as exc:
        print(f"signet: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 2


def _print_config_error(exc: ConfigError) -> None:
    source = f"config {exc.source}" if exc.source else "config"
    print(f"signet: {source} has {count(len(exc.problems), 'problem')}:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def _load(args: argparse.Namespace) -> tuple[Settings, str]:
    path = args.config or default_config_path()
    if args.config is None and not os.path.exists(path):
        origin = "$SIGNET_CONFIG" if os.environ.get("SIGNET_CONFIG") else "the default, relative to here"
        hint = f"no config file at {path!r} ({origin}): pass --config PATH or set $SIGNET_CONFIG"
        raise ConfigError([ConfigProblem("", hint)], path)
    return run_async(load_config_async(path)), path


# ---------------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace) -> int:
    settings, path = _load(args)
    print(
        f"{path}: ok, {count(len(settings.routes), 'route')}, "
        f"listen {_hp(settings.listen)}, admin {_hp(settings.admin_listen)}"
    )
    if (tls := settings.listen_tls) is not None:
        clients = "required" if tls.require_client_cert else "optional" if tls.client_ca_file else "not asked"
        print(f"  listen_tls: {tls.cert_file} (TLS 1.2+), client certificates {clients}")
    for i, r in enumerate(settings.routes):
        body = "buffered" if _needs_body(r) else "streamed"
        print(
            f"  {r.name:<20} {r.prefix:<20} -> {r.upstream}  auth={r.scheme_cls.name}  body={body}"
            + ("  websocket" if r.websocket else "")
        )
        for field, source in route_secret_sources(settings, i):
            print(f"      {field} <- {source}")
        if r.auth_by_client:
            own = ", ".join(f"{c} ({cls.name})" for c, (cls, _) in r.auth_by_client.items())
            print(f"      own credentials: {own}")
    if settings.clients is not None:
        names = ", ".join(c.name for c in settings.clients) or "none (every request is refused)"
        print(f"  inbound clients: {names}")
        for i, c in enumerate(settings.clients):
            if c.token is not None:
                refs = settings.reference_texts.get(f"clients[{i}].token")
                print(f"      {c.name}.token <- {' '.join(refs) if refs else 'a literal in the config file'}")
            if c.cert is not None:
                print(f"      {c.name}.cert: a client certificate with {c.cert.describe()}")
    if refreshable := settings.refreshable():
        vault = sum(1 for k in refreshable if k.startswith("vault:"))
        print(
            f"  secrets: {count(len(refreshable) - vault, 'file reference')} and "
            f"{count(vault, 'vault reference')}, re-read every {settings.secret_refresh:g} s"
        )
    from proxy.admission import check_lines

    for line in check_lines(settings):  # policies and rate limits
        print(f"  {line}")
    if (fp := settings.forward_proxy) is not None:
        print(
            f"  forward proxy: CA {fp.ca.subject!r} (sha256 {fp.ca.fingerprint[:23]}..., expires "
            f"{fp.ca.not_after:%Y-%m-%d}), key from {fp.key_source}, other hosts: {fp.other_hosts}"
        )
        for r in settings.routes:
            if r.hosts:
                hosts = ", ".join(f"{h}:{p}" for h, p in r.hosts)
                print(f"      {r.name:<20} hosts {hosts}")
    return 0


# ------------------------------------------------------------------------- ca


def cmd_ca(args: argparse.Namespace) -> int:
    from proxy.forward_proxy import ca

    if args.ca_command == "init":
        cert_path, key_path = ca.write_ca(args.out)
        print(f"wrote {cert_path} (the certificate apps trust) and {key_path} (the key, mode 0600)")
        print("next: add forward_proxy: {ca: {cert_file: ..., key_file: ...}} to the config,")
        print("      then `signet ca show` says how each kind of app trusts it")
        return 0
    if args.cert:
        try:
            cert = ca.load_ca_cert(Path(args.cert).read_bytes())
        except OSError as exc:
            print(f"signet: cannot read {args.cert!r}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        except ValueError as exc:
            print(f"signet: {args.cert}: {exc}", file=sys.stderr)
            return 1
        sys.stdout.write(ca.describe(cert, args.cert))
        return 0
    settings, path = _load(args)
    if settings.forward_proxy is None:
        print(
            f"signet: {path} has no forward_proxy block: create a CA with `signet ca init --out DIR` "
            "and name it under forward_proxy.ca (or pass --cert FILE)",
            file=sys.stderr,
        )
        return 1
    fp = settings.forward_proxy
    sys.stdout.write(ca.describe(fp.ca, fp.cert_file))
    return 0


def _needs_body(route: Route) -> bool:
    """Whether the runtime buffers this route's body: asked of the scheme instance, as the
    runtime does, since a scheme such as ``hmac`` decides per config (no network I/O here)."""
    from proxy.auth.base import SchemeContext

    scheme = route.scheme_cls(route.auth, SchemeContext(route=route.name))
    return bool(getattr(scheme, "needs_body", False))


def _hp(hp: tuple[str, int]) -> str:
    return f"{hp[0]}:{hp[1]}"


# ---------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    listen: dict[str, tuple[str, int] | None] = {}
    for key, flag in (("listen", "--listen"), ("admin_listen", "--admin-listen")):
        value = getattr(args, key)
        try:
            listen[key] = parse_hostport(value) if value else None
        except ValueError as exc:
            print(f"signet: {flag}: {exc}", file=sys.stderr)
            return 2
    workers = _parse_workers(args.workers)
    if workers is None:
        print("signet: --workers must be a positive number or 'auto'", file=sys.stderr)
        return 2
    settings, path = _load(args)  # validated now, loaded again by the server (and on SIGHUP)
    override_listen(settings, listen["listen"], listen["admin_listen"])  # ConfigError: exit 1
    if workers > 1:
        from proxy.workers import run_workers

        return run_workers(
            path,
            workers,
            listen=listen["listen"],
            admin_listen=listen["admin_listen"],
            log_format=args.log_format,
            log_level=args.log_level,
        )
    return run_server(path, listen["listen"], listen["admin_listen"])


def _parse_workers(value: str) -> int | None:
    if value == "auto":
        return os.cpu_count() or 1
    return int(value) if value.isdigit() and int(value) >= 1 else None


def run_server(
    path: str, listen: tuple[str, int] | None, admin_listen: tuple[str, int] | None
) -> int:
    """Serve until SIGTERM/SIGINT; SIGHUP reloads. Runs on uvloop when installed."""
    from proxy.app import Signet, serve_until_stopped
    from proxy.vault import VaultClients

    vault = VaultClients()

    async def load() -> Settings:
        s = await load_config_async(path, vault_clients=vault)
        # --listen must not bypass the config's rule about non-loopback addresses
        return override_listen(s, listen, admin_listen)

    async def serve() -> int:
        try:
            settings = await load()
        except BaseException:
            await vault.close()
            raise
        app = Signet(settings, config_path=path, tune_gc=True, vault_clients=vault)
        return await serve_until_stopped(app, load)

    return int(run_async(serve()))


# ----------------------------------------------------------------------- sign


def cmd_sign(args: argparse.Namespace) -> int:
    from proxy.sign import dry_run

    if args.nonce is not None and not NONCE.fullmatch(args.nonce):
        print("signet: --nonce must be 32 lowercase hex characters", file=sys.stderr)
        return 2
    settings = _load(args)[0]
    headers: list[tuple[str, str]] = []
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            print(f"signet: bad header {h!r}: use 'Name: value'", file=sys.stderr)
            return 2
        headers.append((name.strip(), value.strip()))
    body = b""
    if args.data is not None:
        if args.data.startswith("@"):
            try:
                with open(args.data[1:], "rb") as fh:
                    body = fh.read()
            except OSError as exc:
                print(f"signet: cannot read {args.data[1:]!r}: {exc.strerror}", file=sys.stderr)
                return 1
        else:
            body = args.data.encode()
    text = run_async(
        dry_run(
            settings,
            args.method.upper(),
            args.path_and_query,
            headers=headers,
            body=body,
            show_secrets=args.show_secrets,
            fetch_token=args.fetch_token,
            at_time=args.time,
            nonce=args.nonce,
        )
    )
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
