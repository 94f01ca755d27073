//! Attribution bindings: events in (any integer, decimal128 or float
//! amounts), ledger / totals / stats / issues out, and sessions.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, Int64Type, UInt32Type, UInt8Type};
use arrow_array::{
    Array, ArrayRef, Decimal128Array, Float64Array, Int64Array, UInt32Array, UInt8Array,
};
use arrow_schema::DataType;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3_arrow::{PyArray, PyRecordBatchReader};
use rayon::prelude::*;
use referralgraph_core::attribution::money::decimal_max;
use referralgraph_core::attribution::{self as attr, Money, Policy, Qualify, Session};
use referralgraph_core::{Error, Forest, IdRef, OnInvalid, UserIx};

use crate::arrow_io::{
    gather_ids, gather_slice, int64_values, is_string, to_pyarrow, validity, IdColumn, InputTable,
    Timestamps,
};
use crate::errors::{invalid_err, schema_err, PyCoreErr};
use crate::gil::{detached, enter_core, enter_watched, guard};
use crate::graph::{issues_table, parse_on_invalid, PyReferralGraph};

/// The amount column, normalised: int64, decimal128 (precision, scale) or float64.
pub(crate) enum Amounts {
    Int(Int64Array),
    Dec(Decimal128Array, u8, i8),
    Float(Float64Array),
}

impl Amounts {
    fn from_array(column: &str, arr: &ArrayRef) -> PyResult<Self> {
        let cast = |to: &DataType| {
            arrow_cast::cast(arr, to).map_err(|e| schema_err(format!("column {column}: {e}")))
        };
        match arr.data_type() {
            dt if dt.is_integer() => Ok(Amounts::Int(int64_values(column, arr, "amount")?)),
            DataType::Decimal128(p, s) => Ok(Amounts::Dec(
                arr.as_primitive::<Decimal128Type>().clone(),
                *p,
                *s,
            )),
            DataType::Float16 | DataType::Float32 | DataType::Float64 => Ok(Amounts::Float(
                cast(&DataType::Float64)?
                    .as_primitive::<Float64Type>()
                    .clone(),
            )),
            other => Err(schema_err(format!(
                "column {column} has type {other}; amounts must be integers (minor units), \
                 decimal128 or float64"
            ))),
        }
    }

    pub(crate) fn array(&self) -> ArrayRef {
        match self {
            Amounts::Int(a) => Arc::new(a.clone()),
            Amounts::Dec(a, ..) => Arc::new(a.clone()),
            Amounts::Float(a) => Arc::new(a.clone()),
        }
    }

    /// ("int" | "decimal" | "float", scale) for the policy's thresholds.
    pub(crate) fn kind(&self) -> (&'static str, i8) {
        match self {
            Amounts::Int(_) => ("int", 0),
            Amounts::Dec(_, _, s) => ("decimal", *s),
            Amounts::Float(_) => ("float", 0),
        }
    }
}

/// An amount type's Arrow and Python faces.
pub(crate) trait Face: Money + for<'py> FromPyObject<'py, 'py> {
    fn to_array(v: Vec<Self>, amounts: &Amounts) -> PyResult<ArrayRef>;
    fn to_py<'py>(self, py: Python<'py>, amounts_scale: i8) -> PyResult<Bound<'py, PyAny>>;
    /// An Arrow array of this amount type as values.
    fn from_arrow(a: &ArrayRef) -> PyResult<Vec<Self>>;
}

impl Face for i64 {
    fn from_arrow(a: &ArrayRef) -> PyResult<Vec<Self>> {
        Ok(int64_values("amount", a, "amount")?.values().to_vec())
    }
    fn to_array(v: Vec<Self>, _: &Amounts) -> PyResult<ArrayRef> {
        Ok(Arc::new(Int64Array::from(v)))
    }
    fn to_py<'py>(self, py: Python<'py>, _: i8) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.into_pyobject(py)?.into_any())
    }
}

impl Face for i128 {
    fn from_arrow(a: &ArrayRef) -> PyResult<Vec<Self>> {
        a.as_primitive_opt::<Decimal128Type>()
            .map(|d| d.values().to_vec())
            .ok_or_else(|| schema_err("expected a decimal128 array"))
    }
    fn to_array(v: Vec<Self>, amounts: &Amounts) -> PyResult<ArrayRef> {
        let Amounts::Dec(_, p, s) = amounts else {
            unreachable!("i128 amounts come from decimal columns")
        };
        let max = decimal_max(*p);
        if v.iter().any(|x| x.unsigned_abs() > max as u128) {
            return Err(PyCoreErr(Error::Overflow(format!(
                "a total does not fit decimal128({p}, {s})"
            )))
            .into());
        }
        let arr = Decimal128Array::from(v)
            .with_precision_and_scale(*p, *s)
            .map_err(|e| invalid_err(e.to_string()))?;
        Ok(Arc::new(arr))
    }
    fn to_py<'py>(self, py: Python<'py>, scale: i8) -> PyResult<Bound<'py, PyAny>> {
        let decimal = py.import("decimal")?.getattr("Decimal")?;
        decimal
            .call1((self.into_pyobject(py)?,))?
            .call_method1("scaleb", (-(scale as i32),))
    }
}

impl Face for f64 {
    fn from_arrow(a: &ArrayRef) -> PyResult<Vec<Self>> {
        let f = arrow_cast::cast(a, &DataType::Float64).map_err(|e| schema_err(e.to_string()))?;
        Ok(f.as_primitive::<Float64Type>().values().to_vec())
    }
    fn to_array(v: Vec<Self>, _: &Amounts) -> PyResult<ArrayRef> {
        Ok(Arc::new(Float64Array::from(v)))
    }
    fn to_py<'py>(self, py: Python<'py>, _: i8) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.into_pyobject(py)?.into_any())
    }
}

/// `a[rows]`: a parallel gather for null-free int64, decimal and float
/// columns (the hot case), Arrow's `take` otherwise.
fn take_par(a: &ArrayRef, rows: &[u32], rows_arr: &UInt32Array) -> PyResult<ArrayRef> {
    fn gather<T: Copy + Send + Sync>(v: &[T], rows: &[u32]) -> Vec<T> {
        rows.par_iter().map(|&r| v[r as usize]).collect()
    }
    if a.null_count() == 0 {
        match a.data_type() {
            DataType::Int64 => {
                return Ok(Arc::new(Int64Array::from(gather(
                    a.as_primitive::<Int64Type>().values(),
                    rows,
                ))))
            }
            DataType::Float64 => {
                return Ok(Arc::new(Float64Array::from(gather(
                    a.as_primitive::<Float64Type>().values(),
                    rows,
                ))))
            }
            DataType::Decimal128(p, s) => {
                let v = gather(a.as_primitive::<Decimal128Type>().values(), rows);
                let arr = Decimal128Array::from(v)
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| invalid_err(e.to_string()))?;
                return Ok(Arc::new(arr));
            }
            _ => {}
        }
    }
    arrow_select::take::take(a.as_ref(), rows_arr, None).map_err(|e| invalid_err(e.to_string()))
}

/// Column names of an events table, and whether optional ones were named.
#[derive(Clone, Copy)]
pub(crate) struct EventNames<'a> {
    pub(crate) user_id: &'a str,
    pub(crate) amount: &'a str,
    pub(crate) ts: Option<&'a str>,
    pub(crate) ts_required: bool,
    pub(crate) event_id: Option<&'a str>,
    pub(crate) event_id_required: bool,
}

pub(crate) struct EventColumns {
    buyer: IdColumn,
    buyer_valid: Option<Vec<bool>>,
    pub(crate) amounts: Amounts,
    amount_valid: Option<Vec<bool>>,
    ts: Option<Timestamps>,
    event_id: Option<ArrayRef>,
    event_id_valid: Option<Vec<bool>>,
}

impl EventColumns {
    pub(crate) fn read(data: PyRecordBatchReader, names: &EventNames<'_>) -> PyResult<Self> {
        let t = InputTable::read(data, "events")?;
        let optional = |name: Option<&str>, required: bool| -> PyResult<Option<ArrayRef>> {
            match name {
                None => Ok(None),
                Some(n) if required => t.require(n).map(Some),
                Some(n) => t.column(n),
            }
        };
        let buyer_arr = t.require(names.user_id)?;
        let buyer = IdColumn::from_array(names.user_id, &buyer_arr)?;
        let amount_arr = t.require(names.amount)?;
        let amounts = Amounts::from_array(names.amount, &amount_arr)?;
        let ts = optional(names.ts, names.ts_required)?
            .map(|a| Timestamps::from_array(names.ts.unwrap_or_default(), &a))
            .transpose()?;
        let event_id = optional(names.event_id, names.event_id_required)?;
        if let Some(e) = &event_id {
            let ok = e.data_type().is_integer() || is_string(e.data_type());
            if !ok {
                return Err(schema_err(format!(
                    "column {} has type {}; event ids must be integers or strings",
                    names.event_id.unwrap_or_default(),
                    e.data_type()
                )));
            }
        }
        Ok(EventColumns {
            buyer_valid: buyer.validity(),
            buyer,
            amount_valid: validity(&amounts.array()),
            amounts,
            ts,
            event_id_valid: event_id.as_ref().and_then(|e| validity(e)),
            event_id,
        })
    }

    pub(crate) fn input<'a, T>(
        &'a self,
        values: &'a [T],
        names: &EventNames<'a>,
    ) -> attr::EventInput<'a, T> {
        attr::EventInput {
            buyer: self.buyer.slice(),
            buyer_valid: self.buyer_valid.as_deref(),
            amount: values,
            amount_valid: self.amount_valid.as_deref(),
            ts: self.ts.as_ref().map(|t| (&t.ns[..], t.valid.as_deref())),
            event_id_valid: self.event_id_valid.as_deref(),
            event_id: self
                .event_id
                .as_ref()
                .and_then(|e| e.as_primitive_opt::<Int64Type>())
                .map(|e| &e.values()[..]),
            // Non-int64 event ids are taken by row.
            keep_rows: self
                .event_id
                .as_ref()
                .is_some_and(|e| e.data_type() != &DataType::Int64),
            buyer_col: names.user_id,
            amount_col: names.amount,
            ts_col: names.ts.unwrap_or("ts"),
            event_id_col: names.event_id.unwrap_or("event_id"),
        }
    }
}

type Columns = Vec<(&'static str, ArrayRef)>;

/// The core's ledger and totals as Arrow columns: ids for user indices,
/// event ids and amounts gathered by row, rates by level.
fn arrow_columns<T: Face>(
    forest: &Forest,
    cols: &EventColumns,
    ledger: attr::Ledger<T>,
    totals: attr::Totals<T>,
    rates: &[f64],
    levels: usize,
    row_offset: Option<u64>,
) -> PyResult<(Columns, Vec<(String, ArrayRef)>)> {
    let attr::Ledger {
        event_row,
        beneficiary,
        level,
        credit,
        wide,
    } = ledger;
    // Columns the walk wrote (`wide`) are handed over as they are; the
    // others are gathered by row or user, each core column freed once
    // converted, so the ledger is not held twice over at the peak.
    let ids = forest.ids();
    let rows = UInt32Array::from(event_row);
    let take = |a: &ArrayRef| -> PyResult<ArrayRef> { take_par(a, rows.values(), &rows) };
    let offset = row_offset.unwrap_or(0) as i64;
    let global_rows = || -> ArrayRef {
        Arc::new(Int64Array::from(
            rows.values()
                .par_iter()
                .map(|&r| r as i64 + offset)
                .collect::<Vec<_>>(),
        ))
    };
    let level: ArrayRef = Arc::new(UInt8Array::from(level));
    let credit = T::to_array(credit, &cols.amounts)?;
    let (event_id, buyer_id, beneficiary_id, amount, rate): (ArrayRef, _, _, _, _) = match wide {
        // Written by the walk: the vectors become the Arrow buffers as they are.
        Some(w) => {
            drop(beneficiary);
            (
                match &cols.event_id {
                    Some(e) if e.data_type() != &DataType::Int64 => take(e)?,
                    None if offset != 0 => global_rows(),
                    _ => Arc::new(Int64Array::from(w.event_id)),
                },
                Arc::new(Int64Array::from(w.buyer_id)) as ArrayRef,
                Arc::new(Int64Array::from(w.beneficiary_id)) as ArrayRef,
                T::to_array(w.amount, &cols.amounts)?,
                Arc::new(Float64Array::from(w.rate)) as ArrayRef,
            )
        }
        None => {
            // The buyer's id is the events' own id at that row (sequential
            // reads, where the graph's id of a user index would be a random one).
            let buyer_id = match &cols.buyer {
                IdColumn::Int(a) => take(&(Arc::new(a.clone()) as ArrayRef))?,
                // Straight into utf8, in parallel (arrow's take copies on
                // one thread, and a cast from large utf8 copies again).
                IdColumn::Str(_) => gather_slice(cols.buyer.slice(), rows.values()),
            };
            let event_id = match &cols.event_id {
                Some(e) => take(e)?,
                None => global_rows(),
            };
            let levels = level.as_primitive::<UInt8Type>().values();
            let rate: ArrayRef = Arc::new(Float64Array::from(
                levels
                    .par_iter()
                    .map(|&k| rates[k as usize - 1])
                    .collect::<Vec<_>>(),
            ));
            (
                event_id,
                buyer_id,
                gather_ids(ids, &beneficiary),
                take(&cols.amounts.array())?,
                rate,
            )
        }
    };
    let mut ledger_cols = vec![
        ("event_id", event_id),
        ("buyer_id", buyer_id),
        ("beneficiary_id", beneficiary_id),
        ("level", level),
        ("amount", amount),
        ("rate", rate),
        ("credit", credit),
    ];
    if row_offset.is_some() {
        // A distributed run orders and caps by (ts, global row) later.
        let ts: Vec<i64> = match &cols.ts {
            Some(t) => rows
                .values()
                .par_iter()
                .map(|&r| t.ns[r as usize])
                .collect(),
            None => vec![0; rows.len()],
        };
        ledger_cols.push(("_row", global_rows()));
        ledger_cols.push(("_ts", Arc::new(Int64Array::from(ts))));
    }
    drop(rows);
    let mut tcols: Vec<(String, ArrayRef)> = vec![
        (
            "beneficiary_id".into(),
            gather_ids(ids, &totals.beneficiary),
        ),
        ("credit".into(), T::to_array(totals.credit, &cols.amounts)?),
        (
            "events".into(),
            Arc::new(Int64Array::from_iter_values(
                totals.events.iter().map(|&e| e as i64),
            )),
        ),
    ];
    for (k, col) in totals.by_level.into_iter().enumerate().take(levels) {
        tcols.push((
            format!("credit_level_{}", k + 1),
            T::to_array(col, &cols.amounts)?,
        ));
    }
    Ok((ledger_cols, tcols))
}

/// Reads the Python `Policy` into a core policy for amounts of type T;
/// thresholds are converted by `referralgraph.policy._amounts_for`
/// (decimal scale, rounding toward the safe side).
fn core_policy<T: Face>(
    py: Python<'_>,
    policy: &Bound<'_, PyAny>,
    amounts: &Amounts,
) -> PyResult<Policy<T>> {
    let rates: Vec<f64> = policy.getattr("rates")?.extract()?;
    let window_ns: Option<i64> = policy.getattr("window_ns")?.extract()?;
    let max_events: Option<u32> = policy.getattr("max_events_per_buyer")?.extract()?;
    let compression: bool = policy.getattr("compression")?.extract()?;
    let (kind, scale) = amounts.kind();
    let resolved = py
        .import("referralgraph.policy")?
        .getattr("_amounts_for")?
        .call1((policy, kind, scale))?;
    let (qualify_kind, min_spend, cap): (String, Option<T>, Option<T>) = resolved.extract()?;
    let qualify = match (qualify_kind.as_str(), min_spend) {
        ("purchased", _) => Qualify::Purchased,
        ("min_spend", Some(x)) => Qualify::MinSpend(x),
        _ => Qualify::Always,
    };
    Policy::new(&rates, window_ns, max_events, qualify, compression, cap)
        .map_err(|e| PyCoreErr(e).into())
}

type Tables = (Py<PyAny>, Py<PyAny>, Py<PyAny>, Py<PyAny>);

#[allow(clippy::too_many_arguments)]
fn run<T: Face>(
    py: Python<'_>,
    forest: &Arc<Forest>,
    cols: &EventColumns,
    values: &[T],
    names: &EventNames<'_>,
    policy: &Bound<'_, PyAny>,
    mode: OnInvalid,
    progress: Option<Py<PyAny>>,
    dist: Option<&Bound<'_, PyDict>>,
) -> PyResult<Tables> {
    let policy = core_policy::<T>(py, policy, &cols.amounts)?;
    let mut input = cols.input(values, names);
    // A distributed run orders and caps by (ts, global row) later.
    input.keep_rows |= dist.is_some();
    let f = forest.clone();
    let levels = policy.levels();
    let rates = policy.rates();
    let (global, row_offset) = match dist {
        Some(d) => {
            let (g, off) = distributed_state::<T>(d, &policy)?;
            (g, Some(off))
        }
        None => (attr::Global::default(), None),
    };
    let out = enter_watched(py, progress, |p| {
        attr::attribute_global(&f, &input, &policy, mode, p, global)
    })?;
    let (_, scale) = cols.amounts.kind();
    let attr::Attribution {
        ledger,
        totals,
        stats,
        issues,
    } = out;
    // Gathering ids, amounts and event ids into Arrow columns is a pass
    // over the whole ledger: without the GIL, like the core.
    let (ledger_cols, tcols) = detached(py, || {
        arrow_columns::<T>(forest, cols, ledger, totals, &rates, levels, row_offset)
    })?;
    let ledger = to_pyarrow(py, ledger_cols)?;
    let totals = to_pyarrow(
        py,
        tcols.iter().map(|(n, a)| (n.as_str(), a.clone())).collect(),
    )?;
    let s = stats;
    let stats = PyDict::new(py);
    stats.set_item("events", s.events)?;
    stats.set_item("creditable_events", s.creditable_events)?;
    stats.set_item("unknown_buyer_events", s.unknown_buyer_events)?;
    stats.set_item("ledger_rows", s.ledger_rows)?;
    stats.set_item("credited", s.credited.to_py(py, scale)?)?;
    stats.set_item("forfeited", s.forfeited.to_py(py, scale)?)?;
    stats.set_item("capped_off", s.capped_off.to_py(py, scale)?)?;
    let issues = issues_table(py, &issues)?;
    Ok((ledger, totals, stats.into_any().unbind(), issues))
}

/// The state of a distributed run (see `referralgraph.distributed`):
/// `row_offset` (the batch's first global row), and optionally
/// `first_purchase` (int64 per user index), `timeline` ((offsets, ts,
/// prefix) per user index), `allowed` (bool per row), `skip_cap`.
fn distributed_state<T: Face>(
    d: &Bound<'_, PyDict>,
    policy: &Policy<T>,
) -> PyResult<(attr::Global<T>, u64)> {
    let get = |k: &str| d.get_item(k);
    let row_offset: u64 = get("row_offset")?.map_or(Ok(0), |v| v.extract())?;
    let mut global = attr::Global::default();
    if let Some(v) = get("first_purchase")? {
        global.qualification = Some(attr::Qualification::FirstPurchase(i64s(&v)?));
    }
    if let Some(v) = get("timeline")? {
        let t = v.cast::<PyTuple>()?;
        let offsets = arrow_of(&t.get_item(0)?)?;
        let offsets: Vec<u32> = offsets
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| schema_err("timeline offsets must be uint32"))?
            .values()
            .to_vec();
        let ts = i64s(&t.get_item(1)?)?;
        let prefix = T::from_arrow(&arrow_of(&t.get_item(2)?)?)?;
        let Qualify::MinSpend(min) = policy.qualify else {
            return Err(schema_err("a spend timeline needs a MinSpend policy"));
        };
        global.qualification = Some(attr::Qualification::Timeline {
            offsets,
            ts,
            prefix,
            min,
        });
    }
    if let Some(v) = get("allowed")? {
        let a = arrow_of(&v)?;
        let b = a
            .as_boolean_opt()
            .ok_or_else(|| schema_err("allowed must be a boolean array"))?;
        global.allowed = Some(b.values().iter().collect());
    }
    if let Some(v) = get("skip_cap")? {
        global.skip_cap = v.extract()?;
    }
    Ok((global, row_offset))
}

/// An Arrow array from any object with `__arrow_c_array__`.
fn arrow_of(ob: &Bound<'_, PyAny>) -> PyResult<ArrayRef> {
    Ok(ob.extract::<PyArray>()?.array().clone())
}

fn i64s(ob: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    i64s_of(&arrow_of(ob)?)
}

fn i64s_of(a: &ArrayRef) -> PyResult<Vec<i64>> {
    Ok(a.as_primitive_opt::<Int64Type>()
        .ok_or_else(|| schema_err("expected an int64 array"))?
        .values()
        .to_vec())
}

/// Caps credits sorted by (beneficiary, ts, row); `beneficiary` (int64
/// codes) groups consecutive rows, `credit` is int64 or float64, both
/// Arrow arrays. Returns (capped credits as an Arrow array of the same
/// type, credit cut off).
#[pyfunction]
pub fn cap_sorted<'py>(
    py: Python<'py>,
    beneficiary: PyArray,
    credit: PyArray,
    cap: &Bound<'py, PyAny>,
) -> PyResult<(Py<PyAny>, Bound<'py, PyAny>)> {
    let b = i64s_of(beneficiary.array())?;
    let credit = credit.array();
    let (capped, cut): (ArrayRef, Bound<'py, PyAny>) = if credit.data_type().is_integer() {
        let (c, cut) = cap_run(py, &b, i64::from_arrow(credit)?, cap.extract::<i64>()?)?;
        (
            Arc::new(Int64Array::from(c)),
            cut.into_pyobject(py)?.into_any(),
        )
    } else {
        let (c, cut) = cap_run(py, &b, f64::from_arrow(credit)?, cap.extract::<f64>()?)?;
        (
            Arc::new(Float64Array::from(c)),
            cut.into_pyobject(py)?.into_any(),
        )
    };
    let out = PyArray::from_array_ref(capped).to_pyarrow(py)?.unbind();
    Ok((out, cut))
}

fn cap_run<T: Face>(
    py: Python<'_>,
    b: &[i64],
    mut credit: Vec<T>,
    cap: T,
) -> PyResult<(Vec<T>, T)> {
    if b.len() != credit.len() {
        return Err(schema_err("beneficiary and credit differ in length"));
    }
    let cut = enter_core(py, || attr::cap_sorted(b, &mut credit, cap))?;
    Ok((credit, cut))
}

/// Attributes an events table over a graph; see `ReferralGraph.attribute`.
#[pyfunction]
#[pyo3(signature = (graph, events, policy, *, user_id, amount, ts, ts_required, event_id, event_id_required, on_invalid, progress=None, distributed=None))]
#[allow(clippy::too_many_arguments)]
pub fn attribute(
    py: Python<'_>,
    graph: &Bound<'_, PyReferralGraph>,
    events: PyRecordBatchReader,
    policy: &Bound<'_, PyAny>,
    user_id: &str,
    amount: &str,
    ts: Option<&str>,
    ts_required: bool,
    event_id: Option<&str>,
    event_id_required: bool,
    on_invalid: &str,
    progress: Option<Py<PyAny>>,
    distributed: Option<&Bound<'_, PyDict>>,
) -> PyResult<Tables> {
    let mode = parse_on_invalid(on_invalid)?;
    let names = EventNames {
        user_id,
        amount,
        ts,
        ts_required,
        event_id,
        event_id_required,
    };
    let cols = guard(|| EventColumns::read(events, &names))?;
    let forest = &graph.get().forest;
    // One call per amount type; the arms differ only in T.
    macro_rules! run_as {
        ($t:ty, $a:expr) => {
            run::<$t>(
                py,
                forest,
                &cols,
                $a.values(),
                &names,
                policy,
                mode,
                progress,
                distributed,
            )
        };
    }
    match &cols.amounts {
        Amounts::Int(a) => run_as!(i64, a),
        Amounts::Dec(a, ..) => run_as!(i128, a),
        Amounts::Float(a) => run_as!(f64, a),
    }
}

enum AnySession {
    Int(Session<i64>),
    Dec(Session<i128>, i8),
    Float(Session<f64>),
}

/// A thread-safe attribution session (the service path).
#[pyclass(frozen, name = "Session", module = "referralgraph._core")]
pub struct PySession {
    inner: AnySession,
}

fn user_ix(forest: &Forest, user_id: &Bound<'_, PyAny>) -> PyResult<Option<UserIx>> {
    if let Ok(s) = user_id.cast::<pyo3::types::PyString>() {
        return Ok(forest.lookup(IdRef::Str(s.to_str()?.as_bytes())));
    }
    match user_id.extract::<i64>() {
        Ok(x) => Ok(forest.lookup(IdRef::Int(x))),
        Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "user_id must be an int or a str, not {}",
            user_id.get_type().name()?
        ))),
    }
}

fn credits_to_py<'py, T: Face>(
    py: Python<'py>,
    forest: &Forest,
    credits: Vec<(UserIx, u8, T)>,
    scale: i8,
) -> PyResult<Bound<'py, PyList>> {
    let ids = forest.ids();
    let items = credits
        .into_iter()
        .map(|(b, level, c)| {
            let id: Bound<'py, PyAny> = match ids.get(b) {
                IdRef::Int(x) => x.into_pyobject(py)?.into_any(),
                IdRef::Str(s) => {
                    pyo3::types::PyString::new(py, &String::from_utf8_lossy(s)).into_any()
                }
            };
            PyTuple::new(
                py,
                [id, level.into_pyobject(py)?.into_any(), c.to_py(py, scale)?],
            )
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

#[pymethods]
impl PySession {
    /// Attributes one event and updates the state: a list of
    /// (beneficiary_id, level, credit). `amount` is an int (int64 and
    /// decimal sessions: minor units / unscaled) or a float.
    #[pyo3(signature = (user_id, amount, ts_ns=None))]
    fn attribute<'py>(
        &self,
        py: Python<'py>,
        user_id: &Bound<'py, PyAny>,
        amount: &Bound<'py, PyAny>,
        ts_ns: Option<i64>,
    ) -> PyResult<Bound<'py, PyList>> {
        // `guard`: a panic in the core is a ReferralGraphError here too.
        macro_rules! go {
            ($s:expr, $scale:expr) => {
                guard(|| {
                    let forest = $s.forest();
                    let b = user_ix(forest, user_id)?;
                    let credits = $s
                        .attribute(b, amount.extract()?, ts_ns)
                        .map_err(PyCoreErr)?;
                    credits_to_py(py, forest, credits, $scale)
                })
            };
        }
        match &self.inner {
            AnySession::Int(s) => go!(s, 0),
            AnySession::Dec(s, scale) => go!(s, *scale),
            AnySession::Float(s) => go!(s, 0),
        }
    }

    /// "int", "decimal" or "float", and the decimal scale.
    #[getter]
    fn amount_kind(&self) -> (&'static str, i8) {
        match &self.inner {
            AnySession::Int(_) => ("int", 0),
            AnySession::Dec(_, s) => ("decimal", *s),
            AnySession::Float(_) => ("float", 0),
        }
    }
}

/// A session over `graph`: with `history` (an events table) its state
/// reflects those events; without, amounts are of `amount_kind`.
#[pyfunction]
#[pyo3(signature = (graph, policy, history, *, amount_kind, scale, user_id, amount, ts, ts_required, event_id, event_id_required))]
#[allow(clippy::too_many_arguments)]
pub fn session(
    py: Python<'_>,
    graph: &Bound<'_, PyReferralGraph>,
    policy: &Bound<'_, PyAny>,
    history: Option<PyRecordBatchReader>,
    amount_kind: &str,
    scale: i8,
    user_id: &str,
    amount: &str,
    ts: Option<&str>,
    ts_required: bool,
    event_id: Option<&str>,
    event_id_required: bool,
) -> PyResult<PySession> {
    let forest = graph.get().forest.clone();
    let names = EventNames {
        user_id,
        amount,
        ts,
        ts_required,
        event_id,
        event_id_required,
    };
    let Some(history) = history else {
        let amounts = match amount_kind {
            "int" => Amounts::Int(Int64Array::from(Vec::<i64>::new())),
            "float" => Amounts::Float(Float64Array::from(Vec::<f64>::new())),
            "decimal" => Amounts::Dec(Decimal128Array::from(Vec::<i128>::new()), 38, scale),
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "amount_kind must be \"int\", \"decimal\" or \"float\", not {other:?}"
                )))
            }
        };
        let inner = match amounts {
            Amounts::Int(_) => {
                AnySession::Int(Session::new(forest, core_policy(py, policy, &amounts)?))
            }
            Amounts::Dec(..) => AnySession::Dec(
                Session::new(forest, core_policy(py, policy, &amounts)?),
                scale,
            ),
            Amounts::Float(_) => {
                AnySession::Float(Session::new(forest, core_policy(py, policy, &amounts)?))
            }
        };
        return Ok(PySession { inner });
    };
    let cols = guard(|| EventColumns::read(history, &names))?;
    macro_rules! with_history {
        ($values:expr, $variant:expr) => {{
            let p = core_policy(py, policy, &cols.amounts)?;
            let input = cols.input($values, &names);
            let f = forest.clone();
            $variant(enter_core(py, move || Session::with_history(f, p, &input))?)
        }};
    }
    let inner = match &cols.amounts {
        Amounts::Int(a) => with_history!(a.values(), AnySession::Int),
        Amounts::Dec(a, _, s) => {
            let s = *s;
            with_history!(a.values(), |x| AnySession::Dec(x, s))
        }
        Amounts::Float(a) => with_history!(a.values(), AnySession::Float),
    };
    Ok(PySession { inner })
}
