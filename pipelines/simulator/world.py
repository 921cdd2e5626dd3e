"""The simulated retailer: its parameters, the named scenarios, and the static world they imply.

Everything here is decided before the first simulated day and never changes during a run:
the catalogue, prices, demand rates, replenishment parameters, the promotion calendar and the
POS-outage calendar. :mod:`pipelines.simulator.engine` moves stock through this world day by day.

Conventions (used by every module of the simulator):
- a *store key* is ``k = store * n_skus + sku`` (``0 <= k < n_stores * n_skus``); the DC has one
  key per sku, indexed by the sku;
- locations are ``S001``..``Snnn`` (index ``0..n_stores-1``) and ``DC01`` (index ``n_stores``);
- times are integer POSIX seconds (UTC); "second of day" counts from the day's 00:00 UTC.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

DAY_S = 86_400
HOUR_S = 3_600
DC_NAME = "DC01"

# Independent random streams (``SeedSequence([seed, stream])``): the same seed gives the same
# catalogue and demand rates whatever the scenario, so scenario runs are comparable.
STREAM_WORLD = 0
STREAM_DAYS = 1
STREAM_DELIVERY = 2

#: the event types a go-live balance can arrive as (``WorldParams.opening_event``)
OPENING_EVENTS: tuple[str, ...] = ("cycle_count", "receipt", "adjustment")


@dataclass(frozen=True, slots=True)
class WorldParams:
    """Every rate of the simulation. Rates are per store×sku key per day unless stated.

    ``simulate(..., **overrides)`` replaces fields by name (``dataclasses.replace``).
    Pairs ``(lo, hi)`` are inclusive ranges drawn uniformly.
    """

    # -- catalogue and demand ------------------------------------------------------------------
    #: median total daily demand (store + online) of a store×sku key, units/day
    demand_median: float = 0.45
    #: lognormal sigma of sku popularity (shared by all stores), of store size, of key noise
    demand_sigma_sku: float = 0.9
    demand_sigma_store: float = 0.25
    demand_sigma_key: float = 0.45
    demand_min: float = 0.03
    demand_max: float = 40.0
    #: median unit price in currency units and its lognormal sigma
    price_median: float = 7.5
    price_sigma: float = 0.8
    #: mean share of a sku's demand that comes online (beta distributed per sku)
    online_share_mean: float = 0.15
    #: share of online orders placed on a marketplace (rest: own web shop and click & collect)
    marketplace_share: float = 0.4
    #: mean extra units per in-store transaction (units = 1 + Poisson(this))
    basket_extra_units: float = 0.2
    #: mean extra units per online order
    order_extra_units: float = 0.1
    #: demand multiplier per weekday, Monday first (normalised to mean 1)
    weekday_shape: tuple[float, ...] = (0.9, 0.85, 0.9, 1.0, 1.15, 1.3, 0.9)
    #: probability per sku-day that a chain-wide promotion starts; its length and demand lift
    promo_start_rate: float = 0.008
    promo_days: tuple[int, int] = (3, 7)
    promo_lift: tuple[float, float] = (1.5, 3.0)
    #: flash promotions (scenario ``promo_burst``): start rate per sku-day, length, lifts
    flash_start_rate: float = 0.0
    flash_days: tuple[int, int] = (1, 2)
    flash_lift_marketplace: tuple[float, float] = (6.0, 12.0)
    flash_lift_other: tuple[float, float] = (1.5, 2.5)

    # -- replenishment (driven by the RECORDED position) ---------------------------------------
    #: store (s, S): reorder when on_hand − reserved + inbound <= s; s covers this many days
    cover_days: float = 4.0
    safety_z: float = 1.0
    #: S − s covers this many days of demand (at least one case pack)
    order_up_days: float = 7.0
    #: DC → store transit, days (transfer_in this many days after the transfer_out)
    transit_days: tuple[int, int] = (1, 3)
    #: DC (s, S) in days of network demand, and supplier lead time in days
    dc_reorder_days: float = 10.0
    dc_order_up_days: float = 24.0
    supplier_lead_days: tuple[int, int] = (2, 4)

    # -- mechanisms that make the record wrong --------------------------------------------------
    #: unrecorded shrink (theft, damage nobody books): Poisson units per key-day of
    #: ``shrink_base + shrink_per_demand * expected demand``, capped by the true shelf
    shrink_base: float = 0.012
    shrink_per_demand: float = 0.02
    #: misplacement: probability per key-day; units = 1 + Poisson(misplace_extra), capped by shelf
    misplace_rate: float = 0.004
    misplace_extra: float = 1.0
    #: probability per day that a key's misplaced units are found and put back on the shelf
    found_rate: float = 0.06
    #: probability that a store transfer_in is received wrong; share of errors that are
    #: over-receipts; error size = 1 + Poisson(receiving_error_extra)
    receiving_error_rate: float = 0.05
    receiving_over_share: float = 0.15
    receiving_error_extra: float = 0.8
    #: probability that a DC supplier receipt is short (supplier short-shipped, booked in full)
    dc_receiving_error_rate: float = 0.02
    #: ERP opening balance differs from the shelf for this share of store keys (go-live errors)
    opening_error_share: float = 0.06
    #: how the go-live balances arrive (:data:`OPENING_EVENTS`): an ERP ``cycle_count`` of every
    #: key, or a ``receipt`` / positive ``adjustment`` of each non-zero balance (an ERP that
    #: loads go-live stock as goods in). The same record either way; other features.
    opening_event: str = "cycle_count"

    # -- recorded store operations --------------------------------------------------------------
    #: returns per unit of expected demand; share parked as ``pending_inspection``
    return_rate: float = 0.03
    return_pending_share: float = 0.4
    inspection_days: tuple[int, int] = (1, 3)
    inspection_pass_share: float = 0.75
    #: probability per key-day of a recorded ``damaged`` adjustment (on_hand → damaged)
    damage_rate: float = 0.003
    #: probability per key-day of a ``quarantine`` hold; days until ``release_quarantine``
    quarantine_rate: float = 0.0005
    quarantine_days: tuple[int, int] = (2, 5)
    #: probability per key-day that staff books part of a known discrepancy: ``theft`` (−) when
    #: the record is above the shelf, ``found`` (+) when below
    recorded_theft_rate: float = 0.01
    recorded_found_rate: float = 0.02
    #: share of each store's skus cycle-counted per day (the count reports the true shelf)
    count_share: float = 0.015
    #: pick delay after an online order, hours; picks that would end after 20:30 move to the
    #: next morning (08:00–10:00) and stay reserved overnight
    pick_delay_hours: tuple[float, float] = (0.5, 4.0)

    # -- delivery to the platform ---------------------------------------------------------------
    #: POS posts in batches: arrival = next boundary of this many minutes + a small lag
    pos_batch_minutes: int = 15
    #: share of events delivered late by a lognormal delay (median, cap in hours)
    late_share: float = 0.02
    late_median_hours: float = 3.0
    late_max_hours: float = 48.0
    #: share of transfer_in confirmations published late, and by how many hours
    transfer_confirm_late_share: float = 0.3
    transfer_confirm_delay_hours: tuple[float, float] = (2.0, 10.0)
    #: extra delay of marketplace-sourced events, hours (scenario ``marketplace_latency``)
    marketplace_delay_hours: tuple[float, float] = (0.0, 0.0)
    #: share of events re-sent (same event_id, same content) minutes to hours later
    duplicate_share: float = 0.01
    duplicate_delay_hours: tuple[float, float] = (0.02, 6.0)
    #: malformed extra lines per valid event (every reject kind, uniformly)
    malformed_share: float = 0.003
    #: probability per store-day of a POS outage (scenario ``pos_outage``) and its length
    pos_outage_rate: float = 0.0
    pos_outage_hours: tuple[float, float] = (3.0, 8.0)

    def __post_init__(self) -> None:
        if self.opening_event not in OPENING_EVENTS:
            raise ValueError(
                f"opening_event must be one of {OPENING_EVENTS}, got {self.opening_event!r}"
            )

    def replace(self, **overrides: Any) -> WorldParams:
        """A copy with ``overrides`` applied; unknown names raise ``TypeError`` naming them."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(
                f"unknown world parameter(s) {unknown}; valid names are the fields of WorldParams"
            )
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named variation of the baseline world: parameter overrides plus a description."""

    name: str
    description: str
    overrides: tuple[tuple[str, Any], ...] = field(default=())

    def apply(self, params: WorldParams) -> WorldParams:
        return params.replace(**dict(self.overrides))


def parse_override(text: str) -> tuple[str, Any]:
    """``"NAME=VALUE"`` → ``(name, value)`` typed as :class:`WorldParams`' field ``name``
    (``float``, ``int``, ``str``, or a comma-separated pair such as ``transit_days=1,3``).
    Raises ``ValueError`` naming the field and what was wrong."""
    name, sep, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    defaults = {f.name: getattr(WorldParams(), f.name) for f in dataclasses.fields(WorldParams)}
    if not sep or not name:
        raise ValueError(f"{text!r}: expected NAME=VALUE")
    if name not in defaults:
        raise ValueError(f"{name!r} is not a world parameter; valid: {', '.join(defaults)}")
    default = defaults[name]
    pair = isinstance(default, tuple)
    shape, parts = (default, raw.split(",")) if pair else ((default,), [raw])
    expected = f"{len(shape)} comma-separated numbers" if pair else type(default).__name__
    try:
        if len(parts) != len(shape):
            raise ValueError(expected)
        values = tuple(type(d)(v) for d, v in zip(shape, parts, strict=True))
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected {expected}") from None
    return name, values if pair else values[0]


BASELINE = Scenario("baseline", "No incident: only the everyday delays, duplicates and rejects.")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "pos_outage",
            "Store POS links go down for 4–9 hours (one store-day in five); the sales and "
            "returns rung up meanwhile are held and all arrive when the outage ends.",
            (("pos_outage_rate", 0.2), ("pos_outage_hours", (4.0, 9.0))),
        ),
        Scenario(
            "marketplace_latency",
            "Marketplace order feeds lag 1–6 hours: reservations arrive after their picks.",
            (("marketplace_delay_hours", (1.0, 6.0)),),
        ),
        Scenario(
            "promo_burst",
            "Flash promotions: for 1–2 days some skus see marketplace demand ×6–12 and other "
            "channels ×1.5–2.5, draining shelves and stressing picks.",
            (("flash_start_rate", 0.02),),
        ),
        Scenario(
            "duplicate_storm",
            "A retrying producer: 20 % of events are re-sent with the same id and content.",
            (("duplicate_share", 0.20),),
        ),
    )
}


def resolve_scenario(name: str | None) -> Scenario:
    """The scenario called ``name`` (``None`` or ``"baseline"`` = no incident)."""
    if name is None or name == BASELINE.name:
        return BASELINE
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(
            f"unknown scenario {name!r}; choose one of {', '.join(sorted(SCENARIOS))} or None"
        ) from None


@dataclass(frozen=True, slots=True)
class World:
    """Static arrays of one run (see the module docstring for key and time conventions).

    Calendars are indexed ``[day, sku]`` or ``[day, store]`` with day ``0..days-1``.
    """

    params: WorldParams
    n_stores: int
    n_skus: int
    days: int
    start_s: int
    sku_names: tuple[str, ...]
    location_names: tuple[str, ...]
    price_cents: np.ndarray  # [sku] int64
    base_rate: np.ndarray  # [key] float64, expected total demand per day (store + online)
    online_share: np.ndarray  # [sku] float64
    pack_size: np.ndarray  # [sku] int64, the DC ships whole packs
    reorder_point: np.ndarray  # [key] int64 (s)
    order_up_to: np.ndarray  # [key] int64 (S)
    dc_reorder_point: np.ndarray  # [sku] int64
    dc_order_up_to: np.ndarray  # [sku] int64
    weekday_lift: np.ndarray  # [day] float64
    promo: np.ndarray  # [day, sku] bool (any promotion, incl. flash)
    lift_marketplace: np.ndarray  # [day, sku] float64, demand multiplier of marketplace orders
    lift_other: np.ndarray  # [day, sku] float64, multiplier of store and own-web demand
    outage_start: np.ndarray  # [day, store] int64 second of day, -1 = no POS outage
    outage_end: np.ndarray  # [day, store] int64 second of day

    @property
    def n_keys(self) -> int:
        return self.n_stores * self.n_skus

    @property
    def dc_index(self) -> int:
        return self.n_stores

    def day_start(self, day: int) -> int:
        return self.start_s + day * DAY_S

    def key_store(self) -> np.ndarray:
        return np.arange(self.n_keys, dtype=np.int64) // self.n_skus

    def key_sku(self) -> np.ndarray:
        return np.arange(self.n_keys, dtype=np.int64) % self.n_skus


def day_rng(seed: int, stream: int) -> np.random.Generator:
    """The generator of one independent random stream of a run."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def _names(prefix: str, n: int, width: int) -> tuple[str, ...]:
    width = max(width, len(str(n)))
    return tuple(f"{prefix}{i:0{width}d}" for i in range(1, n + 1))


def _promo_calendar(
    rng: np.random.Generator,
    days: int,
    n_skus: int,
    start_rate: float,
    length: tuple[int, int],
    lift: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Random chain-wide promotions: (active [day, sku] bool, lift [day, sku] float)."""
    active = np.zeros((days, n_skus), dtype=bool)
    multiplier = np.ones((days, n_skus), dtype=np.float64)
    if start_rate <= 0:
        return active, multiplier
    d0, s0 = np.nonzero(rng.random((days, n_skus)) < start_rate)
    lengths = rng.integers(length[0], length[1] + 1, size=d0.size)
    lifts = rng.uniform(lift[0], lift[1], size=d0.size)
    for offset in range(int(length[1])):
        on = offset < lengths
        d = d0[on] + offset
        inside = d < days
        active[d[inside], s0[on][inside]] = True
        multiplier[d[inside], s0[on][inside]] = lifts[on][inside]
    return active, multiplier


def build_world(
    params: WorldParams, *, seed: int, stores: int, skus: int, days: int, start: datetime
) -> World:
    """Draw the static world of one run (deterministic in ``seed``; scenario-independent
    except through ``params``). ``start`` must be UTC-aware; it is truncated to 00:00 UTC."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware (UTC); naive datetimes are not allowed")
    if stores < 1 or skus < 1 or days < 1:
        raise ValueError(f"stores, skus and days must be >= 1 (got {stores}, {skus}, {days})")
    start_s = int(start.timestamp()) // DAY_S * DAY_S
    rng = day_rng(seed, STREAM_WORLD)
    p = params

    price = np.exp(rng.normal(math.log(p.price_median), p.price_sigma, skus))
    price_cents = np.maximum(np.round(price * 100), 49).astype(np.int64)

    sku_pop = rng.normal(0.0, p.demand_sigma_sku, skus)
    store_size = rng.normal(0.0, p.demand_sigma_store, stores)
    noise = rng.normal(0.0, p.demand_sigma_key, (stores, skus))
    log_rate = math.log(p.demand_median) + store_size[:, None] + sku_pop[None, :] + noise
    base_rate = np.clip(np.exp(log_rate), p.demand_min, p.demand_max).ravel()

    concentration = 12.0
    a = max(p.online_share_mean * concentration, 1e-3)
    b = max((1.0 - p.online_share_mean) * concentration, 1e-3)
    online_share = rng.beta(a, b, skus)

    pack_size = rng.choice(np.array([1, 1, 2, 3, 4, 6, 12]), size=skus).astype(np.int64)
    # Fast movers come in bigger packs, slow movers in single units.
    sku_rate = base_rate.reshape(stores, skus).mean(axis=0)
    pack_size = np.where(sku_rate < 0.3, np.minimum(pack_size, 2), pack_size)

    lead_demand = base_rate * p.cover_days
    reorder_point = np.maximum(np.ceil(lead_demand + p.safety_z * np.sqrt(lead_demand)), 1).astype(
        np.int64
    )
    pack_by_key = np.tile(pack_size, stores)
    order_up_to = reorder_point + np.maximum(
        np.ceil(base_rate * p.order_up_days), pack_by_key
    ).astype(np.int64)

    network = base_rate.reshape(stores, skus).sum(axis=0)
    dc_reorder_point = np.ceil(network * p.dc_reorder_days).astype(np.int64) + 2
    dc_order_up_to = np.ceil(network * p.dc_order_up_days).astype(np.int64) + 6

    shape = np.asarray(p.weekday_shape, dtype=np.float64)
    shape = shape / shape.mean()
    weekday0 = datetime.fromtimestamp(start_s, tz=UTC).weekday()
    weekday_lift = shape[(weekday0 + np.arange(days)) % 7]

    promo, lift = _promo_calendar(rng, days, skus, p.promo_start_rate, p.promo_days, p.promo_lift)
    flash_rng = day_rng(seed, 10 + STREAM_WORLD)  # flash calendar must not shift the rest
    flash, _ = _promo_calendar(flash_rng, days, skus, p.flash_start_rate, p.flash_days, (1, 1))
    flash_mkt = flash_rng.uniform(*p.flash_lift_marketplace, size=(days, skus))
    flash_other = flash_rng.uniform(*p.flash_lift_other, size=(days, skus))
    lift_other = np.where(flash, lift * flash_other, lift)
    lift_marketplace = np.where(flash, lift * flash_mkt, lift)

    outage_rng = day_rng(seed, 20 + STREAM_WORLD)
    has_outage = outage_rng.random((days, stores)) < p.pos_outage_rate
    begin = outage_rng.integers(9 * HOUR_S, 14 * HOUR_S, size=(days, stores))
    length = outage_rng.uniform(*p.pos_outage_hours, size=(days, stores)) * HOUR_S
    outage_start = np.where(has_outage, begin, -1).astype(np.int64)
    outage_end = np.where(has_outage, begin + length.astype(np.int64), -1).astype(np.int64)

    return World(
        params=p,
        n_stores=stores,
        n_skus=skus,
        days=days,
        start_s=start_s,
        sku_names=_names("SKU-", skus, 5),
        location_names=_names("S", stores, 3) + (DC_NAME,),
        price_cents=price_cents,
        base_rate=base_rate,
        online_share=online_share,
        pack_size=pack_size,
        reorder_point=reorder_point,
        order_up_to=order_up_to,
        dc_reorder_point=dc_reorder_point,
        dc_order_up_to=dc_order_up_to,
        weekday_lift=weekday_lift,
        promo=promo | flash,
        lift_marketplace=lift_marketplace,
        lift_other=lift_other,
        outage_start=outage_start,
        outage_end=outage_end,
    )


def day_date(world: World, day: int) -> datetime:
    """00:00 UTC of simulated ``day`` as an aware datetime."""
    return datetime.fromtimestamp(world.start_s, tz=UTC) + timedelta(days=day)
