"""Push ingress: verified webhooks and Pub/Sub pushes that start playbooks (docs/ingress.md)."""
