"""Reading a user's YAML file (suite, run config, leaderboard aliases) with errors that name it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError

# libyaml's loader parses a suite ~6x faster than the pure-Python one and builds the same objects;
# PyYAML without libyaml falls back to the pure-Python SafeLoader.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path, error: type[HarnessError] = HarnessError, what: str = "") -> Any:
    """The parsed file; a missing file or malformed YAML raises ``error`` naming ``what`` and the path."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_SafeLoader)
    except FileNotFoundError:
        raise error(f"{what}{path} does not exist") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: malformed YAML: {exc}") from exc
