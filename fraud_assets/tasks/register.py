"""Register the evaluated candidate, tag it with its evidence, and promote it if the gates pass.

The gate rule lives here, not only in Dagster's blocking checks, so a bundle job that runs
this step without Dagster holds the same line: ``champion`` moves only when every promotion
gate declared in ``fraud_assets.checks`` (under the target's pinned fairness policy) has a
passing verdict recorded since the candidate was evaluated, and every fairness verdict was
computed under a policy at least as strict as the pinned one (re-checked here from the
policy each verdict records, whatever its own policy check said).

Under the ``approval`` promotion mode (prod) a candidate that passes every gate becomes
``challenger`` awaiting approval instead, whatever launched the run (a drift-triggered
retrain included): ``champion`` then moves only through ``promote`` with an approval.
"""

from __future__ import annotations

import pandas as pd

from fraud_assets import keys
from fraud_assets.governance import latest_max_feature_psi
from fraud_assets.governance.policy import (
    FairnessPolicy,
    pinned_policy,
    recorded_policy_problems,
)
from fraud_assets.lakehouse import (
    CHECK_HISTORY,
    MODEL_EVALUATION,
    PSI_REPORT,
    TableStore,
    table_store,
)
from fraud_assets.ml import registry
from fraud_assets.ml.runs import TAG_GIT_COMMIT
from fraud_assets.ml.tracking import (
    UNKNOWN,
    configure_mlflow,
    deployed_by,
    mlflow_client,
    model_version_url,
    run_url,
)
from fraud_assets.tasks._runtime import (
    Materialization,
    TaskContext,
    TaskResult,
    link,
    run_task,
)
from fraud_assets.tasks._serving import sync_serving_endpoint

FAIRNESS_ASSET = keys.FAIRNESS_REPORT
# psi_score before compute_psi has written its first psi_report (no champion scored yet).
NO_PSI = "none"
EVIDENCE_METRICS = ("roc_auc", "pr_auc", "precision", "recall", "brier", "fraud_dollars_share")


class NoCandidateError(LookupError):
    """model_evaluation does not name exactly one candidate."""


def register(ctx: TaskContext) -> TaskResult:
    settings = ctx.settings
    store = table_store(settings)
    candidate = _candidate(store.read_pandas(MODEL_EVALUATION))
    evaluated_at = pd.Timestamp(candidate["evaluated_at"]).to_pydatetime()
    history = store.read_pandas(CHECK_HISTORY) if store.exists(CHECK_HISTORY) else pd.DataFrame()
    pinned = pinned_policy(settings.target)
    recorded = registry.recorded_verdicts_since(history, since=evaluated_at)
    statuses, policy_problems = _statuses(recorded, pinned)
    report = registry.judge_promotion(statuses, gated_figures=pinned.gates)
    psi_score = _psi_score(store)
    for problem in policy_problems:
        ctx.log.warning("fairness verdict refused: %s", problem)

    configure_mlflow(settings)
    client = mlflow_client()
    name = settings.registered_model_name
    run_id = str(candidate["mlflow_run_id"])
    run_tags = client.get_run(run_id).data.tags
    registered = registry.register_version(
        client,
        name=name,
        model_uri=str(candidate["model_uri"]),
        run_id=run_id,
        description=(
            f"{candidate['model']} trained on claim_features "
            f"v{candidate['training_delta_version']}; "
            f"holdout ROC AUC {candidate['roc_auc']:.4f}, PR AUC {candidate['pr_auc']:.4f}"
        ),
    )
    version = str(registered.version)
    actor = deployed_by(ctx.settings, ctx.param("deployed_by"))
    registry.tag_version(
        client,
        name,
        version,
        {
            **{metric: round(float(candidate[metric]), 6) for metric in EVIDENCE_METRICS},
            **report.tags(),
            "fairness_validated": str(_fairness_validated(report)).lower(),
            "fairness_policy": _recorded_fingerprint(recorded),
            "fairness_policy_pinned": pinned.fingerprint,
            "psi_score": psi_score,
            "model_type": candidate["model"],
            "training_delta_version": int(candidate["training_delta_version"]),
            "run_id": candidate["run_id"],
            "registered_by_run_id": ctx.run_id,
            "git_commit": run_tags.get(TAG_GIT_COMMIT, UNKNOWN),
            "deployed_by": actor,
        },
    )
    awaiting_approval = report.passed and settings.promotion.mode == registry.APPROVAL
    with registry.alias_lock(settings.fraud_home):
        if awaiting_approval:
            registry.hold_for_approval(client, name=name, version=version)
        elif report.passed:
            # Only a version that passed every gate may answer live claims as challenger.
            registry.set_challenger(client, name=name, version=version)
            registry.move_champion(client, name=name, version=version, actor=actor)
        else:
            ctx.log.warning("%s version %s not promoted: %s", name, version, report.reason)
        champion = registry.alias_version(client, name, registry.CHAMPION)
        challenger = registry.alias_version(client, name, registry.CHALLENGER)
    # After the lock, and only after a move: a registration that promoted nothing does not
    # depend on the endpoint (a stale one is re-pointed with `promote --action sync`).
    outcome = sync_serving_endpoint(settings, client) if report.passed else None
    champion_number = str(champion.version) if champion is not None else "none"
    challenger_number = str(challenger.version) if challenger is not None else "none"
    return TaskResult(
        materializations=[
            Materialization(
                keys.REGISTERED_MODEL,
                {
                    "registered_model_name": name,
                    "model_version": int(version),
                    "model_uri": f"models:/{name}/{version}",
                    **link("mlflow_model_version", model_version_url(settings, name, version)),
                    "champion_version": champion_number,
                    "challenger_version": challenger_number,
                    "promoted": report.passed and not awaiting_approval,
                    "awaiting_approval": awaiting_approval,
                    "promotion_mode": settings.promotion.mode,
                    "reason": (
                        f"{report.reason}; challenger awaiting approval "
                        f"(promotion mode {registry.APPROVAL})"
                        if awaiting_approval
                        else report.reason
                    ),
                    "mlflow_run_id": run_id,
                    **link("mlflow_run", run_url(settings, run_id)),
                    "deployed_by": actor,
                    "fairness_policy_pinned": pinned.fingerprint,
                    "psi_score": psi_score,
                    **(
                        {"fairness_policy_refused": "; ".join(policy_problems)}
                        if policy_problems
                        else {}
                    ),
                    **{f"gate.{gate}": verdict for gate, verdict in report.verdicts.items()},
                    **(outcome.metadata() if outcome else {}),
                },
            )
        ]
    )


def _statuses(
    recorded: dict[tuple[str, str], registry.RecordedVerdict], pinned: FairnessPolicy
) -> tuple[dict[tuple[str, str], bool | str], list[str]]:
    """Each recorded outcome, with fairness verdicts under a weaker policy marked as such."""
    statuses: dict[tuple[str, str], bool | str] = {}
    problems: list[str] = []
    for (asset, check), verdict in recorded.items():
        if asset == FAIRNESS_ASSET:
            weaker = recorded_policy_problems(verdict.metadata, pinned)
            if weaker:
                statuses[(asset, check)] = registry.WEAKER_POLICY
                problems.append(f"{asset}.{check}: " + "; ".join(weaker))
                continue
        statuses[(asset, check)] = verdict.passed
    return statuses, problems


def _fairness_validated(report: registry.GateReport) -> bool:
    fairness = {g: v for g, v in report.verdicts.items() if g.startswith(f"{FAIRNESS_ASSET}.")}
    return bool(fairness) and all(v == registry.PASSED for v in fairness.values())


def _psi_score(store: TableStore) -> str:
    """The largest feature PSI of the latest psi_report, or "none" before the first one."""
    if not store.exists(PSI_REPORT):
        return NO_PSI
    psi = latest_max_feature_psi(store.read_pandas(PSI_REPORT))
    return NO_PSI if psi is None else str(round(psi, 6))


def _recorded_fingerprint(recorded: dict[tuple[str, str], registry.RecordedVerdict]) -> str:
    prints = {
        str(v.metadata.get("policy_fingerprint"))
        for (asset, _), v in recorded.items()
        if asset == FAIRNESS_ASSET and v.metadata.get("policy_fingerprint")
    }
    return ",".join(sorted(prints)) or "none"


def _candidate(evaluations: pd.DataFrame) -> pd.Series:
    candidates = evaluations[evaluations["model_role"] == "candidate"]
    if len(candidates) != 1:
        raise NoCandidateError(
            f"model_evaluation holds {len(candidates)} candidate rows, expected exactly one: "
            "materialize model_evaluation first"
        )
    return candidates.iloc[0]


def main(argv: list[str] | None = None) -> None:
    run_task(register, argv, name="register")


if __name__ == "__main__":
    main()
