"""The model registry: versions with their evidence, and the champion/challenger aliases.

Promotion uses aliases, never stages. Every registered version is tagged with the evidence
behind it (metrics, each gate's verdict, the training data version, the pipeline run, the
commit and who deployed it). ``champion`` moves only when every promotion gate (declared in
``fraud_assets.checks``) has a passing verdict recorded since the candidate was evaluated,
and only such a version is given ``challenger``. The champions in promotion order are the
registered model's ``champion_history`` tag, which rollback walks back through;
``alias_lock`` serializes alias moves on one ``FRAUD_HOME``.

Under the ``approval`` promotion mode (prod's, ``FRAUD_PROMOTION__MODE``) a gate-passing
candidate becomes ``challenger`` tagged ``awaiting_approval``, and ``promote_version``
refuses to move ``champion`` without an ``Approval`` naming the approver and where the
approval was given; the approver becomes the version's ``promoted_by``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from filelock import FileLock, Timeout
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    NOT_FOUND,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)

from fraud_assets.checks import promotion_gates

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"

TAG_PREVIOUS_CHAMPION = "previous_champion"
# On the registered model: the champions in promotion order, comma-separated, what rollback
# walks back through. The latest entries only, so the tag value stays short.
TAG_CHAMPION_HISTORY = "champion_history"
CHAMPION_HISTORY_LENGTH = 20
# Beside it: who made each of those champions (JSON list, same order and length), so the
# history shows the approver of every prod promotion.
TAG_CHAMPION_HISTORY_BY = "champion_history_by"
UNRECORDED = "unrecorded"
# A promotion takes a few registry calls; a writer that waits this long is stuck, not queued.
ALIAS_LOCK_SECONDS = 120.0
TAG_GATES_PASSED = "gates_passed"
TAG_PROMOTED_AT = "promoted_at"
TAG_PROMOTED_BY = "promoted_by"
TAG_ROLLED_BACK_AT = "rolled_back_at"
TAG_ROLLED_BACK_BY = "rolled_back_by"
GATE_TAG_PREFIX = "gate."
TAG_AWAITING_APPROVAL = "awaiting_approval"
TAG_APPROVED_BY = "approved_by"
TAG_APPROVAL_URL = "approval_url"
TAG_REQUESTED_BY = "promotion_requested_by"
AUTO = "auto"
APPROVAL = "approval"
SUPERSEDED = "superseded"

PASSED = "passed"
FAILED = "failed"
MISSING = "missing"
WEAKER_POLICY = "weaker policy"

_ABSENT = {ErrorCode.Name(RESOURCE_DOES_NOT_EXIST), ErrorCode.Name(NOT_FOUND)}


class ConcurrentAliasMoveError(RuntimeError):
    """Another promotion or rollback moved the champion while this one was writing."""


@contextmanager
def alias_lock(fraud_home: Path) -> Iterator[None]:
    """One writer of the champion and challenger aliases at a time, per ``FRAUD_HOME``.

    A file lock beside the local registry (released by the OS if its holder dies): every
    promote, rollback and register on this machine queues behind it. Steps on separate
    Databricks clusters cannot share it; there ``move_champion`` and ``rollback_champion``
    read their write back and raise ``ConcurrentAliasMoveError`` when another one won.
    """
    path = fraud_home / "locks" / "registry_aliases.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(path), timeout=ALIAS_LOCK_SECONDS):
            yield
    except Timeout:
        raise ConcurrentAliasMoveError(
            f"another promotion or rollback has held {path} for {ALIAS_LOCK_SECONDS:.0f} s; "
            "wait for it to finish and retry"
        ) from None


class NoChampionError(LookupError):
    """No version of the registered model holds the ``champion`` alias yet."""

    def __init__(self, model_name: str) -> None:
        super().__init__(
            f"no version of registered model {model_name!r} holds the {CHAMPION!r} alias yet: "
            "run the retraining job so a model passes its gates and is promoted"
        )


class RollbackError(LookupError):
    """There is nothing to roll back to."""


class PromotionError(ValueError):
    """A manual promotion was refused."""


class ApprovalRequiredError(PromotionError):
    """The approval promotion mode refused a promotion that names no approval."""


@dataclass(frozen=True)
class Approval:
    """Who approved a promotion, and where that approval can be looked up (a URL)."""

    approved_by: str
    approval_url: str

    @classmethod
    def from_params(cls, approved_by: object, approval_url: object) -> Approval | None:
        """An approval from a task's parameters; ``None`` when either one is blank."""
        approver = str(approved_by or "").strip()
        url = str(approval_url or "").strip()
        if not approver or not url:
            return None
        return cls(approved_by=approver, approval_url=url)


@dataclass(frozen=True)
class GateReport:
    """Each promotion gate's verdict for one candidate: passed, failed or missing."""

    verdicts: dict[str, str]

    @property
    def passed(self) -> bool:
        return bool(self.verdicts) and all(v == PASSED for v in self.verdicts.values())

    @property
    def reason(self) -> str:
        if self.passed:
            return f"all {len(self.verdicts)} promotion gates passed"
        blocking = [
            f"{gate} ({verdict})" for gate, verdict in self.verdicts.items() if verdict != PASSED
        ]
        return "blocked by " + ", ".join(blocking)

    def tags(self) -> dict[str, str]:
        return {
            **{f"{GATE_TAG_PREFIX}{gate}": verdict for gate, verdict in self.verdicts.items()},
            TAG_GATES_PASSED: str(self.passed).lower(),
        }


@dataclass(frozen=True)
class RecordedVerdict:
    """One check verdict as ``check_history`` keeps it: the outcome and its metadata."""

    passed: bool
    metadata: dict[str, Any]


def recorded_verdicts_since(
    history: pd.DataFrame, *, since: datetime
) -> dict[tuple[str, str], RecordedVerdict]:
    """The latest verdict of each (asset, check) recorded at or after ``since``, with metadata.

    A fairness verdict recorded before this candidate was evaluated judged another model,
    so older rows are ignored and such a gate counts as missing.
    """
    if history.empty:
        return {}
    evaluated_at = pd.to_datetime(history["evaluated_at"], utc=True)
    recent = history[evaluated_at >= pd.Timestamp(since).tz_convert("UTC")].copy()
    recent["_at"] = evaluated_at[recent.index]
    latest = recent.sort_values("_at").groupby(["asset_key", "check_name"]).tail(1)
    has_metadata = "metadata_json" in latest.columns
    return {
        (str(r.asset_key), str(r.check_name)): RecordedVerdict(
            passed=bool(r.passed),
            metadata=_metadata(r.metadata_json) if has_metadata else {},
        )
        for r in latest.itertuples()
    }


def verdicts_since(history: pd.DataFrame, *, since: datetime) -> dict[tuple[str, str], bool]:
    """The latest outcome of each (asset, check) recorded at or after ``since``."""
    recorded = recorded_verdicts_since(history, since=since)
    return {key: verdict.passed for key, verdict in recorded.items()}


def _metadata(text: object) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def judge_gates(
    verdicts: Mapping[tuple[str, str], bool | str], gates: Mapping[str, Sequence[str]]
) -> GateReport:
    """Each gate's verdict; a gate with no recorded verdict counts as not passed.

    A verdict is a recorded outcome (True or False) or an already-judged status such as
    ``WEAKER_POLICY``, which blocks like a failure.
    """
    report: dict[str, str] = {}
    for asset, checks in gates.items():
        for check in checks:
            verdict = verdicts.get((asset, check))
            if verdict is None:
                report[f"{asset}.{check}"] = MISSING
            elif isinstance(verdict, str):
                report[f"{asset}.{check}"] = verdict
            else:
                report[f"{asset}.{check}"] = PASSED if verdict else FAILED
    return GateReport(report)


def judge_promotion(
    verdicts: Mapping[tuple[str, str], bool | str], *, gated_figures: Iterable[str]
) -> GateReport:
    """Every promotion gate declared in ``fraud_assets.checks`` judged from ``verdicts``.

    ``gated_figures`` are the fairness figures the target's pinned policy gates; the other
    fairness figures are advisory and do not gate promotion.
    """
    return judge_gates(verdicts, promotion_gates(gated_figures))


def _absent(exc: MlflowException) -> bool:
    return exc.error_code in _ABSENT


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version holding ``alias``, or None when the model or the alias does not exist."""
    # Read the alias map rather than get_model_version_by_alias: a missing alias is
    # INVALID_PARAMETER_VALUE in the SQL store and another code elsewhere, so that
    # error cannot be told apart from a real failure.
    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        if _absent(exc):
            return None
        raise
    version = (registered.aliases or {}).get(alias)
    if version is None:
        return None
    return client.get_model_version(name, str(version))


def champion_version(client: MlflowClient, name: str) -> ModelVersion:
    """The champion, or ``NoChampionError`` with a one-line reason."""
    version = alias_version(client, name, CHAMPION)
    if version is None:
        raise NoChampionError(name)
    return version


def register_version(
    client: MlflowClient,
    *,
    name: str,
    model_uri: str,
    run_id: str,
    description: str,
) -> ModelVersion:
    """Register the run's model, or return the version it already has (re-runs are no-ops)."""
    _ensure_registered_model(client, name)
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = min(existing, key=lambda v: int(v.version))
        log.info("run %s is already %s version %s", run_id, name, version.version)
        return version
    registered = mlflow.register_model(model_uri, name)
    client.update_model_version(name, registered.version, description=description)
    return client.get_model_version(name, registered.version)


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(
            name, description="Claims fraud probability (champion/challenger by alias)."
        )
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise


def tag_version(client: MlflowClient, name: str, version: str, tags: Mapping[str, object]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def set_challenger(client: MlflowClient, *, name: str, version: str) -> None:
    client.set_registered_model_alias(name, CHALLENGER, version)


def champion_history(client: MlflowClient, name: str) -> list[str]:
    """The champions in promotion order, the current one last (``TAG_CHAMPION_HISTORY``).

    A model promoted before the history was kept starts it from its current champion.
    """
    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        if _absent(exc):
            return []
        raise
    recorded = (registered.tags or {}).get(TAG_CHAMPION_HISTORY)
    if recorded:
        return [version for version in recorded.split(",") if version]
    current = (registered.aliases or {}).get(CHAMPION)
    return [str(current)] if current is not None else []


def champion_history_by(client: MlflowClient, name: str) -> list[str]:
    """Who promoted each entry of ``champion_history``, in its order (``champion_history_by``).

    Entries recorded before this tag was kept, or moved outside promote, read ``unrecorded``.
    """
    history = champion_history(client, name)
    try:
        recorded = (client.get_registered_model(name).tags or {}).get(TAG_CHAMPION_HISTORY_BY)
    except MlflowException as exc:
        if _absent(exc):
            return []
        raise
    actors = [str(a) for a in json.loads(recorded)] if recorded else []
    actors = actors[-len(history) :] if history else []
    return [UNRECORDED] * (len(history) - len(actors)) + actors


def _write_history(client: MlflowClient, name: str, history: list[str], actors: list[str]) -> None:
    kept = history[-CHAMPION_HISTORY_LENGTH:]
    client.set_registered_model_tag(
        name, TAG_CHAMPION_HISTORY_BY, json.dumps(actors[-len(kept) :] if kept else [])
    )
    client.set_registered_model_tag(name, TAG_CHAMPION_HISTORY, ",".join(kept))


def _confirm(client: MlflowClient, name: str, *, champion: str, history: list[str]) -> None:
    """Read the alias and history back: another writer in between means this move lost."""
    if (
        _current_champion(client, name) == champion
        and champion_history(client, name) == (history[-CHAMPION_HISTORY_LENGTH:])
    ):
        return
    raise ConcurrentAliasMoveError(
        f"another promotion or rollback of {name} ran at the same time: the champion is now "
        f"{_current_champion(client, name)} (history {champion_history(client, name)}), not "
        f"{champion}; check the registry and retry"
    )


def _current_champion(client: MlflowClient, name: str) -> str | None:
    try:
        aliases = client.get_registered_model(name).aliases or {}
    except MlflowException as exc:
        if _absent(exc):
            return None
        raise
    current = aliases.get(CHAMPION)
    return None if current is None else str(current)


def move_champion(client: MlflowClient, *, name: str, version: str, actor: str) -> str | None:
    """Give ``version`` the champion alias and append it to the history; return the version
    that held it before."""
    previous_number = _current_champion(client, name)
    if previous_number == str(version):
        log.info("%s version %s is already champion", name, version)
        return previous_number
    history = champion_history(client, name)
    actors = champion_history_by(client, name)
    if previous_number is not None and (not history or history[-1] != previous_number):
        # The alias was moved outside promote (by hand in the registry): record it.
        history.append(previous_number)
        actors.append(UNRECORDED)
    tags: dict[str, object] = {
        TAG_PROMOTED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
        TAG_PROMOTED_BY: actor,
    }
    if previous_number is not None:
        tags[TAG_PREVIOUS_CHAMPION] = previous_number
    tag_version(client, name, str(version), tags)
    written = [*history, str(version)]
    _write_history(client, name, written, [*actors, actor])
    client.set_registered_model_alias(name, CHAMPION, str(version))
    _confirm(client, name, champion=str(version), history=written)
    log.info("%s champion: %s -> %s (by %s)", name, previous_number, version, actor)
    return previous_number


@dataclass(frozen=True)
class AliasMove:
    """The champion before and after a promotion or rollback."""

    from_version: str | None
    to_version: str


def rollback_champion(client: MlflowClient, *, name: str, actor: str) -> AliasMove:
    """Undo the latest promotion: the champion alias goes to the history's entry before it.

    The history is a list, so rollbacks walk back through it and end (never a cycle: a
    version promoted twice is in it twice). The rolled-back version also loses the
    ``challenger`` alias, so it answers no live claims at all.
    """
    current_number = str(champion_version(client, name).version)
    history = champion_history(client, name)
    actors = champion_history_by(client, name)
    # When the history does not end with the champion, the alias was moved outside promote:
    # back to the last recorded champion.
    if history and history[-1] == current_number:
        history.pop()
        actors.pop()
    if not history:
        raise RollbackError(
            f"{name} version {current_number} is champion and the history records no earlier "
            "champion; promote a version explicitly with --action promote --version N"
        )
    previous = history[-1]
    # Fails clearly if the previous version was deleted since.
    client.get_model_version(name, previous)
    tag_version(
        client,
        name,
        current_number,
        {
            TAG_ROLLED_BACK_AT: datetime.now(UTC).isoformat(timespec="seconds"),
            TAG_ROLLED_BACK_BY: actor,
        },
    )
    _write_history(client, name, history, actors)
    client.set_registered_model_alias(name, CHAMPION, previous)
    _confirm(client, name, champion=previous, history=history)
    challenger = (client.get_registered_model(name).aliases or {}).get(CHALLENGER)
    if challenger is not None and str(challenger) == current_number:
        client.delete_registered_model_alias(name, CHALLENGER)
    log.info("%s champion rolled back: %s -> %s (by %s)", name, current_number, previous, actor)
    return AliasMove(from_version=current_number, to_version=previous)


def promote_version(
    client: MlflowClient,
    *,
    name: str,
    version: str,
    actor: str,
    force: bool = False,
    mode: str = AUTO,
    approval: Approval | None = None,
) -> AliasMove:
    """Make a chosen version champion; one that did not pass its gates needs ``force``.

    Under the ``approval`` mode the move also needs ``approval``, forced or not; the
    approver is recorded as ``promoted_by`` (and ``actor``, who launched it, as
    ``promotion_requested_by``).
    """
    if mode == APPROVAL and approval is None:
        raise ApprovalRequiredError(
            f"{name} version {version} not promoted: promotion mode is {APPROVAL!r}, so "
            "champion moves only with an approval (approved_by and approval_url); promote "
            "through the approval workflow (docs/deployment.md, 'Prod approval policy')"
        )
    target = client.get_model_version(name, version)
    if target.tags.get(TAG_GATES_PASSED) != "true" and not force:
        raise PromotionError(
            f"{name} version {version} has {TAG_GATES_PASSED}="
            f"{target.tags.get(TAG_GATES_PASSED, 'unrecorded')}; "
            "pass --force true to promote it anyway"
        )
    promoter = approval.approved_by if approval is not None else actor
    previous = move_champion(client, name=name, version=str(version), actor=promoter)
    if approval is not None:
        tag_version(
            client,
            name,
            str(version),
            {
                TAG_APPROVED_BY: approval.approved_by,
                TAG_APPROVAL_URL: approval.approval_url,
                TAG_REQUESTED_BY: actor,
                TAG_AWAITING_APPROVAL: "false",
            },
        )
    if force and target.tags.get(TAG_GATES_PASSED) != "true":
        tag_version(client, name, str(version), {"forced_by": promoter})
    return AliasMove(from_version=previous, to_version=str(version))


def hold_for_approval(client: MlflowClient, *, name: str, version: str) -> None:
    """A gate-passing version under the approval mode: challenger, awaiting approval.

    A challenger it replaces that was still awaiting approval is tagged ``superseded``.
    """
    replaced = alias_version(client, name, CHALLENGER)
    if (
        replaced is not None
        and str(replaced.version) != str(version)
        and replaced.tags.get(TAG_AWAITING_APPROVAL) == "true"
    ):
        tag_version(client, name, str(replaced.version), {TAG_AWAITING_APPROVAL: SUPERSEDED})
    set_challenger(client, name=name, version=version)
    tag_version(client, name, version, {TAG_AWAITING_APPROVAL: "true"})
    log.info("%s version %s is challenger, awaiting approval to become champion", name, version)


def recorded_threshold(client: MlflowClient, run_id: str | None, *, default: float) -> float:
    """The operating threshold chosen on the holdout when this run's model was trained.

    ``default`` (``thresholds.operating_threshold``) for a run that recorded none: a model
    logged before thresholds were chosen per model, or one without a run.
    """
    if not run_id:
        return default
    value = client.get_run(run_id).data.params.get("operating_threshold")
    return float(value) if value is not None else default
