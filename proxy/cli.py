"""Command line: ``signet serve | check | sign | demo``.

Exit codes (contract): 0 ok, 1 a problem the user must fix, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

from proxy.auth import SchemeContext
from proxy.config import DEFAULT_CONFIG_PATH, Settings, load_config, unsafe_listen
from proxy.errors import ConfigError, ConfigProblem, SignetError
from proxy.log import configure_logging


def _default_config() -> str:
    return os.environ.get("SIGNET_CONFIG") or DEFAULT_CONFIG_PATH


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signet",
        description="Signet: a local reverse proxy that signs vendor API requests for you.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            default=None,
            help="config file (default $SIGNET_CONFIG, then config/signet.yaml)",
        )
        p.add_argument("--log-format", choices=("json", "console"), default="json")
        p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")

    p = sub.add_parser("serve", help="run the proxy")
    common(p)
    p.add_argument("--listen", help="HOST:PORT, overrides 'listen'")
    p.add_argument("--admin-listen", help="HOST:PORT, overrides 'admin_listen'")
    p.add_argument(
        "--workers",
        default="1",
        help="worker processes sharing the port with SO_REUSEPORT (a number, or 'auto' = cores)",
    )

    p = sub.add_parser("check", help="validate the config and print one line per route")
    common(p)

    p = sub.add_parser("sign", help="print the exact request Signet would send upstream (dry run)")
    common(p)
    p.add_argument("method")
    p.add_argument("path_and_query", metavar="PATH_AND_QUERY")
    p.add_argument("--data", "-d", help="request body; @FILE reads it from a file")
    p.add_argument("-H", "--header", action="append", default=[], help="'Name: value' (repeatable)")
    p.add_argument("--show-secrets", action="store_true", help="print secret-bearing values")
    p.add_argument("--fetch-token", action="store_true", help="fetch a real OAuth2 token")
    p.add_argument("--time", type=float, help="pin the Unix time used for signing (seconds)")
    p.add_argument("--nonce", help="pin the nonce (32 hex characters)")

    p = sub.add_parser("demo", help="mock vendors + proxy, ready for curl")
    p.add_argument(
        "--selftest", action="store_true", help="send requests through every route and exit"
    )
    p.add_argument(
        "--listen", default="127.0.0.1:8080", help="proxy HOST:PORT (default 127.0.0.1:8080)"
    )
    p.add_argument("--admin-listen", default="127.0.0.1:9191", help="admin HOST:PORT")
    p.add_argument("--log-format", choices=("json", "console"), default="console")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="warning")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "check":
            return cmd_check(args)
        if args.command == "sign":
            return cmd_sign(args)
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
    print(f"signet: config {exc.source or ''} has {len(exc.problems)} problem(s):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def _load(args: argparse.Namespace) -> tuple[Settings, str]:
    path = args.config or _default_config()
    return load_config(path), path


# ---------------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace) -> int:
    settings, path = _load(args)
    print(
        f"{path}: ok, {len(settings.routes)} route(s), "
        f"listen {_hp(settings.listen)}, admin {_hp(settings.admin_listen)}"
    )
    for r in settings.routes:
        # the instance says (an hmac recipe decides from its templates); __init__ makes no calls
        scheme = r.scheme_cls(r.auth, SchemeContext(route=r.name))
        body = "buffered" if scheme.needs_body else "streamed"
        print(
            f"  {r.name:<20} {r.prefix:<20} -> {r.upstream}  auth={r.scheme_cls.name}  body={body}"
        )
    if settings.clients is not None:
        print(f"  inbound clients: {', '.join(c.name for c in settings.clients)}")
    return 0


def _hp(hp: tuple[str, int]) -> str:
    return f"{hp[0]}:{hp[1]}"


# ---------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    path = _load(args)[1]  # validated now, loaded again by the server (and on SIGHUP)
    overrides: dict[str, Any] = {}
    from proxy.config import parse_hostport

    try:
        if args.listen:
            overrides["listen"] = parse_hostport(args.listen)
        if args.admin_listen:
            overrides["admin_listen"] = parse_hostport(args.admin_listen)
    except ValueError as exc:
        print(f"signet: --listen: {exc}", file=sys.stderr)
        return 2
    workers = _parse_workers(args.workers)
    if workers is None:
        print("signet: --workers must be a positive number or 'auto'", file=sys.stderr)
        return 2
    if workers > 1:
        from proxy.workers import run_workers

        return run_workers(args, workers)
    return run_server(path, overrides, args)


def _parse_workers(value: str) -> int | None:
    if value == "auto":
        return os.cpu_count() or 1
    return int(value) if value.isdigit() and int(value) >= 1 else None


def run_server(
    path: str, overrides: dict[str, Any], args: argparse.Namespace, *, reuse_port: bool = False
) -> int:
    """Serve until SIGTERM/SIGINT; SIGHUP reloads. Runs on uvloop when installed."""
    import dataclasses

    from proxy.app import Signet, serve_until_stopped

    def load() -> Settings:
        s = load_config(path)
        if not overrides:
            return s
        s = dataclasses.replace(s, **overrides)
        # --listen must not bypass the config's rule about non-loopback addresses
        why = unsafe_listen(s.listen[0], s.clients is not None, s.allow_unauthenticated)
        if why:
            raise ConfigError([ConfigProblem("--listen", why)], path)
        return s

    app = Signet(load(), config_path=path, reuse_port=reuse_port, tune_gc=True)
    return int(run_async(serve_until_stopped(app, load)))


def run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where available
        return asyncio.run(coro)
    return uvloop.run(coro)


# ----------------------------------------------------------------------- sign


def cmd_sign(args: argparse.Namespace) -> int:
    from proxy.sign import dry_run

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
