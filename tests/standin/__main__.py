"""Run the NoETL stand-in on its own: ``python -m tests.standin --port 8082 [--nats-url URL]``.

DEVELOPMENT STAND-IN — not NoETL. Used by the demo and by tests that run the gateway as a
separate process; never used by ``make run``.
"""

from tests.standin.cli import main

if __name__ == "__main__":
    main(__doc__ or "")
