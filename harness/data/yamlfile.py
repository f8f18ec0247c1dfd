"""Reading a user's YAML file (suite, run config, leaderboard aliases) with errors that name it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError


def read_yaml(path: Path, error: type[HarnessError] = HarnessError, what: str = "") -> Any:
    """The parsed file; a missing file or malformed YAML raises ``error`` naming ``what`` and the path."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what}{path} does not exist") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: malformed YAML: {exc}") from exc
