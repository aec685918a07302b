"""Prometheus collectors, one registry per running proxy.

A registry per instance (not the global default) lets tests run several
proxies in one process and lets a reload keep counting into the same series.
Labels are route names, status classes, client names and outcomes only:
never a path, query or header value.

Under ``signet serve --workers N`` each worker writes its samples to the
supervisor's multiprocess directory (see :mod:`proxy.workers`); every gauge
names how the workers' values combine there (``multiprocess_mode``, ignored
by a single process).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

QUEUE_WAIT_BUCKETS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "signet_requests",
            "Requests answered, by route, status class and inbound client.",
            ["route", "status_class", "client"],
            registry=r,
        )
        self.upstream_latency = Histogram(
            "signet_upstream_latency_seconds",
            "Time from sending upstream to the upstream's response headers.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "signet_in_flight_requests",
            "Requests being proxied now.",
            ["route"],
            registry=r,
            multiprocess_mode="livesum",  # the fleet's in-flight requests
        )
        self.overloaded = Counter(
            "signet_overloaded",
            "Requests refused 503 overloaded: the route was at its max_in_flight.",
            ["route"],
            registry=r,
        )
        self.ready = Gauge(
            "signet_ready", "1 while /readyz answers 200 (config loaded, not draining), else 0.", registry=r
        )
        self.policy_denied = Counter(
            "signet_policy_denied",
            "Requests refused by a client's allow rules.",
            ["route", "client"],
            registry=r,
        )
        self.rate_limited = Counter(
            "signet_rate_limited",
            "Requests refused 429 by Signet, by reason (route, client, vendor_429).",
            ["route", "client", "reason"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "signet_queue_wait_seconds",
            "Time a request waited for its slot under a route's rate limit.",
            ["route"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        self.token_fetches = Counter(
            "signet_token_fetches",
            "OAuth2 token requests sent, by route and outcome (ok, error).",
            ["route", "outcome"],
            registry=r,
        )
        self.token_failures = Counter(
            "signet_token_failures", "Failed OAuth2 token requests.", ["route"], registry=r
        )
        self.token_refreshes = Counter(
            "signet_token_refreshes",
            "Background refreshes started ahead of expiry.",
            ["route"],
            registry=r,
        )
        self.token_cache_hits = Counter(
            "signet_token_cache_hits", "Requests served from a cached token.", ["route"], registry=r
        )
        self.state_errors = Counter(
            "signet_state_errors",
            "Operations that could not use the shared state (Redis), by op.",
            ["op"],
            registry=r,
        )
        self.state_up = Gauge(
            "signet_state_up",
            "1 while the shared state (Redis) answers, else 0.",
            registry=r,
            multiprocess_mode="livemin",  # 0 as soon as one worker cannot reach Redis
        )
        self.config_reloads = Counter(
            "signet_config_reloads",
            "Config reloads by outcome (ok, error).",
            ["outcome"],
            registry=r,
        )

        # secrets from Vault and files (proxy.refresh, proxy.vault)
        self.secret_refresh_failures = Counter(
            "signet_secret_refresh_failures",
            "Secret references that could not be re-read (the last good value was kept).",
            registry=r,
        )
        self.secret_refresh_seconds = Histogram(
            "signet_secret_refresh_seconds",
            "Time to re-read every vault and file reference once.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.secret_age = Gauge(
            "signet_secret_age_seconds",
            "Seconds since a route's secrets last changed (or were first loaded).",
            ["route"],
            registry=r,
            multiprocess_mode="livemax",  # the stalest worker's secrets
        )
        self.secret_last_refresh = Gauge(
            "signet_secret_last_refresh_timestamp_seconds",
            "Unix time every vault and file reference was last read successfully (alert when stale).",
            registry=r,
        )
        self.secret_refresh_interval = Gauge(
            "signet_secret_refresh_interval_seconds", "The configured secret_refresh.", registry=r
        )
        self.vault_logins = Counter(
            "signet_vault_logins", "Vault logins by auth method and outcome.", ["method", "outcome"],
            registry=r,
        )
        self.vault_renewals = Counter(
            "signet_vault_token_renewals",
            "Vault token renewals by auth method and outcome.",
            ["method", "outcome"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def status_class(status: int) -> str:
    return f"{status // 100}xx"
