//! The common case of `pipelines.events.parse_event`, without the interpreter.
//!
//! A payload in the common shape (a JSON object of the contract's fields only, strings where
//! strings belong, an integer quantity, timestamps as `YYYY-MM-DDThh:mm:ss[.fff|.ffffff]` with
//! `Z` or `±hh:mm`) becomes the `InventoryEvent` that `parse_event` would build, through the
//! same class. Anything else — every reject, and every unusual but valid spelling — is handed
//! to the Python parser, which alone decides. So this path may decline more than it needs to,
//! never accept differently: `tests/pipelines/test_native_parse.py` checks that every payload it
//! accepts gives an event equal to `parse_event`'s, on simulated and conformance streams and on
//! generated and mutated payloads.

use pyo3::prelude::*;
use pyo3::types::{timezone_utc, PyDateTime, PyDict, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;
use serde::Deserialize;
use std::borrow::Cow;

use crate::{config, Config, ADJUSTMENT};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    occurred_at: Cow<'a, str>,
    #[serde(borrow)]
    sku: Cow<'a, str>,
    #[serde(borrow)]
    location: Cow<'a, str>,
    quantity: i64,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    unit_price: Option<serde_json::Number>,
    #[serde(default)]
    published_at: Option<String>,
}

/// A UTC instant: (year, month, day, hour, minute, second, microsecond).
type Civil = (i32, u8, u8, u8, u8, u8, u32);

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if is_leap(y) {
                29
            } else {
                28
            }
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A timestamp in the common spelling, in UTC; None for anything else (Python judges it).
pub(crate) fn parse_ts(s: &str) -> Option<Civil> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = digits(&b[0..4])? as i64;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if year < 1
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut pos = 19;
    let mut micro = 0u32;
    if b[pos] == b'.' {
        let n = b[pos + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n != 3 && n != 6 {
            return None;
        }
        let v = digits(&b[pos + 1..pos + 1 + n])?;
        micro = if n == 3 { v * 1000 } else { v };
        pos += 1 + n;
    }
    let zone = &b[pos..];
    let offset_min: i64 = match zone {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hh = digits(&[*h1, *h2])? as i64;
            let mm = digits(&[*m1, *m2])? as i64;
            if hh > 23 || mm > 59 {
                return None;
            }
            let v = hh * 60 + mm;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let local = days_from_civil(year, month as i64, day as i64) * 86_400
        + (hour * 3600 + minute * 60 + second) as i64;
    let utc = local - offset_min * 60;
    let (days, secs) = (utc.div_euclid(86_400), utc.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if !(1..=9999).contains(&y) {
        return None;
    }
    Some((
        y as i32,
        m as u8,
        d as u8,
        (secs / 3600) as u8,
        (secs % 3600 / 60) as u8,
        (secs % 60) as u8,
        micro,
    ))
}

/// Python's `str.strip()` leaves something: conservative (an ASCII, non-space first character);
/// a string this declines goes to Python, which decides.
fn surely_not_blank(s: &str) -> bool {
    match s.as_bytes().first() {
        Some(&c) => c.is_ascii() && !matches!(c, b' ' | b'\t'..=b'\r' | 0x1c..=0x1f),
        None => false,
    }
}

fn datetime<'py>(py: Python<'py>, c: Civil) -> PyResult<Bound<'py, PyDateTime>> {
    let utc = timezone_utc(py);
    PyDateTime::new(py, c.0, c.1, c.2, c.3, c.4, c.5, c.6, Some(&utc))
}

/// The event `parse_event` would build from `raw`, or None when Python must judge it.
pub(crate) fn fast_event<'py>(
    py: Python<'py>,
    cfg: &Config,
    raw: &[u8],
) -> PyResult<Option<(Bound<'py, PyString>, Bound<'py, PyAny>)>> {
    let Ok(w) = serde_json::from_slice::<Wire>(raw) else { return Ok(None) };
    let Some(etype) = cfg.etype_by_value.get(w.event_type.as_ref()) else { return Ok(None) };
    let Some(source) = cfg.sources.get(w.source.as_ref()) else { return Ok(None) };
    let q = w.quantity;
    if w.event_id.is_empty()
        || !surely_not_blank(&w.sku)
        || !surely_not_blank(&w.location)
        || w.sku.starts_with('\0')
        || (q < 0 && *etype != ADJUSTMENT)
        || q.unsigned_abs() > cfg.max_abs_quantity
    {
        return Ok(None);
    }
    let Some(occurred) = parse_ts(&w.occurred_at) else { return Ok(None) };
    let published = match &w.published_at {
        None => None,
        Some(text) => match parse_ts(text) {
            None => return Ok(None),
            some => some,
        },
    };
    let price = match &w.unit_price {
        None => None,
        Some(n) => {
            let exact_int = |v: f64| v.abs() <= 9_007_199_254_740_992.0;
            let v = if let Some(i) = n.as_i64() {
                i as f64
            } else if let Some(u) = n.as_u64() {
                u as f64
            } else {
                n.as_f64().unwrap_or(f64::NAN)
            };
            let is_int = n.is_i64() || n.is_u64();
            if !v.is_finite() || (is_int && !exact_int(v)) {
                return Ok(None);
            }
            Some(v)
        }
    };
    let sku = PyString::new(py, &w.sku);
    let args: [Bound<PyAny>; 12] = [
        PyString::new(py, &w.event_id).into_any(),
        cfg.etype_members[*etype].bind(py).clone(),
        datetime(py, occurred)?.into_any(),
        sku.clone().into_any(),
        PyString::new(py, &w.location).into_any(),
        q.into_bound_py_any(py)?,
        source.bind(py).clone(),
        w.reference.as_deref().into_bound_py_any(py)?,
        w.reason.as_deref().into_bound_py_any(py)?,
        price.into_bound_py_any(py)?,
        match published {
            None => py.None().into_bound(py),
            Some(c) => datetime(py, c)?.into_any(),
        },
        PyDict::new(py).into_any(),
    ];
    Ok(Some((sku, cfg.event_class.bind(py).call1(PyTuple::new(py, args)?)?)))
}

fn is_blank(raw: &[u8]) -> bool {
    raw.iter().all(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
}

/// `pipelines.dataflow.parse_batch`: `(route, event)` per event in input order, blank payloads
/// skipped; every payload this path declines goes through `slow(item)` (the Python per-item
/// step: None for a blank payload, else `(route, event or rejection)`).
#[pyfunction]
pub(crate) fn parse_batch<'py>(
    py: Python<'py>,
    items: &Bound<'py, PyList>,
    slow: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let cfg = config(py)?;
    let out = PyList::empty(py);
    for item in items.iter() {
        let payload = if item.is_instance_of::<pyo3::types::PyBytes>() {
            Some(item.clone())
        } else if item.is_instance_of::<PyString>() {
            None
        } else {
            match item.getattr(pyo3::intern!(py, "value")) {
                Ok(v) if v.is_instance_of::<pyo3::types::PyBytes>() => Some(v),
                _ => None,
            }
        };
        if let Some(payload) = payload {
            let raw = payload.downcast::<pyo3::types::PyBytes>()?.as_bytes();
            if is_blank(raw) {
                continue;
            }
            if let Some((sku, event)) = fast_event(py, cfg, raw)? {
                out.append(PyTuple::new(py, [sku.into_any(), event])?)?;
                continue;
            }
        }
        let routed = slow.call1((item,))?;
        if !routed.is_none() {
            out.append(routed)?;
        }
    }
    Ok(out)
}

/// The event the fast path builds from one payload, or None (tests compare it with Python's).
#[pyfunction]
pub(crate) fn parse_fast<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(fast_event(py, config(py)?, raw)?.map(|(_, event)| event))
}
