"""The scoring API's request and response shapes, derived from the claim and feature contracts.

Requests use MLflow serving's input formats (``dataframe_records``, ``dataframe_split`` or
``instances``) so one client can call this service or the Databricks Model Serving endpoint.
A record is one of two shapes (``FRAUD_SERVING__REQUEST_SHAPE``):

- ``claim`` (the default): the claim as a claims system holds it, silver's columns
  (``claim_request_contract``); the service computes its features from the online view.
- ``features``: ``claim_id`` and every input of the served models with the gold table's
  type (``request_contract``): the served versions' signature columns (``MODEL_FEATURES``
  unless a version was trained with an allowed protected attribute), so the contract
  follows what is loaded.

Extra fields are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, ClassVar

import pyarrow as pa
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from fraud_assets.claims.schema import (
    CLAIM_SCHEMA,
    CONTROL_CHARACTERS,
    EARLIEST_DATE,
    LABEL_COLUMN,
    MAX_TEXT_LENGTH,
    extra_kind,
    extra_type,
)
from fraud_assets.claims.validation import column_ranges
from fraud_assets.features import (
    CLAIM_FEATURES_SCHEMA,
    ID_COLUMN,
    MODEL_FEATURES,
    PROTECTED_SOURCES,
)
from fraud_assets.serving.router import Alias
from fraud_assets.settings import Thresholds

_NO_CONTROL_CHARACTERS = f"^[^{CONTROL_CHARACTERS}]*$"


def _number_only(value: Any) -> Any:
    # Lax int parsing would accept "3" and true; a feature must arrive as a JSON number.
    if isinstance(value, str | bool):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    return value


def _field_type(data_type: pa.DataType) -> Any:
    if pa.types.is_integer(data_type):
        info = {8: 2**7, 16: 2**15, 32: 2**31, 64: 2**63}[data_type.bit_width]
        return Annotated[int, BeforeValidator(_number_only), Field(ge=-info, le=info - 1)]
    if pa.types.is_floating(data_type):
        return Annotated[float, Field(strict=True, allow_inf_nan=False)]
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        # Codes are short, and hold no control characters: batch validation's rule.
        return Annotated[
            str, Field(strict=True, max_length=MAX_TEXT_LENGTH, pattern=_NO_CONTROL_CHARACTERS)
        ]
    if pa.types.is_date32(data_type):
        return Annotated[date, BeforeValidator(_iso_date_only)]
    raise TypeError(f"no request type for column type {data_type}")


def _iso_date_only(value: Any) -> Any:
    # Lax date parsing would read a number as seconds since the epoch.
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO date (YYYY-MM-DD), got {type(value).__name__}")
    return value


# Claims are dated in the payer's time zone: up to UTC+14 is a day ahead of UTC.
FUTURE_DATE_SLACK = timedelta(days=1)


def _dated_in_the_past(value: date | None) -> date | None:
    if value is None:
        return value
    latest = datetime.now(UTC).date() + FUTURE_DATE_SLACK
    if value > latest:
        raise ValueError("is in the future")
    if value < EARLIEST_DATE:
        raise ValueError(f"is before {EARLIEST_DATE}")
    return value


_CLAIM_ID_TYPE = Annotated[
    str,
    Field(strict=True, min_length=1, max_length=MAX_TEXT_LENGTH, pattern=_NO_CONTROL_CHARACTERS),
]


def _in_range(value: Any, info: ValidationInfo) -> Any:
    """The batch validation's range for this column (the service's thresholds, passed in the
    validation context as ``thresholds``); the value itself is never echoed."""
    thresholds = (info.context or {}).get("thresholds")
    if value is None or thresholds is None or info.field_name is None:
        return value
    low, high = column_ranges(thresholds)[info.field_name]
    if value < low:
        raise ValueError(f"is below {low:g}, the batch validation's limit")
    if value > high:
        raise ValueError(f"is above {high:g}, the batch validation's limit")
    return value


PAYLOAD_FORMATS = ("dataframe_records", "dataframe_split", "instances")


class InvocationBody(BaseModel):
    """MLflow serving's input: ``dataframe_records``, ``dataframe_split`` or ``instances``.

    Validate with ``context={"max_records": n, "thresholds": t}`` to refuse an oversized batch
    before any of its records is checked, and values outside batch validation's ranges.
    """

    # Each contract's subclass narrows the records to its ClaimRecord and sets its schema.
    dataframe_records: list[BaseModel]
    schema_: ClassVar[pa.Schema]

    @model_validator(mode="before")
    @classmethod
    def _to_records(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            raise ValueError(
                f"the body must be a JSON object holding one of {', '.join(PAYLOAD_FORMATS)}"
            )
        given = [name for name in PAYLOAD_FORMATS if name in data]
        if len(given) != 1:
            found = ", ".join(repr(str(key)[:40]) for key in list(data)[:5]) or "none"
            raise ValueError(
                f"the body must hold exactly one of {', '.join(PAYLOAD_FORMATS)} "
                f"(keys found: {found})"
            )
        records = _records(given[0], data[given[0]])
        limit = (info.context or {}).get("max_records")
        if limit is not None and isinstance(records, list) and len(records) > limit:
            raise ValueError(
                f"{len(records)} records in one request; the limit is {limit} "
                "(FRAUD_SERVING__MAX_RECORDS)"
            )
        return {"dataframe_records": records}

    def rows(self) -> list[dict[str, Any]]:
        """The records as dicts of the contract's columns (types already checked)."""
        return [record.model_dump() for record in self.dataframe_records]

    def to_arrow(self) -> pa.Table:
        """The records as a table with the contract's schema."""
        return pa.Table.from_pylist(self.rows(), schema=self.schema_)


@dataclass(frozen=True)
class RequestContract:
    """What a request must carry to be scored by the models being served.

    ``schema`` is the frame handed to the models: claim_id plus each input typed exactly as
    in gold, so a claim scored here and the same claim scored in batch reach the model
    identically. ``record`` validates one claim and ``invocation`` a whole request body.
    """

    schema: pa.Schema
    record: type[BaseModel]
    invocation: type[InvocationBody]

    @property
    def features(self) -> list[str]:
        return [name for name in self.schema.names if name != ID_COLUMN]


@lru_cache(maxsize=32)
def request_contract(columns: tuple[str, ...]) -> RequestContract:
    """The contract for requests carrying ``columns`` (claim_id and the models' inputs).

    Each column takes its gold type; a mapping's extra input (``xn_*`` a number, ``xc_*`` a
    code) may be null or left out, as in silver, and the model scores it as missing. The
    contract is built once per distinct column set.
    """
    unknown = [c for c in columns if c not in CLAIM_FEATURES_SCHEMA.names and extra_kind(c) is None]
    if unknown:
        raise ValueError(
            f"no gold column {unknown} to type a request field by; claim_features has "
            f"{CLAIM_FEATURES_SCHEMA.names} and the mapping's xn_/xc_ extras"
        )
    inputs = [c for c in dict.fromkeys(columns) if c != ID_COLUMN]
    schema = pa.schema(
        [
            pa.field(ID_COLUMN, pa.string()),
            *(pa.field(name, _gold_type(name)) for name in inputs),
        ]
    )
    fields: dict[str, Any] = {ID_COLUMN: (_CLAIM_ID_TYPE, ...)}
    for name in inputs:
        field_type = _field_type(schema.field(name).type)
        fields[name] = (field_type | None, None) if extra_kind(name) else (field_type, ...)
    # Columns batch validation bounds that are also model inputs: out of range is a 422.
    bounded = [name for name in inputs if name in column_ranges(Thresholds())]
    record: type[BaseModel] = create_model(
        "ClaimRecord",
        __config__=ConfigDict(extra="ignore"),
        __doc__="One claim to score: its id and every model input, typed as in claim_features.",
        __validators__={"in_range": field_validator(*bounded)(_in_range)} if bounded else {},
        **fields,
    )
    return _contract(schema, record, name="InvocationRequest")


def _contract(schema: pa.Schema, record: type[BaseModel], *, name: str) -> RequestContract:
    """The contract whose request body holds one or more ``record``s of ``schema``."""
    invocation = create_model(
        name,
        __base__=InvocationBody,
        __doc__=InvocationBody.__doc__,
        dataframe_records=(list[record], Field(min_length=1)),  # type: ignore[valid-type]
    )
    invocation.schema_ = schema
    return RequestContract(schema=schema, record=record, invocation=invocation)


def _gold_type(column: str) -> pa.DataType:
    if extra_kind(column) is not None:
        return extra_type(column, typed=True)
    return CLAIM_FEATURES_SCHEMA.field(column).type


# Models trained on the standard features take exactly these; a served version whose
# signature names more inputs (an allowed protected attribute) widens its own contract.
DEFAULT_CONTRACT = request_contract((ID_COLUMN, *MODEL_FEATURES))
REQUEST_SCHEMA = DEFAULT_CONTRACT.schema
ClaimRecord = DEFAULT_CONTRACT.record
InvocationRequest = DEFAULT_CONTRACT.invocation

# Never model inputs, so a claim may leave them out (unless a served version was trained
# with one allowed: its features contract then asks for it).
_OPTIONAL_CLAIM_COLUMNS = {name for sources in PROTECTED_SOURCES.values() for name in sources}


@lru_cache(maxsize=32)
def claim_request_contract(
    extras: tuple[str, ...] = (), *, model_inputs: tuple[str, ...] = ()
) -> RequestContract:
    """The contract for requests carrying canonical claims: silver's columns without the
    label, plus the mapping ``extras`` (``xn_*``, ``xc_*``) the served models take.

    The protected attributes are optional, except those among ``model_inputs`` (a served
    version trained with an allowed one needs it, as in the features shape).

    Every bad field is a 422 naming it: a missing or wrongly typed column, a date that is
    not ``YYYY-MM-DD``, in the future or before 1900, a ``service_date`` after the
    ``claim_date``, and a value outside batch validation's range (an amount below 0).
    """
    columns = [f for f in CLAIM_SCHEMA if f.name != LABEL_COLUMN]
    schema = pa.schema(
        [
            *(pa.field(f.name, f.type) for f in columns),
            *(pa.field(name, extra_type(name, typed=True)) for name in extras),
        ]
    )
    fields: dict[str, Any] = {ID_COLUMN: (_CLAIM_ID_TYPE, ...)}
    for field in schema:
        if field.name == ID_COLUMN:
            continue
        field_type = _field_type(field.type)
        protected = field.name in _OPTIONAL_CLAIM_COLUMNS and field.name not in model_inputs
        optional = protected or extra_kind(field.name) is not None
        fields[field.name] = (field_type | None, None) if optional else (field_type, ...)
    bounded = [name for name in schema.names if name in column_ranges(Thresholds())]
    record: type[BaseModel] = create_model(
        "CanonicalClaim",
        __base__=_ClaimRecord,
        __doc__="One claim as the claims system holds it (silver's columns, no label).",
        __validators__={
            "in_range": field_validator(*bounded)(_in_range),
            "dated": field_validator("claim_date", "service_date")(_dated_in_the_past),
        },
        **fields,
    )
    return _contract(schema, record, name="ClaimInvocationRequest")


class _ClaimRecord(BaseModel):
    """What every canonical claim record checks across its fields."""

    model_config = ConfigDict(extra="ignore")
    # Typed and validated by the fields claim_request_contract declares.
    claim_date: date
    service_date: date

    @model_validator(mode="after")
    def _served_before_claimed(self) -> _ClaimRecord:
        if self.service_date > self.claim_date:
            raise ValueError("service_date is after claim_date")
        return self


def _records(payload_format: str, payload: Any) -> Any:
    """``dataframe_split`` and ``instances`` rewritten as records; records pass through."""
    if payload_format == "dataframe_records":
        return payload
    if payload_format == "instances":
        # MLflow's tensor-style input; a frame model can only take it as named columns.
        if not isinstance(payload, list) or not all(isinstance(row, dict) for row in payload):
            raise ValueError(
                "instances must be a list of objects, one per claim, keyed by column name"
            )
        if not payload:
            raise ValueError("instances is empty: send at least one claim")
        return payload
    if not isinstance(payload, dict) or not isinstance(payload.get("columns"), list):
        raise ValueError("dataframe_split needs a 'columns' list and a 'data' list of rows")
    columns, rows = payload["columns"], payload.get("data")
    if not all(isinstance(column, str) for column in columns):
        raise ValueError("dataframe_split.columns must be column names (strings)")
    if len(set(columns)) != len(columns):
        raise ValueError("dataframe_split.columns names a column more than once")
    if not isinstance(rows, list) or any(
        not isinstance(row, list) or len(row) != len(columns) for row in rows
    ):
        raise ValueError(
            f"dataframe_split.data must be a list of rows of {len(columns)} values each"
        )
    if not rows:
        raise ValueError("dataframe_split.data is empty: send at least one claim")
    return [dict(zip(columns, row, strict=True)) for row in rows]


class ReasonCode(BaseModel):
    """One feature's signed share of the score, in words (``fraud_assets.ml.reasons``)."""

    feature: str
    contribution: float = Field(description="Log-odds of fraud; positive raises the score")
    reason: str = Field(description="The feature's value in words, e.g. a re-bill")


class ClaimScore(BaseModel):
    """One claim's answer: the score, the decision at the operating threshold, its model,
    and the reasons for the score."""

    claim_id: str
    fraud_score: float = Field(description="Probability that the claim is fraudulent")
    decision: int = Field(description="1 = refer for review (score >= operating threshold)")
    model_alias: Alias
    model_version: str
    reasons: list[ReasonCode] = Field(
        description="The largest contributions to the score, largest first; empty for a "
        "model that logged no booster"
    )


class InvocationResponse(BaseModel):
    """``predictions`` is what MLflow serving returns for this model; ``scores`` adds routing."""

    predictions: list[float]
    scores: list[ClaimScore]
    request_id: str


class ServedModelInfo(BaseModel):
    """A model version behind an alias, as the service loaded it."""

    alias: Alias
    version: str
    run_id: str | None
    source: str | None
    loaded_at: str
    gates_passed: bool = Field(
        description="The version's gates_passed tag is true; a challenger without it is shadowed"
    )


class BrokenVersionInfo(BaseModel):
    """A version an alias points at that could not be loaded, so it is not served."""

    model_name: str
    alias: Alias
    version: str
    error: str = Field(description="Error type and first line, without credentials")


class TrafficInfo(BaseModel):
    """The routing rule in force."""

    challenger_traffic: float = Field(description="Configured share for the challenger")
    effective_challenger_share: float = Field(
        description="Share the challenger really answers (0 without a distinct challenger)"
    )
    shadow: bool = Field(
        description="The champion answers every claim: set so, or the challenger is ungated"
    )
    routing: str


class InferenceLogInfo(BaseModel):
    """The buffered inference-log writer's counters."""

    table: str
    buffered_rows: int
    written_rows: int
    failed_writes: int
    last_error: str | None


class ModelsResponse(BaseModel):
    """What ``GET /models`` and ``POST /reload`` report."""

    model_name: str
    champion: ServedModelInfo | None
    challenger: ServedModelInfo | None
    traffic: TrafficInfo
    inference_log: InferenceLogInfo
    broken_versions: list[BrokenVersionInfo]
    resolved_at: str | None
    changed: bool | None = None


class ErrorResponse(BaseModel):
    """MLflow serving's error shape."""

    error_code: str
    message: str
