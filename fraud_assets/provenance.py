"""Where the running code came from: its git commit and remote, read once for every caller.

MLflow runs record the commit; the Dagster UI links asset code to it. No Dagster or MLflow
imports, so a task on a cluster and the code location share it.
"""

from __future__ import annotations

import logging
import subprocess

from fraud_assets.settings import REPO_ROOT, FraudSettings

log = logging.getLogger(__name__)


def git_commit(settings: FraudSettings) -> str | None:
    """``FRAUD_GIT_COMMIT`` when it is set (a container image has no ``.git``), else ``HEAD``
    of this checkout, else ``None``."""
    return settings.git_commit or git("rev-parse", "HEAD")


def git(*args: str) -> str | None:
    """``git <args>`` in this checkout, stripped, or ``None`` when there is no answer."""
    if not (REPO_ROOT / ".git").exists():
        return None
    try:
        completed = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("git %s unavailable: %s", " ".join(args), exc)
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout.strip() or None
