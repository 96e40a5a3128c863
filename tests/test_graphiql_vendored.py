"""The vendored GraphiQL files are what the lock file pins, ship in the wheel, and carry their licences."""

from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path

from handlers.graphiql import ASSET_DIR, SERVED

ROOT = Path(__file__).resolve().parent.parent


def test_every_served_file_is_vendored_and_in_the_wheel() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["handlers"]
    for name in sorted(SERVED | {"LICENSES.txt"}):
        assert (ASSET_DIR / name).is_file(), f"{name} missing: run `make graphiql`"
        relative = (ASSET_DIR / name).relative_to(ROOT / "handlers").as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), f"{relative} not in package-data"
    # The build inputs stay out of the wheel.
    for name in ("package.json", "package-lock.json", "vendor.mjs"):
        relative = f"static/graphiql/{name}"
        assert not any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def test_pins_lock_and_licences_agree() -> None:
    pins = json.loads((ASSET_DIR / "package.json").read_text())["dependencies"]
    locked = json.loads((ASSET_DIR / "package-lock.json").read_text())["packages"]
    licences = (ASSET_DIR / "LICENSES.txt").read_text()
    assert set(pins) == {"graphiql", "graphql", "graphql-ws", "react", "react-dom"}
    for name, version in pins.items():
        assert locked[f"node_modules/{name}"]["version"] == version, name  # exact pins, no ranges
        assert f"\n{name}@{version} — " in licences, f"LICENSES.txt lacks {name}@{version}: run `make graphiql`"
    # Every package the lock installs has its licence in the file (graphiql.min.js bundles its tree).
    for key, entry in locked.items():
        if key:
            name = key.rsplit("node_modules/", 1)[1]
            assert f"\n{name}@{entry['version']} — " in licences, f"{name}@{entry['version']} missing from LICENSES.txt"
    # The copied builds are the pinned releases.
    assert f'"{pins["react"]}"' in (ASSET_DIR / "react.production.min.js").read_text()
    assert f'"{pins["react-dom"]}"' in (ASSET_DIR / "react-dom.production.min.js").read_text()
    assert ".graphqlWs=" in (ASSET_DIR / "graphql-ws.min.js").read_text()[:400]
    assert ".GraphiQL=" in (ASSET_DIR / "graphiql.min.js").read_text()[:400]
