"""Per-client policies and rate limits (contract: "Policies, quotas and shared state")."""
