"""Move a target's champion the approved way: a new environment's first model, or a challenger.

    python scripts/promote_model.py bootstrap --target T [--source-path PATH [--mapping NAME]]
                                    [--approvals-file F --approval-url URL] [--dry-run]
    python scripts/promote_model.py approve --target T [--version N]
                                    [--approvals-file F --approval-url URL] [--dry-run]

``bootstrap`` gives a new environment its first champion:

1. read the model's aliases from Unity Catalog; a champion already there: nothing to do;
2. unless a challenger already waits (a bootstrap that stopped after training): with
   ``--source-path``, land that claims file with ``ingestion_job``; then ``retraining_job``
   trains on the landed claims. Both go through the orchestrator of record and are waited for;
3. under the ``auto`` promotion mode, ``register`` already made a gate-passing first version
   champion (its regression gate passes: there is no champion to regress against). Under
   ``approval`` (prod) it is ``challenger``, promoted here with the approval;
4. read the aliases back: still no champion fails, saying why.

``approve`` promotes the challenger (or ``--version``) with the approval: how a retrained
challenger in prod becomes champion.

The approval is the GitHub environment's: the ``promote-model`` workflow's job is bound to
the target's environment (prod: required reviewers), writes the run's approvals
(``gh api repos/<repo>/actions/runs/<id>/approvals``) to ``--approvals-file``, and passes its
run URL as ``--approval-url``. The reviewers who approved that environment become
``approved_by`` on the promotion run; a target whose promotion mode is ``approval`` refuses
to start without one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from _commands import CommandError, Runner
from orchestrate import (
    TARGETS,
    Orchestration,
    OrchestrationError,
    RunInfo,
    ingest_run_config,
)

from fraud_assets import keys
from fraud_assets.ml.registry import APPROVAL, CHALLENGER, CHAMPION, Approval
from fraud_assets.resources.compute import APPROVAL_URL_TAG, APPROVED_BY_TAG
from fraud_assets.settings import FraudSettings

# The bundle's promotion job (resources/promotion-workflow-resource.yml); Dagster's is
# keys.PROMOTE_JOB, whose op takes the version as config.
BUNDLE_PROMOTION_JOB = "promotion_job"
PROMOTE_OP = "promote_champion"

log = logging.getLogger("promote_model")


class PromotionRefused(RuntimeError):
    """The promotion cannot start or did not end with a champion; the message says why."""


def environment_approvers(approvals: Sequence[Mapping[str, Any]], environment: str) -> list[str]:
    """Who approved ``environment`` in a workflow run, from GitHub's run approvals API."""
    approvers: list[str] = []
    for approval in approvals:
        environments = {e.get("name") for e in approval.get("environments") or []}
        login = (approval.get("user") or {}).get("login")
        approved = approval.get("state") == "approved" and environment in environments
        if approved and login and login not in approvers:
            approvers.append(str(login))
    return approvers


def read_approval(
    approvals_file: Path | None, approval_url: str | None, environment: str
) -> Approval | None:
    """The approval this run carries: the environment's approvers and where they approved."""
    if approvals_file is None:
        return None
    try:
        approvals = json.loads(approvals_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PromotionRefused(
            f"cannot read the run's approvals from {approvals_file}: {exc}"
        ) from None
    if not isinstance(approvals, list):
        raise PromotionRefused(
            f"{approvals_file} holds {type(approvals).__name__}, expected the JSON list "
            "GitHub's run approvals API answers"
        )
    approvers = environment_approvers(approvals, environment)
    return Approval.from_params(",".join(approvers), approval_url)


@dataclass
class Promotion:
    """One target's promotion, every run launched through its orchestrator of record."""

    target: str
    runner: Runner
    mode: str
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    timeout: timedelta = timedelta(hours=3)
    poll_seconds: float = 30.0

    def _orchestration(self, job: str) -> Orchestration:
        return Orchestration(self.target, job, self.runner, self.env, self.poll_seconds)

    def aliases(self) -> dict[str, str]:
        return self._orchestration(keys.RETRAINING_JOB).aliases()

    def require_approval(self, approval: Approval | None) -> None:
        if self.mode == APPROVAL and approval is None:
            raise PromotionRefused(
                f"{self.target}'s promotion mode is {APPROVAL!r}: champion moves only with an "
                "approval. Run this from the promote-model workflow, whose "
                f"{self.target} environment's required reviewers approve it (no reviewer "
                "approved this run, or --approvals-file/--approval-url are missing)"
            )

    def bootstrap(
        self, *, source_path: str | None, mapping: str | None, approval: Approval | None
    ) -> str | None:
        """Give a model without a champion its first one; return the champion's version."""
        self.require_approval(approval)
        aliases = self.aliases()
        if CHAMPION in aliases:
            log.info(
                "the %s model already has champion version %s: nothing to bootstrap (promote "
                "a later challenger with `approve`)",
                self.target,
                aliases[CHAMPION],
            )
            return aliases[CHAMPION]
        training: RunInfo | None = None
        if CHALLENGER in aliases:
            log.info(
                "challenger version %s already passed its gates: promoting it without retraining",
                aliases[CHALLENGER],
            )
        else:
            if source_path:
                self._orchestration(keys.INGESTION_JOB).launch(
                    git_sha=None,
                    wait=True,
                    timeout=self.timeout,
                    run_config=ingest_run_config(source_path, mapping),
                )
            training = self._orchestration(keys.RETRAINING_JOB).launch(
                git_sha=None, wait=True, timeout=self.timeout
            )
            aliases = self.aliases()
        if CHAMPION in aliases:
            log.info("first champion of %s: version %s", self.target, aliases[CHAMPION])
            return aliases[CHAMPION]
        if CHALLENGER not in aliases and not self.runner.dry_run:
            where = f" (run {training.url or training.run_id})" if training else ""
            raise PromotionRefused(
                f"retraining_job registered no candidate that passed every promotion gate"
                f"{where}: the registered_model materialization lists each gate's verdict; fix "
                "what blocked it (data, thresholds, fairness) and run the bootstrap again"
            )
        return self.approve(version=None, approval=approval)

    def approve(self, *, version: str | None, approval: Approval | None) -> str | None:
        """Promote the challenger (or ``version``) with the approval; return the champion."""
        self.require_approval(approval)
        approval_fields = (
            {"approved_by": approval.approved_by, "approval_url": approval.approval_url}
            if approval is not None
            else {}
        )
        probe = self._orchestration(BUNDLE_PROMOTION_JOB)
        if probe.orchestrator == "databricks":
            parameters = {
                "action": "promote",
                **({"version": version} if version else {}),
                **approval_fields,
            }
            probe.launch(git_sha=None, wait=True, timeout=self.timeout, job_parameters=parameters)
        else:
            tags = {}
            if approval is not None:
                tags = {
                    APPROVED_BY_TAG: approval.approved_by,
                    APPROVAL_URL_TAG: approval.approval_url,
                }
            config = {"ops": {PROMOTE_OP: {"config": {"version": version}}}} if version else None
            self._orchestration(keys.PROMOTE_JOB).launch(
                git_sha=None, wait=True, timeout=self.timeout, run_config=config, tags=tags
            )
        champion = self.aliases().get(CHAMPION)
        if champion is None and not self.runner.dry_run:
            raise PromotionRefused(
                f"the promotion run succeeded but the {self.target} model still has no champion"
            )
        if champion is not None:
            log.info(
                "%s champion is version %s (approved by %s)",
                self.target,
                champion,
                approval.approved_by if approval else "the gates alone",
            )
        return champion


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    bootstrap = commands.add_parser("bootstrap", help="a new environment's first champion")
    approve = commands.add_parser("approve", help="promote the challenger with the approval")
    for sub in (bootstrap, approve):
        sub.add_argument("--target", choices=TARGETS, required=True)
        sub.add_argument("--approvals-file", type=Path, help="GitHub run approvals (JSON)")
        sub.add_argument("--approval-url", help="where the approval was given (the run URL)")
        sub.add_argument("--timeout-minutes", type=float, default=180.0)
        sub.add_argument("--dry-run", action="store_true", help="print what would be called")
    bootstrap.add_argument("--source-path", help="claims file to land before training")
    bootstrap.add_argument("--mapping", help="mapping for --source-path")
    approve.add_argument("--version", help="version to promote (default: the challenger)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    promotion = Promotion(
        target=args.target,
        runner=Runner(dry_run=args.dry_run),
        mode=FraudSettings(target=args.target).promotion.mode,
        timeout=timedelta(minutes=args.timeout_minutes),
    )
    try:
        approval = read_approval(args.approvals_file, args.approval_url, args.target)
        if args.command == "bootstrap":
            promotion.bootstrap(
                source_path=args.source_path, mapping=args.mapping, approval=approval
            )
        else:
            promotion.approve(version=args.version, approval=approval)
    except (
        PromotionRefused,
        OrchestrationError,
        CommandError,
        subprocess.CalledProcessError,
    ) as exc:
        log.error("%s %s: %s", args.command, args.target, exc)
        return 1
    except requests.RequestException as exc:
        log.error("Dagster GraphQL unreachable: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
