"""NoETL stand-in for tests and the demo (a development stand-in, never used by `make run`)."""
