"""GraphQL subscriptions' source streams: what a subscription may watch and in which shape (no GraphQL here)."""
