"""The NATS link and the KV buckets (with their process-memory fallback)."""
