"""The canonical inventory event: typed model, parser and validator.

One JSON object per event (a Kafka message value keyed ``"{sku}|{location}"`` or one JSONL line).
The JSON Schema twin of this module is ``pipelines/schemas/inventory_event.schema.json``; a test
keeps the two in agreement.

Contract of :func:`parse_event`:
- input is the raw payload (``bytes`` or ``str``), exactly as it arrived;
- output is either an :class:`InventoryEvent` or a :class:`Rejection` carrying the raw payload, a
  machine-readable :class:`RejectReason`, the offending field and a human sentence;
- it never raises on bad input.

Timestamps must be ISO-8601 with a zone (``Z`` or ``+hh:mm``); they are converted to UTC.
``quantity`` must be an integer (a JSON number with no fractional part, as JSON Schema defines
``integer``); it must be >= 0 except for ``adjustment``, where it is a signed change.
Unknown extra fields are kept in ``extra`` and otherwise ignored.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from pipelines.keys import state_key


class EventType(enum.StrEnum):
    SALE = "sale"
    RETURN = "return"
    RECEIPT = "receipt"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    ADJUSTMENT = "adjustment"
    CYCLE_COUNT = "cycle_count"
    RESERVATION = "reservation"
    RESERVATION_RELEASE = "reservation_release"
    FULFILLMENT = "fulfillment"
    PICK_SHORT = "pick_short"


class Source(enum.StrEnum):
    POS = "pos"
    ECOMMERCE = "ecommerce"
    MARKETPLACE = "marketplace"
    OMS = "oms"
    WMS = "wms"
    ERP = "erp"
    STORE_OPS = "store_ops"


class RejectReason(enum.StrEnum):
    """Why a payload was refused. Values are stable: dashboards and DLQ consumers key on them."""

    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    UNKNOWN_SOURCE = "unknown_source"
    BAD_TIMESTAMP = "bad_timestamp"
    ZONELESS_TIMESTAMP = "zoneless_timestamp"
    NON_INTEGER_QUANTITY = "non_integer_quantity"
    NEGATIVE_QUANTITY = "negative_quantity"
    QUANTITY_OUT_OF_RANGE = "quantity_out_of_range"
    EMPTY_KEY = "empty_key"


REQUIRED_FIELDS: tuple[str, ...] = (
    "event_id",
    "event_type",
    "occurred_at",
    "sku",
    "location",
    "quantity",
    "source",
)
OPTIONAL_FIELDS: tuple[str, ...] = ("reference", "reason", "unit_price", "published_at")
#: The largest |quantity| one event may carry (the schema's ``minimum``/``maximum``). No retail
#: transaction moves a billion units; the bound keeps every ledger sum exact in 64-bit counters
#: (a stream would need 9 billion such events to overflow one), instead of a poison message.
MAX_ABS_QUANTITY = 1_000_000_000
_KNOWN_FIELDS = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)
_EVENT_TYPES = {e.value: e for e in EventType}
_SOURCES = {s.value: s for s in Source}


class InventoryEvent(msgspec.Struct, frozen=True):
    """A validated event. ``occurred_at``/``published_at`` are UTC-aware datetimes.

    ``occurred_ts`` (event time as POSIX seconds) is derived from ``occurred_at`` on
    construction; callers never pass it. A msgspec Struct: cheap to build on the hot path.
    """

    event_id: str
    event_type: EventType
    occurred_at: datetime
    sku: str
    location: str
    quantity: int
    source: Source
    reference: str | None = None
    reason: str | None = None
    unit_price: float | None = None
    published_at: datetime | None = None
    extra: dict[str, Any] = {}
    occurred_ts: float = math.nan

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "occurred_ts", self.occurred_at.timestamp())

    @property
    def key(self) -> str:
        """The partition key ``"{sku}|{location}"`` (the Kafka message key)."""
        return f"{self.sku}|{self.location}"

    @property
    def state_key(self) -> str:
        """The unambiguous routing key of this event's ledger state (:func:`state_key`)."""
        return state_key(self.sku, self.location)

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON object (timestamps as ISO-8601 UTC with ``Z``)."""
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "event_type": self.event_type.value,
            "occurred_at": format_ts(self.occurred_at),
            "sku": self.sku,
            "location": self.location,
            "quantity": self.quantity,
            "source": self.source.value,
        }
        if self.reference is not None:
            out["reference"] = self.reference
        if self.reason is not None:
            out["reason"] = self.reason
        if self.unit_price is not None:
            out["unit_price"] = self.unit_price
        if self.published_at is not None:
            out["published_at"] = format_ts(self.published_at)
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused payload: what arrived, and why. Serialised as one DLQ record."""

    raw: str
    reason: RejectReason
    field: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "raw": self.raw,
            "reason": self.reason.value,
            "field": self.field,
            "detail": self.detail,
        }


class _Invalid(Exception):
    def __init__(self, reason: RejectReason, field_name: str | None, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.field_name = field_name
        self.detail = detail


def format_ts(ts: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix and microseconds only when non-zero."""
    text = ts.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def parse_timestamp(value: Any, field_name: str) -> datetime:
    """Parse an ISO-8601 timestamp that carries a zone; return it in UTC.

    Raises ``_Invalid`` with ``bad_timestamp`` for non-strings / unparsable text (including a
    space instead of ``T``) and ``zoneless_timestamp`` for a naive timestamp.
    """
    if not isinstance(value, str):
        raise _Invalid(RejectReason.BAD_TIMESTAMP, field_name, f"{field_name} must be a string")
    if len(value) < 11 or value[10] not in "Tt":
        raise _Invalid(
            RejectReason.BAD_TIMESTAMP,
            field_name,
            f"{field_name}={value!r} is not ISO-8601 (expected YYYY-MM-DDThh:mm:ss±zone)",
        )
    if value[-1] == "z":  # the schema allows it; Python 3.11's fromisoformat does not
        value = value[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(
            RejectReason.BAD_TIMESTAMP, field_name, f"{field_name}={value!r} is not ISO-8601"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _Invalid(
            RejectReason.ZONELESS_TIMESTAMP,
            field_name,
            f"{field_name}={value!r} has no time zone; add 'Z' or an offset such as +02:00",
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00: in UTC it falls before year 1
        raise _Invalid(
            RejectReason.BAD_TIMESTAMP,
            field_name,
            f"{field_name}={value!r} is outside the years 1-9999 once converted to UTC",
        ) from None


def _require_str(obj: dict[str, Any], name: str) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise _Invalid(
            RejectReason.WRONG_TYPE, name, f"{name} must be a string, got {type(value).__name__}"
        )
    return value


def _quantity(value: Any, event_type: EventType) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(
            RejectReason.NON_INTEGER_QUANTITY, "quantity", f"quantity={value!r} is not an integer"
        )
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise _Invalid(
                RejectReason.NON_INTEGER_QUANTITY,
                "quantity",
                f"quantity={value!r} is not an integer number of units",
            )
        value = int(value)
    if value < 0 and event_type is not EventType.ADJUSTMENT:
        raise _Invalid(
            RejectReason.NEGATIVE_QUANTITY,
            "quantity",
            f"quantity={value} is negative; only 'adjustment' carries a signed change",
        )
    if abs(value) > MAX_ABS_QUANTITY:
        raise _Invalid(
            RejectReason.QUANTITY_OUT_OF_RANGE,
            "quantity",
            f"quantity={value} is beyond ±{MAX_ABS_QUANTITY:,} units for one event",
        )
    return int(value)


def event_from_dict(obj: Any) -> InventoryEvent:
    """Validate a decoded JSON value. Raises ``_Invalid`` (internal) on the first problem."""
    if not isinstance(obj, dict):
        raise _Invalid(RejectReason.NOT_OBJECT, None, "the payload is JSON but not an object")
    for name in REQUIRED_FIELDS:
        if name not in obj or obj[name] is None:
            raise _Invalid(RejectReason.MISSING_FIELD, name, f"required field {name!r} is missing")
    event_id = _require_str(obj, "event_id")
    if not event_id:
        raise _Invalid(RejectReason.EMPTY_KEY, "event_id", "event_id must not be empty")
    raw_type = obj["event_type"]
    event_type = _EVENT_TYPES.get(raw_type) if isinstance(raw_type, str) else None
    if event_type is None:
        raise _Invalid(
            RejectReason.UNKNOWN_EVENT_TYPE,
            "event_type",
            f"event_type={raw_type!r} is not one of {sorted(_EVENT_TYPES)}",
        )
    raw_source = obj["source"]
    source = _SOURCES.get(raw_source) if isinstance(raw_source, str) else None
    if source is None:
        raise _Invalid(
            RejectReason.UNKNOWN_SOURCE,
            "source",
            f"source={raw_source!r} is not one of {sorted(_SOURCES)}",
        )
    sku = _require_str(obj, "sku")
    location = _require_str(obj, "location")
    for name, value in (("sku", sku), ("location", location)):
        if not value.strip():
            raise _Invalid(RejectReason.EMPTY_KEY, name, f"{name} must be a non-empty string")
    occurred_at = parse_timestamp(obj["occurred_at"], "occurred_at")
    quantity = _quantity(obj["quantity"], event_type)
    published_at = None
    if obj.get("published_at") is not None:
        published_at = parse_timestamp(obj["published_at"], "published_at")
    unit_price = obj.get("unit_price")
    if unit_price is not None and (
        isinstance(unit_price, bool) or not isinstance(unit_price, int | float)
    ):
        raise _Invalid(RejectReason.WRONG_TYPE, "unit_price", "unit_price must be a number")
    price = None
    if unit_price is not None:
        try:
            price = float(unit_price)
        except OverflowError:  # an integer of 309+ digits: JSON allows it, a double does not
            raise _Invalid(
                RejectReason.WRONG_TYPE,
                "unit_price",
                "unit_price must be a number within a double's range (about ±1.8e308)",
            ) from None
    reference = obj.get("reference")
    reason = obj.get("reason")
    for field_name, optional in (("reference", reference), ("reason", reason)):
        if optional is not None and not isinstance(optional, str):
            raise _Invalid(RejectReason.WRONG_TYPE, field_name, f"{field_name} must be a string")
    extra = {k: v for k, v in obj.items() if k not in _KNOWN_FIELDS}
    return InventoryEvent(
        event_id=event_id,
        event_type=event_type,
        occurred_at=occurred_at,
        sku=sku,
        location=location,
        quantity=quantity,
        source=source,
        reference=reference,
        reason=reason,
        unit_price=price,
        published_at=published_at,
        extra=extra,
    )


_decoder = msgspec.json.Decoder()
_REQUIRED_SET = frozenset(REQUIRED_FIELDS)


def _fast_ts(value: Any) -> datetime | None:
    """A zoned ISO-8601 timestamp in UTC, or None when the careful path must judge it."""
    if type(value) is not str or len(value) < 11 or value[10] not in "Tt":
        return None
    if value[-1] == "z":
        value = value[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is UTC:
        return parsed
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


def _fast_event(obj: Any) -> InventoryEvent | None:
    """The common case in few operations; None sends the payload to :func:`event_from_dict`.

    Accepts exactly what :func:`event_from_dict` accepts when it returns an event (a test
    checks the two agree); anything unusual (floats, wrong types, rejects) takes the careful path.
    """
    if type(obj) is not dict or not _REQUIRED_SET <= obj.keys():
        return None
    event_type = _EVENT_TYPES.get(obj["event_type"]) if type(obj["event_type"]) is str else None
    source = _SOURCES.get(obj["source"]) if type(obj["source"]) is str else None
    sku, location, event_id, q = obj["sku"], obj["location"], obj["event_id"], obj["quantity"]
    if (
        event_type is None
        or source is None
        or type(sku) is not str
        or type(location) is not str
        or type(event_id) is not str
        or type(q) is not int
        or not event_id
        or not sku.strip()
        or not location.strip()
        or (q < 0 and event_type is not EventType.ADJUSTMENT)
        or not -MAX_ABS_QUANTITY <= q <= MAX_ABS_QUANTITY
    ):
        return None
    occurred_at = _fast_ts(obj["occurred_at"])
    if occurred_at is None:
        return None
    get = obj.get
    published_raw, reference, reason, unit_price = (
        get("published_at"),
        get("reference"),
        get("reason"),
        get("unit_price"),
    )
    published_at = None
    if published_raw is not None:
        published_at = _fast_ts(published_raw)
        if published_at is None:
            return None
    if (
        (reference is not None and type(reference) is not str)
        or (reason is not None and type(reason) is not str)
        or (unit_price is not None and type(unit_price) not in (int, float))
    ):
        return None
    try:
        price = float(unit_price) if unit_price is not None else None
    except OverflowError:  # beyond a double: the careful path rejects it
        return None
    extra: dict[str, Any] = {}
    if len(obj) > len(REQUIRED_FIELDS) and not obj.keys() <= _KNOWN_FIELDS:
        extra = {k: v for k, v in obj.items() if k not in _KNOWN_FIELDS}
    return InventoryEvent(
        event_id,
        event_type,
        occurred_at,
        sku,
        location,
        q,
        source,
        reference,
        reason,
        price,
        published_at,
        extra,
    )


class _WireEvent(msgspec.Struct, forbid_unknown_fields=True):
    """The common shape of a payload, decoded and type-checked by msgspec in one C call.

    Timestamps stay strings (they are judged by the same ``_fast_ts`` as the dict path);
    anything else (unknown fields, nulls, floats for quantity, ...) fails here and takes the
    dict path, so this path only ever accepts what :func:`event_from_dict` accepts.
    """

    event_id: str
    event_type: EventType
    occurred_at: str
    sku: str
    location: str
    quantity: int
    source: Source
    reference: str | None = None
    reason: str | None = None
    unit_price: int | float | None = None
    published_at: str | None = None


_wire_decoder = msgspec.json.Decoder(_WireEvent)


def _wire_event(raw: bytes | str) -> InventoryEvent | None:
    """The typed fast path of :func:`parse_event`; None sends the payload to the dict paths."""
    try:
        wire = _wire_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    event_type, q, sku, location = wire.event_type, wire.quantity, wire.sku, wire.location
    if (
        not wire.event_id
        or not sku.strip()
        or not location.strip()
        or (q < 0 and event_type is not EventType.ADJUSTMENT)
        or not -MAX_ABS_QUANTITY <= q <= MAX_ABS_QUANTITY
    ):
        return None
    occurred_at = _fast_ts(wire.occurred_at)
    if occurred_at is None:
        return None
    published_at = None
    if wire.published_at is not None:
        published_at = _fast_ts(wire.published_at)
        if published_at is None:
            return None
    unit_price = wire.unit_price
    try:
        price = float(unit_price) if unit_price is not None else None
    except OverflowError:  # beyond a double: the careful path rejects it
        return None
    return InventoryEvent(
        wire.event_id,
        event_type,
        occurred_at,
        sku,
        location,
        q,
        wire.source,
        wire.reference,
        wire.reason,
        price,
        published_at,
        {},
    )


def parse_event(raw: bytes | str) -> InventoryEvent | Rejection:
    """Decode and validate one payload; never raises on bad input (see module docstring)."""
    typed = _wire_event(raw)
    if typed is not None:
        return typed
    try:
        obj = _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        return Rejection(text, RejectReason.NOT_JSON, None, f"payload is not valid JSON: {exc}")
    fast = _fast_event(obj)
    if fast is not None:
        return fast
    try:
        return event_from_dict(obj)
    except _Invalid as exc:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        return Rejection(text, exc.reason, exc.field_name, exc.detail)


def encode_event(event: InventoryEvent) -> bytes:
    """Canonical JSON bytes of an event (the Kafka message value)."""
    return msgspec.json.encode(event.to_dict())
