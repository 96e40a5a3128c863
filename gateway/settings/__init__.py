"""The settings of each part of the gateway, one pydantic model per group (gateway/config.py joins them)."""
