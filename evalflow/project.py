"""Where evalflow's Prefect project lives: flows/, tasks/, evals/ and prefect.yaml.

In a checkout (and its editable install) that is the checkout. Installed from a wheel, it is
the copy the wheel ships inside the package, `evalflow/_project/`: a user's site-packages gets
no top-level packages named `flows`, `tasks` or `evals` (generic names that would shadow, or be
shadowed by, a user's own). The CLI makes the project importable before it runs a flow.
"""

from __future__ import annotations

import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def project_root() -> Path:
    """The folder holding flows/, tasks/, evals/ and prefect.yaml."""
    checkout = _PACKAGE.parent
    if (checkout / "prefect.yaml").is_file() and (checkout / "flows").is_dir():
        return checkout
    return _PACKAGE / "_project"


def make_flows_importable() -> Path:
    """Put the project on sys.path (after what is there) so `flows` and `tasks` import."""
    root = project_root()
    if str(root) not in sys.path:
        sys.path.append(str(root))
    return root
