//! `pipelines._native_book`: the feature dataflow's ledger step in Rust.
//!
//! A second implementation of `pipelines.features.Book` (with the `KeyState`, `Position`,
//! `Activity` and `TransferMatcher` it holds), for the one place where its per-event cost
//! matters: the bytewax ledger step. The Python classes stay the specification and the only
//! implementation everything else runs (replay, training sets, scoring); this one must give
//! the same results to the bit, which the test suite checks on simulated worlds, the
//! conformance cases and randomised streams (`tests/pipelines/test_native_book.py`).
//!
//! Nothing here restates a rule of the ledger by hand where Python can hand it over: the
//! transition table, the move reasons, the day-bucket slots, every constant and the feature
//! names come from the Python modules through `configure()` (called on import by
//! `pipelines.native`). Snapshots use the Python classes' `__getstate__` layout, so a
//! recovery store written by either implementation resumes in the other.

use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBytes, PyDict, PyFrozenSet, PyList, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};
use std::collections::{HashMap, HashSet};

mod parse;

const SEP: char = '\0';
const BUCKETS: [&str; 6] = [
    "on_hand",
    "reserved",
    "in_transit",
    "damaged",
    "quarantined",
    "returned_pending",
];
const ON_HAND: usize = 0;
const IN_TRANSIT: usize = 2;
const ETYPES: [&str; 11] = [
    "sale",
    "return",
    "receipt",
    "transfer_out",
    "transfer_in",
    "adjustment",
    "cycle_count",
    "reservation",
    "reservation_release",
    "fulfillment",
    "pick_short",
];
const RETURN: usize = 1;
const TRANSFER_OUT: usize = 3;
const TRANSFER_IN: usize = 4;
pub(crate) const ADJUSTMENT: usize = 5;
const CYCLE_COUNT: usize = 6;
const FULFILLMENT: usize = 9;
const PICK_SHORT: usize = 10;
/// The snapshot row's columns, in `KeyState.snapshot` order; `configure` checks Python agrees.
const ROW: [&str; 30] = [
    "sku",
    "location",
    "on_hand",
    "reserved",
    "in_transit",
    "damaged",
    "quarantined",
    "returned_pending",
    "atp",
    "sales_1d",
    "sales_7d",
    "sales_28d",
    "ewma_daily_sales",
    "hours_since_last_sale",
    "hours_since_last_receipt",
    "hours_since_last_count",
    "expected_sales_since_last_sale",
    "zero_sales_probability",
    "pick_short_28d",
    "pick_short_rate_28d",
    "pick_shorts_since_count",
    "hours_since_last_pick_short",
    "last_count_variance",
    "mean_abs_count_variance",
    "returns_28d",
    "adjustments_28d",
    "days_of_cover",
    "ledger_anomalies",
    "unit_price",
    "sell_through_since_receipt",
];

type Plan = Vec<(usize, i64)>;

pub(crate) struct Config {
    plans: Vec<Plan>,
    move_plans: HashMap<String, Plan>,
    pending_return: Plan,
    shelf_reasons: HashSet<String>, // RETURN_TO_SHELF_REASONS without None
    shelf_none: bool,
    sale_types: Vec<usize>,
    receipt_types: Vec<usize>,
    slot_of: Vec<Option<usize>>,
    slots: usize,
    slot_sales: usize,
    slot_returns: usize,
    slot_adj: usize,
    slot_pick_short: usize,
    slot_pick_ok: usize,
    day_s: f64,
    hour_s: f64,
    dedupe_horizon_s: f64,
    count_lateness_s: f64,
    blob_max_chars: usize,
    rate_tau_days: f64,
    window_days: i64,
    allowed_lateness_s: f64,
    min_warmup: f64,
    max_days_of_cover: f64,
    transfer_horizon_s: f64,
    version: Py<PyString>,
    row: Vec<Py<PyString>>,
    state_key: Py<PyAny>,
    escape_prefix: String,
    // EventType members by ETYPES index (events are matched by identity) and by value (the
    // parser), Source members by value
    pub(crate) etype_members: Vec<Py<PyAny>>,
    pub(crate) etype_by_value: HashMap<String, usize>,
    pub(crate) sources: HashMap<String, Py<PyAny>>,
    pub(crate) max_abs_quantity: u64,
    pub(crate) event_class: Py<PyAny>,
    member_offsets: Option<[isize; 9]>,
}

static CONFIG: GILOnceCell<Config> = GILOnceCell::new();

pub(crate) fn config(py: Python<'_>) -> PyResult<&'static Config> {
    CONFIG
        .get(py)
        .ok_or_else(|| PyRuntimeError::new_err("pipelines._native_book: configure() was not called"))
}

fn get<'py>(d: &Bound<'py, PyDict>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(name)?
        .ok_or_else(|| PyValueError::new_err(format!("configure: missing {name:?}")))
}

fn bucket_index(name: &str) -> PyResult<usize> {
    BUCKETS
        .iter()
        .position(|b| *b == name)
        .ok_or_else(|| PyValueError::new_err(format!("configure: unknown bucket {name:?}")))
}

fn etype_index(name: &str) -> PyResult<usize> {
    ETYPES
        .iter()
        .position(|b| *b == name)
        .ok_or_else(|| PyValueError::new_err(format!("configure: unknown event type {name:?}")))
}

fn plan_of(rows: &Bound<'_, PyAny>) -> PyResult<Plan> {
    let mut plan = Vec::new();
    for row in rows.try_iter()? {
        let (attr, sign): (String, i64) = row?.extract()?;
        plan.push((bucket_index(&attr)?, sign));
    }
    Ok(plan)
}

/// The Python side's rules and constants (see `pipelines.native_book.configure`).
#[pyfunction]
fn configure(py: Python<'_>, c: &Bound<'_, PyDict>) -> PyResult<()> {
    if CONFIG.get(py).is_some() {
        return Ok(());
    }
    let members: Vec<Bound<PyAny>> = get(c, "event_types")?.try_iter()?.collect::<PyResult<_>>()?;
    let mut etype_members: Vec<Py<PyAny>> = (0..ETYPES.len()).map(|_| py.None()).collect();
    let mut etype_by_value = HashMap::new();
    let mut seen = 0;
    for m in &members {
        let value: String = m.getattr("value")?.extract()?;
        let i = etype_index(&value)?;
        etype_members[i] = m.clone().unbind();
        etype_by_value.insert(value, i);
        seen += 1;
    }
    let mut sources = HashMap::new();
    for m in get(c, "sources")?.try_iter()? {
        let m = m?;
        sources.insert(m.getattr("value")?.extract::<String>()?, m.unbind());
    }
    if seen != ETYPES.len() {
        return Err(PyValueError::new_err("configure: the EventType members changed"));
    }
    let index_of = |obj: &Bound<PyAny>| -> PyResult<usize> {
        let value: String = obj.getattr("value")?.extract()?;
        etype_index(&value)
    };
    let plans_py = get(c, "plans")?;
    let plans_py = plans_py.downcast::<PyDict>()?;
    let mut plans = vec![Vec::new(); ETYPES.len()];
    for (k, v) in plans_py.iter() {
        plans[index_of(&k)?] = plan_of(&v)?;
    }
    let mut move_plans = HashMap::new();
    for (k, v) in get(c, "move_plans")?.downcast::<PyDict>()?.iter() {
        move_plans.insert(k.extract::<String>()?, plan_of(&v)?);
    }
    let mut shelf_reasons = HashSet::new();
    let mut shelf_none = false;
    for r in get(c, "return_to_shelf_reasons")?.try_iter()? {
        let r = r?;
        if r.is_none() {
            shelf_none = true;
        } else {
            shelf_reasons.insert(r.extract::<String>()?);
        }
    }
    let types_of = |name: &str| -> PyResult<Vec<usize>> {
        let mut out = Vec::new();
        for t in get(c, name)?.try_iter()? {
            out.push(index_of(&t?)?);
        }
        Ok(out)
    };
    let mut slot_of = vec![None; ETYPES.len()];
    for (k, v) in get(c, "slot_of")?.downcast::<PyDict>()?.iter() {
        slot_of[index_of(&k)?] = Some(v.extract::<usize>()?);
    }
    let row_names: Vec<String> = get(c, "row")?.extract()?;
    if row_names.iter().map(String::as_str).ne(ROW.iter().copied()) {
        return Err(PyValueError::new_err(format!(
            "configure: KeyState.snapshot's columns changed ({row_names:?}); update lib.rs"
        )));
    }
    let f = |name: &str| -> PyResult<f64> { get(c, name)?.extract() };
    let cfg = Config {
        plans,
        move_plans,
        pending_return: plan_of(&get(c, "pending_return")?)?,
        shelf_reasons,
        shelf_none,
        sale_types: types_of("sale_types")?,
        receipt_types: types_of("receipt_types")?,
        slot_of,
        slots: get(c, "slots")?.extract()?,
        slot_sales: get(c, "slot_sales")?.extract()?,
        slot_returns: get(c, "slot_returns")?.extract()?,
        slot_adj: get(c, "slot_adj")?.extract()?,
        slot_pick_short: get(c, "slot_pick_short")?.extract()?,
        slot_pick_ok: get(c, "slot_pick_ok")?.extract()?,
        day_s: f("day_s")?,
        hour_s: f("hour_s")?,
        dedupe_horizon_s: f("dedupe_horizon_s")?,
        count_lateness_s: f("count_lateness_s")?,
        blob_max_chars: get(c, "blob_max_chars")?.extract()?,
        rate_tau_days: f("rate_tau_days")?,
        window_days: get(c, "window_days")?.extract()?,
        allowed_lateness_s: f("allowed_lateness_s")?,
        min_warmup: f("min_warmup")?,
        max_days_of_cover: f("max_days_of_cover")?,
        transfer_horizon_s: f("transfer_horizon_s")?,
        version: get(c, "version")?.downcast_into::<PyString>()?.unbind(),
        row: ROW.iter().map(|n| PyString::intern(py, n).unbind()).collect(),
        state_key: get(c, "state_key")?.unbind(),
        escape_prefix: get(c, "escape_prefix")?.extract()?,
        etype_members,
        etype_by_value,
        sources,
        max_abs_quantity: get(c, "max_abs_quantity")?.extract()?,
        member_offsets: member_offsets(&get(c, "event_class")?)?,
        event_class: get(c, "event_class")?.unbind(),
    };
    let _ = CONFIG.set(py, cfg);
    Ok(())
}

/// Python's float floor division (`a // b`), bit for bit (CPython's `float_floor_div`).
fn py_floordiv(vx: f64, wx: f64) -> f64 {
    let mut m = vx % wx;
    let mut div = (vx - m) / wx;
    if m != 0.0 {
        if (wx < 0.0) != (m < 0.0) {
            m += wx;
            div -= 1.0;
        }
    }
    let _ = m;
    if div != 0.0 {
        let mut fd = div.floor();
        if div - fd > 0.5 {
            fd += 1.0;
        }
        fd
    } else {
        0.0f64.copysign(vx / wx)
    }
}

/// `int(a // b)` for the day numbers of finite times (a NaN, Python's ValueError, is an error).
fn day_of(ts: f64, day_s: f64) -> PyResult<i64> {
    let d = py_floordiv(ts, day_s);
    if !d.is_finite() {
        return Err(PyValueError::new_err(format!("cannot convert float {d} to integer")));
    }
    Ok(d as i64)
}

// ------------------------------------------------------------------------------- dedupe ids

/// One dedupe generation, as in `pipelines.ledger._with`: a blob `"\0id1\0id2\0"` until it
/// grows past `BLOB_MAX_CHARS` characters or an id holds the separator, then a set.
#[derive(Clone)]
enum Ids {
    Blob(String),
    Set(HashSet<String>),
}

impl Ids {
    fn holds(&self, id: &str, needle: &str) -> bool {
        match self {
            Ids::Blob(b) => !b.is_empty() && !id.contains(SEP) && b.contains(needle),
            Ids::Set(s) => s.contains(id),
        }
    }

    fn add(&mut self, id: &str, max_chars: usize) {
        match self {
            Ids::Set(s) => {
                s.insert(id.to_owned());
            }
            Ids::Blob(b) => {
                // characters ≤ bytes: count them only when the bytes exceed the bound
                let chars = if b.len() <= max_chars { b.len() } else { b.chars().count() };
                if chars <= max_chars && !id.contains(SEP) {
                    b.reserve_exact(id.len() + 2);
                    if b.is_empty() {
                        b.push(SEP);
                    }
                    b.push_str(id);
                    b.push(SEP);
                } else {
                    let mut s: HashSet<String> = if b.is_empty() {
                        HashSet::new()
                    } else {
                        b[1..b.len() - 1].split(SEP).map(str::to_owned).collect()
                    };
                    s.insert(id.to_owned());
                    *self = Ids::Set(s);
                }
            }
        }
    }

    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Ids::Blob(b) => b.as_str().into_bound_py_any(py),
            Ids::Set(s) => Ok(PyFrozenSet::new(py, s.iter())?.into_any()),
        }
    }

    fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Ids> {
        if let Ok(s) = obj.downcast::<PyString>() {
            return Ok(Ids::Blob(s.to_str()?.to_owned()));
        }
        let mut out = HashSet::new();
        for id in obj.try_iter()? {
            out.insert(id?.extract::<String>()?);
        }
        Ok(Ids::Set(out))
    }
}

// ---------------------------------------------------------------------------- the event

/// The attributes of one `InventoryEvent` the ledger reads.
struct Ev<'a, 'py> {
    obj: &'a Bound<'py, PyAny>,
    id: Bound<'py, PyString>,
    etype: usize,
    sku: Bound<'py, PyString>,
    location: Bound<'py, PyString>,
    quantity: i64,
    ts: f64,
    reason: Option<Bound<'py, PyString>>,
    reference: Option<Bound<'py, PyString>>,
    unit_price: Option<f64>,
}

fn optional<'py, T>(obj: Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, T>>>
where
    T: pyo3::PyTypeCheck,
{
    if obj.is_none() {
        Ok(None)
    } else {
        Ok(Some(obj.downcast_into::<T>().map_err(PyErr::from)?))
    }
}

impl<'a, 'py> Ev<'a, 'py> {
    fn read(py: Python<'py>, cfg: &Config, obj: &'a Bound<'py, PyAny>) -> PyResult<Self> {
        // An InventoryEvent's fields are member slots at fixed offsets (found by `configure`):
        // read them there, as CPython's member descriptors do, instead of ten attribute
        // lookups; anything else (a subclass, an unset slot) takes `getattr`.
        let slots = cfg
            .member_offsets
            .as_ref()
            .filter(|_| obj.get_type().as_ptr() as usize == cfg.event_class.as_ptr() as usize);
        let get = |i: usize, name: &Bound<'py, PyString>| -> PyResult<Bound<'py, PyAny>> {
            if let Some(offsets) = slots {
                // SAFETY: `obj` is exactly the configured class, whose member `i` is an
                // object slot (Py_T_OBJECT_EX) at `offsets[i]`; we hold a reference to `obj`.
                let p = unsafe {
                    *((obj.as_ptr() as *const u8).offset(offsets[i]) as *const *mut pyo3::ffi::PyObject)
                };
                if !p.is_null() {
                    return Ok(unsafe { Bound::from_borrowed_ptr(py, p) });
                }
            }
            obj.getattr(name)
        };
        let etype_obj = get(1, intern!(py, "event_type"))?;
        let etype = cfg
            .etype_members
            .iter()
            .position(|m| m.as_ptr() == etype_obj.as_ptr())
            .ok_or_else(|| PyValueError::new_err(format!("not an EventType: {etype_obj}")))?;
        let price = get(8, intern!(py, "unit_price"))?;
        Ok(Ev {
            obj,
            id: get(0, intern!(py, "event_id"))?.downcast_into()?,
            etype,
            sku: get(2, intern!(py, "sku"))?.downcast_into()?,
            location: get(3, intern!(py, "location"))?.downcast_into()?,
            quantity: get(4, intern!(py, "quantity"))?.extract()?,
            ts: get(5, intern!(py, "occurred_ts"))?.extract()?,
            reason: optional(get(6, intern!(py, "reason"))?)?,
            reference: optional(get(7, intern!(py, "reference"))?)?,
            unit_price: if price.is_none() { None } else { Some(price.extract()?) },
        })
    }
}

/// The event fields `Ev::read` takes, in its slot order.
const EVENT_FIELDS: [&str; 9] = [
    "event_id",
    "event_type",
    "sku",
    "location",
    "quantity",
    "occurred_ts",
    "reason",
    "reference",
    "unit_price",
];

/// Byte offsets of `EVENT_FIELDS` in instances of `class`, if each is an object member slot.
fn member_offsets(class: &Bound<'_, PyAny>) -> PyResult<Option<[isize; 9]>> {
    let attrs = class.getattr("__dict__")?;
    let mut out = [0isize; 9];
    for (i, name) in EVENT_FIELDS.iter().enumerate() {
        let Ok(descr) = attrs.get_item(name) else { return Ok(None) };
        if descr.get_type().name()?.to_str()? != "member_descriptor" {
            return Ok(None);
        }
        // SAFETY: a member_descriptor object is a PyMemberDescrObject (pyo3-ffi 0.23 types its
        // `d_member` as a PyGetSetDef pointer; it is CPython's PyMemberDef)
        let member = unsafe {
            let d = descr.as_ptr() as *mut pyo3::ffi::PyMemberDescrObject;
            &*((*d).d_member as *const pyo3::ffi::PyMemberDef)
        };
        if member.type_code != pyo3::ffi::Py_T_OBJECT_EX {
            return Ok(None);
        }
        out[i] = member.offset;
    }
    Ok(Some(out))
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Outcome {
    Applied,
    Duplicate,
    StaleCount,
}

// ------------------------------------------------------------------------------ Position

#[derive(Clone)]
struct Position {
    b: [i64; 6],
    risk_hold: i64,
    safety_stock: i64,
    count_ts: f64,
    last_count_variance: Option<i64>,
    counts_with_variance: i64,
    abs_variance_sum: i64,
    anomalies: i64,
    max_ts: f64,
    post_count: Vec<(f64, i64)>,
    seen: Ids,
    seen_old: Ids,
    generation_ts: f64,
}

impl Position {
    fn new() -> Self {
        Position {
            b: [0; 6],
            risk_hold: 0,
            safety_stock: 0,
            count_ts: f64::NEG_INFINITY,
            last_count_variance: None,
            counts_with_variance: 0,
            abs_variance_sum: 0,
            anomalies: 0,
            max_ts: f64::NEG_INFINITY,
            post_count: Vec::new(),
            seen: Ids::Blob(String::new()),
            seen_old: Ids::Blob(String::new()),
            generation_ts: f64::NEG_INFINITY,
        }
    }

    fn atp(&self) -> i64 {
        0.max(self.b[ON_HAND] - self.b[1] - self.risk_hold - self.safety_stock)
    }

    fn plan<'c>(cfg: &'c Config, ev: &Ev) -> PyResult<(&'c Plan, i64)> {
        if let Some(reason) = &ev.reason {
            let reason = reason.to_str()?;
            if ev.etype == ADJUSTMENT {
                if let Some(plan) = cfg.move_plans.get(reason) {
                    return Ok((plan, ev.quantity.abs()));
                }
            }
            if ev.etype == RETURN && !cfg.shelf_reasons.contains(reason) {
                return Ok((&cfg.pending_return, ev.quantity));
            }
        } else if ev.etype == RETURN && !cfg.shelf_none {
            return Ok((&cfg.pending_return, ev.quantity));
        }
        Ok((&cfg.plans[ev.etype], ev.quantity))
    }

    fn apply(&mut self, cfg: &Config, ev: &Ev, needle: &mut String) -> PyResult<Outcome> {
        let ts = ev.ts;
        if self.remember(cfg, ev.id.to_str()?, ts, needle) {
            return Ok(Outcome::Duplicate);
        }
        if ev.etype == CYCLE_COUNT {
            return Ok(self.apply_count(ts, ev.quantity));
        }
        let (rows, q) = Self::plan(cfg, ev)?;
        for &(attr, sign) in rows {
            let delta = sign * q;
            if attr == ON_HAND {
                if ts <= self.count_ts {
                    continue;
                }
                if delta != 0 {
                    self.post_count.push((ts, delta));
                }
            }
            self.add(attr, delta);
        }
        Ok(Outcome::Applied)
    }

    fn add(&mut self, attr: usize, delta: i64) {
        let value = self.b[attr] + delta;
        self.b[attr] = value;
        if value < 0 && delta < 0 {
            self.anomalies += 1;
        }
    }

    fn apply_settlement(&mut self, cfg: &Config, id: &str, qty: i64, ts: f64, needle: &mut String) -> Outcome {
        if self.remember(cfg, id, ts, needle) {
            return Outcome::Duplicate;
        }
        self.add(IN_TRANSIT, -qty);
        Outcome::Applied
    }

    fn apply_count(&mut self, ts: f64, counted: i64) -> Outcome {
        if ts <= self.count_ts {
            return Outcome::StaleCount;
        }
        let keep: Vec<(f64, i64)> = self.post_count.iter().copied().filter(|(t, _)| *t > ts).collect();
        let after: i64 = keep.iter().map(|(_, d)| d).sum();
        let is_opening = self.count_ts == f64::NEG_INFINITY && self.post_count.is_empty();
        if !is_opening {
            let variance = counted - (self.b[ON_HAND] - after);
            self.last_count_variance = Some(variance);
            self.counts_with_variance += 1;
            self.abs_variance_sum += variance.abs();
        }
        self.count_ts = ts;
        self.post_count = keep;
        self.b[ON_HAND] = counted + after;
        if self.b[ON_HAND] < 0 {
            self.anomalies += 1;
        }
        Outcome::Applied
    }

    fn remember(&mut self, cfg: &Config, id: &str, ts: f64, needle: &mut String) -> bool {
        needle.clear();
        needle.push(SEP);
        needle.push_str(id);
        needle.push(SEP);
        if self.seen.holds(id, needle) || self.seen_old.holds(id, needle) {
            return true;
        }
        if ts > self.max_ts {
            self.max_ts = ts;
            if self.generation_ts == f64::NEG_INFINITY {
                self.generation_ts = ts;
            } else if ts - self.generation_ts >= cfg.dedupe_horizon_s {
                self.rotate(cfg);
            }
        }
        self.seen.add(id, cfg.blob_max_chars);
        false
    }

    fn rotate(&mut self, cfg: &Config) {
        self.seen_old = std::mem::replace(&mut self.seen, Ids::Blob(String::new()));
        self.generation_ts = self.max_ts;
        let horizon = self.max_ts - cfg.count_lateness_s;
        if let Some(&(first, _)) = self.post_count.first() {
            if first < horizon {
                self.post_count.retain(|(t, _)| *t >= horizon);
                self.post_count.shrink_to_fit();
            }
        }
    }

    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let mut packed = Vec::with_capacity(self.post_count.len() * 16);
        for (t, d) in &self.post_count {
            packed.extend_from_slice(&t.to_le_bytes());
            packed.extend_from_slice(&d.to_le_bytes());
        }
        let items: Vec<Bound<PyAny>> = vec![
            self.b[0].into_bound_py_any(py)?,
            self.b[1].into_bound_py_any(py)?,
            self.b[2].into_bound_py_any(py)?,
            self.b[3].into_bound_py_any(py)?,
            self.b[4].into_bound_py_any(py)?,
            self.b[5].into_bound_py_any(py)?,
            self.risk_hold.into_bound_py_any(py)?,
            self.safety_stock.into_bound_py_any(py)?,
            self.count_ts.into_bound_py_any(py)?,
            self.last_count_variance.into_bound_py_any(py)?,
            self.counts_with_variance.into_bound_py_any(py)?,
            self.abs_variance_sum.into_bound_py_any(py)?,
            self.anomalies.into_bound_py_any(py)?,
            self.max_ts.into_bound_py_any(py)?,
            PyBytes::new(py, &packed).into_any(),
            self.seen.to_py(py)?,
            self.seen_old.to_py(py)?,
            self.generation_ts.into_bound_py_any(py)?,
        ];
        PyTuple::new(py, items)
    }

    fn from_py(state: &Bound<'_, PyTuple>) -> PyResult<Self> {
        if state.len() != 18 {
            return Err(PyValueError::new_err("not a Position state (18 fields)"));
        }
        let i = |n: usize| -> PyResult<i64> { state.get_item(n)?.extract() };
        let f = |n: usize| -> PyResult<f64> { state.get_item(n)?.extract() };
        let raw: Vec<u8> = state.get_item(14)?.extract()?;
        if raw.len() % 16 != 0 {
            return Err(PyValueError::new_err("Position state: post-count deltas are not 16-byte records"));
        }
        let post_count = raw
            .chunks_exact(16)
            .map(|c| {
                (
                    f64::from_le_bytes(c[..8].try_into().unwrap()),
                    i64::from_le_bytes(c[8..].try_into().unwrap()),
                )
            })
            .collect();
        Ok(Position {
            b: [i(0)?, i(1)?, i(2)?, i(3)?, i(4)?, i(5)?],
            risk_hold: i(6)?,
            safety_stock: i(7)?,
            count_ts: f(8)?,
            last_count_variance: state.get_item(9)?.extract()?,
            counts_with_variance: i(10)?,
            abs_variance_sum: i(11)?,
            anomalies: i(12)?,
            max_ts: f(13)?,
            post_count,
            seen: Ids::from_py(&state.get_item(15)?)?,
            seen_old: Ids::from_py(&state.get_item(16)?)?,
            generation_ts: f(17)?,
        })
    }
}

// ------------------------------------------------------------------------------ Activity

/// Day-bucket counters, narrowest first (`array` typecodes "B", "i", "q").
#[derive(Clone)]
enum Counts {
    B(Vec<u8>),
    I(Vec<i32>),
    Q(Vec<i64>),
}

impl Counts {
    fn len(&self) -> usize {
        match self {
            Counts::B(v) => v.len(),
            Counts::I(v) => v.len(),
            Counts::Q(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> i64 {
        match self {
            Counts::B(v) => v[i] as i64,
            Counts::I(v) => v[i] as i64,
            Counts::Q(v) => v[i],
        }
    }

    /// counts[i] += amount, widening the type while the value does not fit (`Activity._bump`).
    fn bump(&mut self, i: usize, amount: i64) -> PyResult<()> {
        loop {
            let widened = match self {
                Counts::B(v) => {
                    let value = v[i] as i64 + amount;
                    if (0..=255).contains(&value) {
                        v[i] = value as u8;
                        return Ok(());
                    }
                    Counts::I(v.iter().map(|&x| x as i32).collect())
                }
                Counts::I(v) => {
                    let value = v[i] as i64 + amount;
                    if let Ok(x) = i32::try_from(value) {
                        v[i] = x;
                        return Ok(());
                    }
                    Counts::Q(v.iter().map(|&x| x as i64).collect())
                }
                Counts::Q(v) => {
                    v[i] = v[i].checked_add(amount).ok_or_else(|| {
                        PyOverflowError::new_err("signed long is greater than maximum")
                    })?;
                    return Ok(());
                }
            };
            *self = widened;
        }
    }

    fn prepend_zeros(&mut self, n: usize) {
        match self {
            Counts::B(v) => {
                v.splice(0..0, std::iter::repeat(0).take(n));
            }
            Counts::I(v) => {
                v.splice(0..0, std::iter::repeat(0).take(n));
            }
            Counts::Q(v) => {
                v.splice(0..0, std::iter::repeat(0).take(n));
            }
        }
    }

    fn extend_zeros(&mut self, n: usize) {
        match self {
            Counts::B(v) => v.resize(v.len() + n, 0),
            Counts::I(v) => v.resize(v.len() + n, 0),
            Counts::Q(v) => v.resize(v.len() + n, 0),
        }
    }

    fn drop_front(&mut self, n: usize) {
        match self {
            Counts::B(v) => {
                v.drain(..n);
                v.shrink_to_fit();
            }
            Counts::I(v) => {
                v.drain(..n);
                v.shrink_to_fit();
            }
            Counts::Q(v) => {
                v.drain(..n);
                v.shrink_to_fit();
            }
        }
    }

    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let (code, raw): (&str, Vec<u8>) = match self {
            Counts::B(v) => ("B", v.clone()),
            Counts::I(v) => ("i", v.iter().flat_map(|x| x.to_ne_bytes()).collect()),
            Counts::Q(v) => ("q", v.iter().flat_map(|x| x.to_ne_bytes()).collect()),
        };
        PyTuple::new(py, [code.into_bound_py_any(py)?, PyBytes::new(py, &raw).into_any()])
    }

    fn from_py(packed: &Bound<'_, PyAny>) -> PyResult<Counts> {
        let (code, raw): (String, Vec<u8>) = packed.extract()?;
        match code.as_str() {
            "B" => Ok(Counts::B(raw)),
            "i" if raw.len() % 4 == 0 => Ok(Counts::I(
                raw.chunks_exact(4).map(|c| i32::from_ne_bytes(c.try_into().unwrap())).collect(),
            )),
            "q" if raw.len() % 8 == 0 => Ok(Counts::Q(
                raw.chunks_exact(8).map(|c| i64::from_ne_bytes(c.try_into().unwrap())).collect(),
            )),
            _ => Err(PyValueError::new_err(format!("Activity state: bad day counters ({code:?})"))),
        }
    }
}

#[derive(Clone)]
struct Activity {
    day0: i64,
    counts: Option<Counts>,
    rate_value: f64,
    rate_ts: f64,
    first_ts: f64,
    max_ts: f64,
    last_sale_ts: f64,
    last_receipt_ts: f64,
    last_count_ts: f64,
    last_receipt_qty: i64,
    sold_since_receipt: i64,
    unit_price: f64,
    pick_short_ts: Vec<f64>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            day0: 0,
            counts: None,
            rate_value: 0.0,
            rate_ts: f64::NEG_INFINITY,
            first_ts: f64::INFINITY,
            max_ts: f64::NEG_INFINITY,
            last_sale_ts: f64::NEG_INFINITY,
            last_receipt_ts: f64::NEG_INFINITY,
            last_count_ts: f64::NEG_INFINITY,
            last_receipt_qty: 0,
            sold_since_receipt: 0,
            unit_price: f64::NAN,
            pick_short_ts: Vec::new(),
        }
    }

    fn observe(&mut self, cfg: &Config, ev: &Ev) -> PyResult<()> {
        let ts = ev.ts;
        if ts < self.first_ts {
            self.first_ts = ts;
        }
        if ts > self.max_ts {
            let a = py_floordiv(ts, cfg.day_s);
            let b = py_floordiv(self.max_ts, cfg.day_s);
            let new_day = a != b; // NaN != anything, as in Python
            self.max_ts = ts;
            if new_day {
                self.prune(cfg)?;
            }
        }
        if let Some(p) = ev.unit_price {
            self.unit_price = p;
        }
        let (etype, mut q) = (ev.etype, ev.quantity);
        if cfg.sale_types.contains(&etype) && q > 0 {
            if ts > self.last_sale_ts {
                self.last_sale_ts = ts;
            }
            if ts > self.last_receipt_ts {
                self.sold_since_receipt = self.sold_since_receipt.saturating_add(q);
            }
            self.add_rate(cfg, ts, q);
        } else if cfg.receipt_types.contains(&etype) && q > 0 {
            if ts > self.last_receipt_ts {
                self.last_receipt_ts = ts;
                self.last_receipt_qty = q;
                self.sold_since_receipt = 0;
            } else if ts == self.last_receipt_ts {
                self.last_receipt_qty = self.last_receipt_qty.saturating_add(q);
            }
        } else if etype == CYCLE_COUNT {
            if ts > self.last_count_ts {
                self.last_count_ts = ts;
                self.pick_short_ts.retain(|t| *t > ts);
                self.pick_short_ts.shrink_to_fit();
            }
        } else if etype == PICK_SHORT && ts > self.last_count_ts {
            self.pick_short_ts.push(ts);
        }
        if ts < self.max_ts - cfg.allowed_lateness_s {
            return Ok(());
        }
        let Some(slot) = cfg.slot_of[etype] else { return Ok(()) };
        let at = self.slot_base(cfg, ts)?;
        if slot == cfg.slot_adj {
            q = q.abs();
        } else if slot == cfg.slot_pick_short {
            q = 1;
        }
        let counts = self.counts.as_mut().expect("slot_base made the counters");
        counts.bump(at + slot, q)?;
        if etype == FULFILLMENT {
            counts.bump(at + cfg.slot_pick_ok, 1)?;
        }
        Ok(())
    }

    fn slot_base(&mut self, cfg: &Config, ts: f64) -> PyResult<usize> {
        let day = day_of(ts, cfg.day_s)?;
        let slots = cfg.slots;
        let Some(counts) = self.counts.as_mut() else {
            self.day0 = day;
            self.counts = Some(Counts::B(vec![0; slots]));
            return Ok(0);
        };
        if day < self.day0 {
            counts.prepend_zeros(slots * (self.day0 - day) as usize);
            self.day0 = day;
        }
        let offset = (day - self.day0) as usize;
        let have = counts.len() / slots;
        if offset + 1 > have {
            counts.extend_zeros(slots * (offset + 1 - have));
        }
        Ok(offset * slots)
    }

    fn prune(&mut self, cfg: &Config) -> PyResult<()> {
        let oldest = day_of(self.max_ts - cfg.allowed_lateness_s, cfg.day_s)?;
        if self.counts.is_some() && self.day0 < oldest {
            let drop = (oldest - self.day0) as usize * cfg.slots;
            let counts = self.counts.as_mut().unwrap();
            if drop < counts.len() {
                counts.drop_front(drop);
            } else {
                self.counts = None;
            }
            self.day0 = oldest;
        }
        Ok(())
    }

    fn add_rate(&mut self, cfg: &Config, ts: f64, q: i64) {
        let tau = cfg.rate_tau_days * cfg.day_s;
        let unit = q as f64 / cfg.rate_tau_days;
        if ts >= self.rate_ts {
            let decay = if self.rate_ts > f64::NEG_INFINITY {
                (-(ts - self.rate_ts) / tau).exp()
            } else {
                0.0
            };
            self.rate_value = self.rate_value * decay + unit;
            self.rate_ts = ts;
        } else {
            self.rate_value += unit * (-(self.rate_ts - ts) / tau).exp();
        }
    }

    fn rate_at(&self, cfg: &Config, ts: f64) -> f64 {
        if self.rate_ts == f64::NEG_INFINITY {
            return 0.0;
        }
        let ts = py_max(ts, self.rate_ts);
        let tau = cfg.rate_tau_days * cfg.day_s;
        let raw = self.rate_value * (-(ts - self.rate_ts) / tau).exp();
        let warm = 1.0 - (-py_max(ts - self.first_ts, 0.0) / tau).exp();
        raw / py_max(warm, cfg.min_warmup)
    }

    fn window(&self, cfg: &Config, as_of: f64, days: i64, slot: usize) -> PyResult<f64> {
        let Some(counts) = &self.counts else { return Ok(0.0) };
        let day_s = cfg.day_s;
        let start = as_of - days as f64 * day_s;
        let first_day = day_of(start, day_s)?;
        let last_day = day_of(as_of, day_s)?;
        let mut total = 0.0;
        let lo = first_day.max(self.day0);
        let hi = last_day.min(self.day0 + (counts.len() / cfg.slots) as i64 - 1);
        let mut day = lo;
        while day <= hi {
            let value = counts.get((day - self.day0) as usize * cfg.slots + slot) as f64;
            if day == first_day {
                total += value * (1.0 - (start - day as f64 * day_s) / day_s);
            } else {
                total += value;
            }
            day += 1;
        }
        Ok(total)
    }

    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let counts = match &self.counts {
            None => py.None().into_bound(py),
            Some(c) => c.to_py(py)?.into_any(),
        };
        let items: Vec<Bound<PyAny>> = vec![
            self.day0.into_bound_py_any(py)?,
            counts,
            self.rate_value.into_bound_py_any(py)?,
            self.rate_ts.into_bound_py_any(py)?,
            self.first_ts.into_bound_py_any(py)?,
            self.max_ts.into_bound_py_any(py)?,
            self.last_sale_ts.into_bound_py_any(py)?,
            self.last_receipt_ts.into_bound_py_any(py)?,
            self.last_count_ts.into_bound_py_any(py)?,
            self.last_receipt_qty.into_bound_py_any(py)?,
            self.sold_since_receipt.into_bound_py_any(py)?,
            self.unit_price.into_bound_py_any(py)?,
            PyTuple::new(py, &self.pick_short_ts)?.into_any(),
        ];
        PyTuple::new(py, items)
    }

    fn from_py(state: &Bound<'_, PyTuple>) -> PyResult<Self> {
        if state.len() != 13 {
            return Err(PyValueError::new_err("not an Activity state (13 fields)"));
        }
        let f = |n: usize| -> PyResult<f64> { state.get_item(n)?.extract() };
        let counts = state.get_item(1)?;
        Ok(Activity {
            day0: state.get_item(0)?.extract()?,
            counts: if counts.is_none() { None } else { Some(Counts::from_py(&counts)?) },
            rate_value: f(2)?,
            rate_ts: f(3)?,
            first_ts: f(4)?,
            max_ts: f(5)?,
            last_sale_ts: f(6)?,
            last_receipt_ts: f(7)?,
            last_count_ts: f(8)?,
            last_receipt_qty: state.get_item(9)?.extract()?,
            sold_since_receipt: state.get_item(10)?.extract()?,
            unit_price: f(11)?,
            pick_short_ts: state.get_item(12)?.extract()?,
        })
    }
}

/// Python's `max(a, b)` for floats: `a` unless `b > a` (so a NaN first argument wins).
fn py_max(a: f64, b: f64) -> f64 {
    if b > a {
        b
    } else {
        a
    }
}

/// Python's `min(a, b)`: `a` unless `b < a`.
fn py_min(a: f64, b: f64) -> f64 {
    if b < a {
        b
    } else {
        a
    }
}

fn hours(cfg: &Config, as_of: f64, ts: f64, fallback: f64) -> f64 {
    let r = if ts > f64::NEG_INFINITY { ts } else { fallback };
    if r == f64::INFINITY {
        return 0.0;
    }
    py_max(as_of - r, 0.0) / cfg.hour_s
}

// ------------------------------------------------------------------------------ KeyState

struct KeyState {
    key: Box<str>,
    sku: Py<PyString>,
    location: Py<PyString>,
    duplicates: i64,
    pos: Position,
    act: Activity,
}

impl KeyState {
    fn snapshot<'py>(&self, py: Python<'py>, cfg: &Config, as_of: f64) -> PyResult<Bound<'py, PyDict>> {
        let (pos, act) = (&self.pos, &self.act);
        let rate = act.rate_at(cfg, as_of);
        let mut r = py_max(py_max(act.last_sale_ts, act.last_receipt_ts), act.last_count_ts);
        if r == f64::NEG_INFINITY {
            r = if act.first_ts < f64::INFINITY { act.first_ts } else { as_of };
        }
        let expected = act.rate_at(cfg, r) * py_max(as_of - r, 0.0) / cfg.day_s;
        let wd = cfg.window_days;
        let pick_short = act.window(cfg, as_of, wd, cfg.slot_pick_short)?;
        let pick_ok = act.window(cfg, as_of, wd, cfg.slot_pick_ok)?;
        let n_var = pos.counts_with_variance;
        let on_hand = pos.b[ON_HAND];
        let last_pick_short = act.pick_short_ts.iter().copied().fold(f64::NEG_INFINITY, py_max);
        let cover = if rate > 0.0 {
            py_min(0.max(on_hand) as f64 / rate, cfg.max_days_of_cover)
        } else if on_hand > 0 {
            cfg.max_days_of_cover
        } else {
            0.0
        };
        let sell_through = if act.last_receipt_qty > 0 {
            act.sold_since_receipt as f64 / act.last_receipt_qty as f64
        } else {
            f64::NAN
        };
        let values: [Bound<PyAny>; 30] = [
            self.sku.bind(py).clone().into_any(),
            self.location.bind(py).clone().into_any(),
            on_hand.into_bound_py_any(py)?,
            pos.b[1].into_bound_py_any(py)?,
            pos.b[2].into_bound_py_any(py)?,
            pos.b[3].into_bound_py_any(py)?,
            pos.b[4].into_bound_py_any(py)?,
            pos.b[5].into_bound_py_any(py)?,
            pos.atp().into_bound_py_any(py)?,
            act.window(cfg, as_of, 1, cfg.slot_sales)?.into_bound_py_any(py)?,
            act.window(cfg, as_of, 7, cfg.slot_sales)?.into_bound_py_any(py)?,
            act.window(cfg, as_of, wd, cfg.slot_sales)?.into_bound_py_any(py)?,
            rate.into_bound_py_any(py)?,
            hours(cfg, as_of, act.last_sale_ts, act.first_ts).into_bound_py_any(py)?,
            hours(cfg, as_of, act.last_receipt_ts, act.first_ts).into_bound_py_any(py)?,
            hours(cfg, as_of, act.last_count_ts, act.first_ts).into_bound_py_any(py)?,
            expected.into_bound_py_any(py)?,
            (-expected).exp().into_bound_py_any(py)?,
            pick_short.into_bound_py_any(py)?,
            (if pick_short != 0.0 { pick_short / (pick_short + pick_ok) } else { 0.0 }).into_bound_py_any(py)?,
            (act.pick_short_ts.len() as i64).into_bound_py_any(py)?,
            hours(cfg, as_of, last_pick_short, act.first_ts).into_bound_py_any(py)?,
            (pos.last_count_variance.unwrap_or(0) as f64).into_bound_py_any(py)?,
            (if n_var != 0 { pos.abs_variance_sum as f64 / n_var as f64 } else { 0.0 }).into_bound_py_any(py)?,
            act.window(cfg, as_of, wd, cfg.slot_returns)?.into_bound_py_any(py)?,
            act.window(cfg, as_of, wd, cfg.slot_adj)?.into_bound_py_any(py)?,
            cover.into_bound_py_any(py)?,
            pos.anomalies.into_bound_py_any(py)?,
            act.unit_price.into_bound_py_any(py)?,
            sell_through.into_bound_py_any(py)?,
        ];
        let row = PyDict::new(py);
        for (name, value) in cfg.row.iter().zip(values) {
            row.set_item(name.bind(py), value)?;
        }
        Ok(row)
    }

    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(
            py,
            [
                self.sku.bind(py).clone().into_any(),
                self.location.bind(py).clone().into_any(),
                self.duplicates.into_bound_py_any(py)?,
                self.pos.to_py(py)?.into_any(),
                self.act.to_py(py)?.into_any(),
            ],
        )
    }
}

// ----------------------------------------------------------------------- TransferMatcher

struct Matcher {
    source_location: Option<Py<PyString>>,
    pending_ins: Vec<(String, i64)>,
    seen: HashSet<String>,
    last_ts: f64,
}

struct Settlement {
    id: String,
    location: Py<PyString>,
    quantity: i64,
    ts: f64,
}

impl Matcher {
    fn new() -> Self {
        Matcher { source_location: None, pending_ins: Vec::new(), seen: HashSet::new(), last_ts: f64::NEG_INFINITY }
    }

    fn observe(&mut self, py: Python<'_>, ev: &Ev) -> PyResult<Vec<Settlement>> {
        let id = ev.id.to_str()?;
        if self.seen.contains(id) || ev.reference.is_none() {
            return Ok(Vec::new());
        }
        self.seen.insert(id.to_owned());
        if ev.ts > self.last_ts {
            self.last_ts = ev.ts;
        }
        if ev.etype == TRANSFER_OUT {
            self.source_location = Some(ev.location.clone().unbind());
        } else if ev.etype == TRANSFER_IN {
            self.pending_ins.push((id.to_owned(), ev.quantity));
        } else {
            return Ok(Vec::new());
        }
        let Some(source) = &self.source_location else { return Ok(Vec::new()) };
        let out = self
            .pending_ins
            .drain(..)
            .map(|(eid, qty)| Settlement {
                id: format!("{eid}#settle"),
                location: source.clone_ref(py),
                quantity: qty,
                ts: ev.ts,
            })
            .collect();
        Ok(out)
    }

    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let source = match &self.source_location {
            None => py.None().into_bound(py),
            Some(s) => s.bind(py).clone().into_any(),
        };
        let pending: Vec<Bound<PyTuple>> = self
            .pending_ins
            .iter()
            .map(|(id, q)| PyTuple::new(py, [id.into_bound_py_any(py)?, q.into_bound_py_any(py)?]))
            .collect::<PyResult<_>>()?;
        PyTuple::new(
            py,
            [
                source,
                PyTuple::new(py, pending)?.into_any(),
                PyFrozenSet::new(py, self.seen.iter())?.into_any(),
                self.last_ts.into_bound_py_any(py)?,
            ],
        )
    }

    fn from_py(state: &Bound<'_, PyTuple>) -> PyResult<Self> {
        let source = state.get_item(0)?;
        let mut seen = HashSet::new();
        for id in state.get_item(2)?.try_iter()? {
            seen.insert(id?.extract::<String>()?);
        }
        Ok(Matcher {
            source_location: if source.is_none() { None } else { Some(source.downcast_into::<PyString>()?.unbind()) },
            pending_ins: state.get_item(1)?.extract()?,
            seen,
            last_ts: state.get_item(3)?.extract()?,
        })
    }
}

/// A sku's transfer references in insertion order (a Python dict's behaviour).
#[derive(Default)]
struct Refs {
    order: Vec<(String, Matcher)>,
    index: HashMap<String, usize>,
}

impl Refs {
    fn get_or_insert(&mut self, reference: &str) -> &mut Matcher {
        let i = match self.index.get(reference) {
            Some(&i) => i,
            None => {
                self.order.push((reference.to_owned(), Matcher::new()));
                self.index.insert(reference.to_owned(), self.order.len() - 1);
                self.order.len() - 1
            }
        };
        &mut self.order[i].1
    }

    fn forget_older(&mut self, horizon: f64) {
        let before = self.order.len();
        self.order.retain(|(_, m)| !(m.last_ts < horizon));
        if self.order.len() != before {
            self.index = self.order.iter().enumerate().map(|(i, (r, _))| (r.clone(), i)).collect();
        }
    }
}

// ---------------------------------------------------------------------------------- Book

/// `pipelines.features.Book`: the keyed states of a set of skus, applied in arrival order.
#[pyclass(module = "pipelines._native_book")]
struct NativeBook {
    index: HashMap<String, usize>,
    // boxed: a growing Vec's spare capacity then costs a pointer a slot, not a whole state
    states: Vec<Box<KeyState>>,
    transfers: Vec<(String, Refs)>,
    transfer_index: HashMap<String, usize>,
    clocks: Vec<(String, f64, f64)>,
    clock_index: HashMap<String, usize>,
    key_buf: String,
    needle: String,
}

impl NativeBook {
    fn empty() -> Self {
        NativeBook {
            index: HashMap::new(),
            states: Vec::new(),
            transfers: Vec::new(),
            transfer_index: HashMap::new(),
            clocks: Vec::new(),
            clock_index: HashMap::new(),
            key_buf: String::new(),
            needle: String::new(),
        }
    }

    /// `pipelines.keys.state_key` into `self.key_buf` (the rare escaped form through Python).
    fn state_key(&mut self, py: Python<'_>, cfg: &Config, sku: &str, other: &str) -> PyResult<()> {
        self.key_buf.clear();
        if sku.contains('|') || sku.starts_with(cfg.escape_prefix.as_str()) {
            let key: String = cfg.state_key.bind(py).call1((sku, other))?.extract()?;
            self.key_buf.push_str(&key);
        } else {
            self.key_buf.push_str(sku);
            self.key_buf.push('|');
            self.key_buf.push_str(other);
        }
        Ok(())
    }

    /// The state of the key in `key_buf`, created empty if new.
    fn state_at(&mut self, py: Python<'_>, sku: &Bound<'_, PyString>, location: &Bound<'_, PyString>) -> usize {
        if let Some(&i) = self.index.get(self.key_buf.as_str()) {
            return i;
        }
        let intern = |s: &Bound<'_, PyString>| -> Py<PyString> {
            let mut ptr = s.clone().into_ptr();
            unsafe {
                pyo3::ffi::PyUnicode_InternInPlace(&mut ptr);
                Py::from_owned_ptr(py, ptr)
            }
        };
        self.states.push(Box::new(KeyState {
            key: self.key_buf.as_str().into(),
            sku: intern(sku),
            location: intern(location),
            duplicates: 0,
            pos: Position::new(),
            act: Activity::new(),
        }));
        self.index.insert(self.key_buf.clone(), self.states.len() - 1);
        self.states.len() - 1
    }

    fn apply_one(
        &mut self,
        py: Python<'_>,
        cfg: &Config,
        obj: &Bound<'_, PyAny>,
        changed: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Outcome> {
        let ev = Ev::read(py, cfg, obj)?;
        self.state_key(py, cfg, ev.sku.to_str()?, ev.location.to_str()?)?;
        let i = self.state_at(py, &ev.sku, &ev.location);
        let state = &mut self.states[i];
        let outcome = state.pos.apply(cfg, &ev, &mut self.needle)?;
        if outcome != Outcome::Duplicate {
            state.act.observe(cfg, &ev)?;
        } else {
            state.duplicates += 1;
        }
        if let Some(changed) = changed {
            if outcome != Outcome::Duplicate {
                changed.set_item(PyString::new(py, &state.key), ev.obj)?;
            }
        }
        if ev.reference.is_some() && (ev.etype == TRANSFER_OUT || ev.etype == TRANSFER_IN) {
            let settlements = self.matcher_observe(py, cfg, &ev)?;
            for s in settlements {
                let location = s.location.bind(py);
                self.state_key(py, cfg, ev.sku.to_str()?, location.to_str()?)?;
                let j = self.state_at(py, &ev.sku, location);
                let target = &mut self.states[j];
                let o = target.pos.apply_settlement(cfg, &s.id, s.quantity, s.ts, &mut self.needle);
                if o == Outcome::Duplicate {
                    target.duplicates += 1;
                } else if let Some(changed) = changed {
                    let key = PyString::new(py, &target.key);
                    if !changed.contains(&key)? {
                        changed.set_item(key, py.None())?;
                    }
                }
            }
        }
        Ok(outcome)
    }

    fn matcher_observe(&mut self, py: Python<'_>, cfg: &Config, ev: &Ev) -> PyResult<Vec<Settlement>> {
        let sku = ev.sku.to_str()?;
        let reference = ev.reference.as_ref().unwrap().to_str()?;
        let ts = ev.ts;
        let t = match self.transfer_index.get(sku) {
            Some(&t) => {
                let c = self.clock_index[sku];
                let (_, mut newest, mut swept) = self.clocks[c];
                if ts > newest {
                    newest = ts;
                    if newest - swept >= cfg.day_s {
                        let horizon = newest - cfg.transfer_horizon_s;
                        self.transfers[t].1.forget_older(horizon);
                        swept = newest;
                    }
                    self.clocks[c] = (sku.to_owned(), newest, swept);
                }
                t
            }
            None => {
                self.transfers.push((sku.to_owned(), Refs::default()));
                self.transfer_index.insert(sku.to_owned(), self.transfers.len() - 1);
                match self.clock_index.get(sku) {
                    Some(&c) => self.clocks[c] = (sku.to_owned(), ts, ts),
                    None => {
                        self.clocks.push((sku.to_owned(), ts, ts));
                        self.clock_index.insert(sku.to_owned(), self.clocks.len() - 1);
                    }
                }
                self.transfers.len() - 1
            }
        };
        self.transfers[t].1.get_or_insert(reference).observe(py, ev)
    }
}

#[pymethods]
impl NativeBook {
    #[new]
    fn new(py: Python<'_>) -> PyResult<Self> {
        config(py)?;
        Ok(Self::empty())
    }

    /// Apply ``events`` in order (``Book.apply_batch``). ``track`` (default): return the
    /// keys they changed, each with the last event that changed it (None: only a transit
    /// settlement did); else return None and track nothing.
    #[pyo3(signature = (events, track = true))]
    fn apply_batch<'py>(
        &mut self,
        py: Python<'py>,
        events: &Bound<'py, PyList>,
        track: bool,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let cfg = config(py)?;
        let out = if track { Some(PyDict::new(py)) } else { None };
        for event in events.iter() {
            self.apply_one(py, cfg, &event, out.as_ref())?;
        }
        Ok(out)
    }

    /// Apply one event (``Book.apply``); returns the outcome's value ("applied", ...).
    fn apply(&mut self, py: Python<'_>, event: &Bound<'_, PyAny>) -> PyResult<&'static str> {
        let cfg = config(py)?;
        Ok(match self.apply_one(py, cfg, event, None)? {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::StaleCount => "stale_count",
        })
    }

    fn __len__(&self) -> usize {
        self.states.len()
    }

    /// The state keys, in creation order (``Book.states``' order).
    fn keys<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyString>> {
        self.states.iter().map(|s| PyString::new(py, &s.key)).collect()
    }

    /// ``(sku, location, duplicates, last_event_ts)`` of ``key``.
    fn view<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyTuple>> {
        let s = self.get(key)?;
        PyTuple::new(
            py,
            [
                s.sku.bind(py).clone().into_any(),
                s.location.bind(py).clone().into_any(),
                s.duplicates.into_bound_py_any(py)?,
                s.act.max_ts.into_bound_py_any(py)?,
            ],
        )
    }

    /// ``KeyState.snapshot(as_of)`` of ``key``.
    fn snapshot<'py>(&self, py: Python<'py>, key: &str, as_of: f64) -> PyResult<Bound<'py, PyDict>> {
        self.get(key)?.snapshot(py, config(py)?, as_of)
    }

    /// Every key's ``KeyState.__getstate__()``, in creation order.
    fn key_states<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        self.states.iter().map(|s| s.to_py(py)).collect()
    }

    /// ``Book.__getstate__()``: the same layout, so either implementation resumes the other's.
    fn __getstate__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let cfg = config(py)?;
        let states: Vec<Bound<PyTuple>> = self
            .states
            .iter()
            .map(|s| PyTuple::new(py, [PyString::new(py, &s.key).into_any(), s.to_py(py)?.into_any()]))
            .collect::<PyResult<_>>()?;
        let mut matchers = Vec::new();
        for (sku, refs) in &self.transfers {
            for (reference, m) in &refs.order {
                matchers.push(PyTuple::new(
                    py,
                    [sku.into_bound_py_any(py)?, reference.into_bound_py_any(py)?, m.to_py(py)?.into_any()],
                )?);
            }
        }
        let clocks: Vec<Bound<PyTuple>> = self
            .clocks
            .iter()
            .map(|(sku, newest, swept)| {
                PyTuple::new(py, [sku.into_bound_py_any(py)?, newest.into_bound_py_any(py)?, swept.into_bound_py_any(py)?])
            })
            .collect::<PyResult<_>>()?;
        PyTuple::new(
            py,
            [
                cfg.version.bind(py).clone().into_any(),
                PyTuple::new(py, states)?.into_any(),
                PyTuple::new(py, matchers)?.into_any(),
                PyTuple::new(py, clocks)?.into_any(),
            ],
        )
    }

    /// The book whose ``__getstate__()`` (this class's or ``Book``'s) was ``state``.
    #[staticmethod]
    fn from_state(py: Python<'_>, state: &Bound<'_, PyTuple>) -> PyResult<Self> {
        let cfg = config(py)?;
        let version_ok = state.len() == 4 && state.get_item(0)?.eq(cfg.version.bind(py))?;
        if !version_ok {
            let text = state.str()?.to_string();
            let head: String = text.chars().take(80).collect();
            return Err(PyValueError::new_err(format!("not a {} snapshot: {head:?}", cfg.version.bind(py))));
        }
        let mut book = Self::empty();
        for item in state.get_item(1)?.try_iter()? {
            let item = item?;
            let (key, ks): (Bound<PyString>, Bound<PyTuple>) = item.extract()?;
            if ks.len() != 5 {
                return Err(PyValueError::new_err("not a KeyState state (5 fields)"));
            }
            let sku = ks.get_item(0)?.downcast_into::<PyString>()?;
            let location = ks.get_item(1)?.downcast_into::<PyString>()?;
            book.key_buf = key.to_str()?.to_owned();
            let i = book.state_at(py, &sku, &location);
            let s = &mut book.states[i];
            s.duplicates = ks.get_item(2)?.extract()?;
            s.pos = Position::from_py(ks.get_item(3)?.downcast()?)?;
            s.act = Activity::from_py(ks.get_item(4)?.downcast()?)?;
        }
        for item in state.get_item(2)?.try_iter()? {
            let (sku, reference, m): (String, String, Bound<PyTuple>) = item?.extract()?;
            let t = match book.transfer_index.get(&sku) {
                Some(&t) => t,
                None => {
                    book.transfers.push((sku.clone(), Refs::default()));
                    book.transfer_index.insert(sku.clone(), book.transfers.len() - 1);
                    book.transfers.len() - 1
                }
            };
            let refs = &mut book.transfers[t].1;
            *refs.get_or_insert(&reference) = Matcher::from_py(&m)?;
        }
        for item in state.get_item(3)?.try_iter()? {
            let (sku, newest, swept): (String, f64, f64) = item?.extract()?;
            book.clocks.push((sku.clone(), newest, swept));
            book.clock_index.insert(sku.clone(), book.clocks.len() - 1);
            if !book.transfer_index.contains_key(&sku) {
                book.transfers.push((sku.clone(), Refs::default()));
                book.transfer_index.insert(sku, book.transfers.len() - 1);
            }
        }
        Ok(book)
    }
}

impl NativeBook {
    fn get(&self, key: &str) -> PyResult<&KeyState> {
        self.index
            .get(key)
            .map(|&i| &*self.states[i])
            .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(key.to_owned()))
    }
}

#[pymodule]
fn _native_book(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(configure, m)?)?;
    m.add_class::<NativeBook>()?;
    m.add_function(wrap_pyfunction!(parse::parse_batch, m)?)?;
    m.add_function(wrap_pyfunction!(parse::parse_fast, m)?)?;
    Ok(())
}
