"""Move the champion alias by hand: roll back to the previous champion, or promote a version.

    python -m fraud_assets.tasks.promote --action rollback
    python -m fraud_assets.tasks.promote --action promote              # the challenger
    python -m fraud_assets.tasks.promote --action promote --version 3 [--force true]
    python -m fraud_assets.tasks.promote --action sync                 # re-point the endpoint

Rollback undoes the latest promotion: the registered model's ``champion_history`` tag lists
the champions in order, and each rollback steps one entry back. Alias moves on one
``FRAUD_HOME`` are serialized by ``registry.alias_lock``. Promote takes the ``challenger``
unless a version is named; a version whose gates did not all pass needs ``--force true``.

With Databricks compute every action then re-points the serving endpoint at the aliases
(``fraud_assets.databricks.serving_endpoint``); ``sync`` does only that, to retry a sync that
failed after the alias moved. The bundle's promotion job and Dagster's rollback job run this.

Under the ``approval`` promotion mode (prod) promote also needs ``--approved_by`` and
``--approval_url`` (the approval workflow passes them); rollback, back to a champion that
was itself promoted, does not.
"""

from __future__ import annotations

from mlflow import MlflowClient

from fraud_assets import keys
from fraud_assets.databricks.serving_endpoint import EndpointSyncError
from fraud_assets.ml import registry
from fraud_assets.ml.tracking import configure_mlflow, deployed_by, mlflow_client
from fraud_assets.tasks._runtime import (
    Materialization,
    TaskContext,
    TaskResult,
    run_task,
)
from fraud_assets.tasks._serving import sync_serving_endpoint

ACTIONS = ("rollback", "promote", "sync")


def promote(ctx: TaskContext) -> TaskResult:
    action = ctx.param("action")
    if action not in ACTIONS:
        raise ValueError(f"--action must be one of {', '.join(ACTIONS)}, got {action!r}")
    configure_mlflow(ctx.settings)
    client = mlflow_client()
    name = ctx.settings.registered_model_name
    actor = deployed_by(ctx.settings, ctx.param("deployed_by"))
    if action == "sync":
        outcome = sync_serving_endpoint(ctx.settings, client)
        ctx.log.info("%s", outcome.message if outcome else "local compute: no serving endpoint")
        return TaskResult()
    approval = registry.Approval.from_params(ctx.param("approved_by"), ctx.param("approval_url"))
    with registry.alias_lock(ctx.settings.fraud_home):
        if action == "rollback":
            move = registry.rollback_champion(client, name=name, actor=actor)
        else:
            version = ctx.param("version") or _challenger(client, name)
            force = str(ctx.param("force", "false")).lower() in ("1", "true", "yes")
            move = registry.promote_version(
                client,
                name=name,
                version=str(version),
                actor=actor,
                force=force,
                mode=ctx.settings.promotion.mode,
                approval=approval,
            )
    reason = f"{action} by {actor}: champion {move.from_version or 'none'} -> {move.to_version}"
    ctx.log.info("%s %s", name, reason)
    # After the lock: the update may take minutes, and it reads the aliases as they are now.
    outcome = sync_serving_endpoint(ctx.settings, client)
    return TaskResult(
        materializations=[
            Materialization(
                keys.REGISTERED_MODEL,
                {
                    "registered_model_name": name,
                    "model_version": int(move.to_version),
                    "model_uri": f"models:/{name}/{move.to_version}",
                    "champion_version": move.to_version,
                    "previous_champion_version": move.from_version or "none",
                    "promoted": True,
                    "reason": reason,
                    "deployed_by": actor,
                    **(outcome.metadata() if outcome else {}),
                    **(
                        {"approved_by": approval.approved_by, "approval_url": approval.approval_url}
                        if approval is not None and action == "promote"
                        else {}
                    ),
                },
            )
        ]
    )


def _challenger(client: MlflowClient, name: str) -> str:
    version = registry.alias_version(client, name, registry.CHALLENGER)
    if version is None:
        raise registry.PromotionError(
            f"{name} has no {registry.CHALLENGER!r} version to promote; name one with --version N"
        )
    return str(version.version)


def main(argv: list[str] | None = None) -> None:
    try:
        run_task(promote, argv, name="promote")
    except (
        registry.RollbackError,
        registry.NoChampionError,
        registry.PromotionError,
        registry.ConcurrentAliasMoveError,
        EndpointSyncError,
    ) as exc:
        # An expected refusal, or an endpoint left behind the aliases: one line for the
        # operator (naming both states and the retry), not a traceback.
        raise SystemExit(f"promote: {exc}") from None


if __name__ == "__main__":
    main()
