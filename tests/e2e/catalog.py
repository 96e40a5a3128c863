"""Our playbooks (``tests/e2e/playbooks/*.yaml``), deployed into the real NoETL catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.e2e.stack import Stack

PLAYBOOK_DIR = Path(__file__).parent / "playbooks"

LOGIN = "api_integration/auth0/auth0_login"
CHECK_ACCESS = "api_integration/auth0/check_playbook_access"
ASYNC_PROGRESS = "e2e/async_progress"
FAILING = "e2e/failing"
DEAD_END = "e2e/dead_end"
ECHO = "e2e/echo"
RESTRICTED = "e2e/restricted/secret"
INGRESS_GITHUB = "e2e/ingress_github"


class _BlockDumper(yaml.SafeDumper):
    """Keeps multi-line strings (the python code) as readable ``|`` blocks in the catalog."""


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_presenter)


def deployed(path: Path, settings: dict[str, Any]) -> tuple[str, str]:
    """(catalog path, YAML) with the deployment's settings put into ``workload``.

    Only keys the playbook declares are set: a setting meant for another playbook must not
    leak into this one's variables.
    """
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    workload = document.setdefault("workload", {}) or {}
    for key, value in settings.items():
        if key in workload:
            workload[key] = value
    document["workload"] = workload
    return document["metadata"]["path"], yaml.dump(document, Dumper=_BlockDumper, sort_keys=False)


def register_all(stack: Stack, settings: dict[str, Any]) -> dict[str, int]:
    """Register every playbook through ``POST /api/catalog/register``; catalog path -> version."""
    versions: dict[str, int] = {}
    for file in sorted(PLAYBOOK_DIR.glob("*.yaml")):
        catalog_path, content = deployed(file, settings)
        answer = stack.register_playbook(content)
        versions[catalog_path] = int(answer.get("version") or 0)
    return versions
