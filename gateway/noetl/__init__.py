"""NoETL, the one upstream: its REST client, the streaming exchange, headers and paths."""
