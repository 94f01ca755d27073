//! Reach, scores, pyramid, channels and metrics on the referral forest:
//! events folded per user in the core, Arrow tables out.

use std::sync::Arc;

use arrow_array::types::Int8Type;
use arrow_array::{
    ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int64Array, Int8Array, StringArray,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::PyRecordBatchReader;
use rayon::prelude::*;
use referralgraph_core::attribution::engine as core_attr;
use referralgraph_core::scores::{self as core_scores, Purchases, ScoreParams, TIER_NAMES};
use referralgraph_core::{program, reach as core_reach, Forest, OnInvalid};

use crate::arrow_io::{depth_array, gather_ids, to_pyarrow, u32_array, user_id_array};
use crate::attribution::{Amounts, EventColumns, EventNames, Face};
use crate::gil::{enter_core, guard};
use crate::graph::{issues_table, PyReferralGraph};

fn counts(v: Vec<u64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(
        v.into_iter().map(|x| x as i64),
    ))
}

/// Per user: user_id, depth, root_id, direct, level_1..level_K,
/// descendants, height (index order).
#[pyfunction]
pub fn reach(
    py: Python<'_>,
    graph: &Bound<'_, PyReferralGraph>,
    max_depth: usize,
) -> PyResult<Py<PyAny>> {
    let f = graph.get().forest.clone();
    let r = {
        let f = f.clone();
        enter_core(py, move || Ok(core_reach::reach(&f, max_depth)))?
    };
    let levels: Vec<ArrayRef> = r.levels.into_iter().map(|l| u32_array(l, None)).collect();
    // direct is level_1: the same immutable buffer, shared.
    let direct = match levels.first() {
        Some(level_1) => level_1.clone(),
        // With the GIL held: on this process's pool (see `core::pool`).
        None => referralgraph_core::pool::run(|| {
            let (offsets, _) = f.children_csr();
            u32_array(offsets.par_windows(2).map(|w| w[1] - w[0]).collect(), None)
        }),
    };
    let names: Vec<String> = (1..=max_depth).map(|k| format!("level_{k}")).collect();
    let mut cols: Vec<(&str, ArrayRef)> = vec![
        ("user_id", user_id_array(&f)),
        ("depth", depth_array(&f)),
        ("root_id", gather_ids(f.ids(), &r.root)),
        ("direct", direct),
    ];
    for (name, level) in names.iter().zip(levels) {
        cols.push((name, level));
    }
    cols.push(("descendants", u32_array(r.descendants, None)));
    cols.push(("height", u32_array(r.height, None)));
    to_pyarrow(py, cols)
}

/// Events read as purchases per user, for amounts of type T.
fn fold<T: Face>(
    py: Python<'_>,
    forest: &Arc<Forest>,
    cols: &EventColumns,
    values: &[T],
    names: &EventNames<'_>,
) -> PyResult<Purchases<T>> {
    let input = cols.input(values, names);
    let f = forest.clone();
    enter_core(py, || core_scores::purchases(&f, &input, OnInvalid::Raise))
}

fn event_names<'a>(user_id: &'a str, amount: &'a str) -> EventNames<'a> {
    EventNames {
        user_id,
        amount,
        ts: None,
        ts_required: false,
        event_id: None,
        event_id_required: false,
    }
}

/// Runs `$body` with `$p` bound to the events' purchases, whatever the
/// amount type (`$T` names it inside).
macro_rules! with_purchases {
    ($py:expr, $forest:expr, $cols:expr, $names:expr, |$p:ident: $T:ident| $body:expr) => {
        match &$cols.amounts {
            Amounts::Int(a) => {
                type $T = i64;
                let $p = fold::<$T>($py, $forest, &$cols, a.values(), $names)?;
                $body
            }
            Amounts::Dec(a, ..) => {
                type $T = i128;
                let $p = fold::<$T>($py, $forest, &$cols, a.values(), $names)?;
                $body
            }
            Amounts::Float(a) => {
                type $T = f64;
                let $p = fold::<$T>($py, $forest, &$cols, a.values(), $names)?;
                $body
            }
        }
    };
}

fn read_events(events: PyRecordBatchReader, names: &EventNames<'_>) -> PyResult<EventColumns> {
    guard(|| EventColumns::read(events, names))
}

/// Per-user scores and tiers; see `ReferralGraph.scores`.
#[pyfunction]
#[pyo3(signature = (graph, events, *, max_depth, weights, unit_scale, core_ppm, advocate_ppm, user_id, amount))]
#[allow(clippy::too_many_arguments)]
pub fn scores(
    py: Python<'_>,
    graph: &Bound<'_, PyReferralGraph>,
    events: PyRecordBatchReader,
    max_depth: usize,
    weights: Vec<f64>,
    unit_scale: bool,
    core_ppm: u32,
    advocate_ppm: u32,
    user_id: &str,
    amount: &str,
) -> PyResult<Py<PyAny>> {
    let names = event_names(user_id, amount);
    let cols = read_events(events, &names)?;
    let forest = &graph.get().forest;
    let (_, scale) = cols.amounts.kind();
    let params = ScoreParams {
        depth: max_depth,
        weights,
        unit: if unit_scale {
            10f64.powi(-(scale as i32))
        } else {
            1.0
        },
        core_ppm,
        advocate_ppm,
    };
    with_purchases!(py, forest, cols, &names, |p: T| {
        let f = forest.clone();
        let s = enter_core(py, move || core_scores::scores(&f, p, &params))?;
        scores_table::<T>(py, forest, s, &cols.amounts)
    })
}

fn scores_table<T: Face>(
    py: Python<'_>,
    f: &Arc<Forest>,
    s: core_scores::Scores<T>,
    amounts: &Amounts,
) -> PyResult<Py<PyAny>> {
    let repeat: ArrayRef = Arc::new(BooleanArray::from_iter(
        s.purchases.orders.iter().map(|&o| Some(o >= 2)),
    ));
    let rate: ArrayRef = Arc::new(Float64Array::from_iter(
        s.direct
            .iter()
            .zip(&s.direct_converted)
            .map(|(&d, &c)| (d > 0).then(|| c as f64 / d as f64)),
    ));
    let tier: ArrayRef = Arc::new(
        DictionaryArray::<Int8Type>::try_new(
            Int8Array::from_iter_values(s.tier.iter().map(|&t| t as i8)),
            Arc::new(StringArray::from(TIER_NAMES.to_vec())),
        )
        .map_err(|e| crate::errors::internal_err(e.to_string()))?,
    );
    to_pyarrow(
        py,
        vec![
            ("user_id", user_id_array(f)),
            ("own_orders", u32_array(s.purchases.orders, None)),
            ("own_amount", T::to_array(s.purchases.amount, amounts)?),
            ("repeat_buyer", repeat),
            ("direct", u32_array(s.direct, None)),
            ("direct_converted", u32_array(s.direct_converted, None)),
            ("conversion_rate", rate),
            ("descendants", u32_array(s.descendants, None)),
            ("downstream_amount", T::to_array(s.downstream, amounts)?),
            ("score", Arc::new(Float64Array::from(s.score)) as ArrayRef),
            ("tier", tier),
        ],
    )
}

/// Per depth: depth, users, and with events buyers and amount.
#[pyfunction]
#[pyo3(signature = (graph, events, *, user_id, amount))]
pub fn pyramid(
    py: Python<'_>,
    graph: &Bound<'_, PyReferralGraph>,
    events: Option<PyRecordBatchReader>,
    user_id: &str,
    amount: &str,
) -> PyResult<Py<PyAny>> {
    let forest = &graph.get().forest;
    let depth_col = |len: usize| -> ArrayRef { u32_array((0..len as u32).collect(), None) };
    let Some(events) = events else {
        let users = program::depth_histogram(forest);
        return to_pyarrow(
            py,
            vec![("depth", depth_col(users.len())), ("users", counts(users))],
        );
    };
    let names = event_names(user_id, amount);
    let cols = read_events(events, &names)?;
    with_purchases!(py, forest, cols, &names, |p: T| {
        let f = forest.clone();
        let pyr = enter_core(py, move || program::pyramid::<T>(&f, Some(&p)))?;
        to_pyarrow(
            py,
            vec![
                ("depth", depth_col(pyr.users.len())),
                ("users", counts(pyr.users)),
                ("buyers", counts(pyr.buyers)),
                ("amount", T::to_array(pyr.amount, &cols.amounts)?),
            ],
        )
    })
}

/// Per root channel: channel, roots, users, buyers, amount_roots,
/// amount_descendants (channels sorted by name, "no channel" last).
#[pyfunction]
#[pyo3(signature = (graph, events, *, user_id, amount))]
pub fn channels(
    py: Python<'_>,
    graph: &Bound<'_, PyReferralGraph>,
    events: PyRecordBatchReader,
    user_id: &str,
    amount: &str,
) -> PyResult<Py<PyAny>> {
    let forest = &graph.get().forest;
    let names = event_names(user_id, amount);
    let cols = read_events(events, &names)?;
    let labels: Vec<Option<String>> = forest
        .channels()
        .map_or(Vec::new(), |c| c.names.iter().cloned().map(Some).collect())
        .into_iter()
        .chain([None])
        .collect();
    with_purchases!(py, forest, cols, &names, |p: T| {
        let f = forest.clone();
        let c = enter_core(py, move || program::channels::<T>(&f, &p))?;
        // Slots with roots, by name (None sorts first; put it last).
        let mut keep: Vec<usize> = (0..labels.len()).filter(|&k| c.roots[k] > 0).collect();
        keep.sort_by(|&a, &b| {
            (labels[a].is_none(), &labels[a]).cmp(&(labels[b].is_none(), &labels[b]))
        });
        let pick_u64 = |v: &[u64]| counts(keep.iter().map(|&k| v[k]).collect());
        let pick_t = |v: &[T]| T::to_array(keep.iter().map(|&k| v[k]).collect(), &cols.amounts);
        to_pyarrow(
            py,
            vec![
                (
                    "channel",
                    Arc::new(StringArray::from_iter(
                        keep.iter().map(|&k| labels[k].clone()),
                    )) as ArrayRef,
                ),
                ("roots", pick_u64(&c.roots)),
                ("users", pick_u64(&c.users)),
                ("buyers", pick_u64(&c.buyers)),
                ("amount_roots", pick_t(&c.amount_roots)?),
                ("amount_descendants", pick_t(&c.amount_descendants)?),
            ],
        )
    })
}

/// Program-wide counts (the Python side takes the ratios).
#[pyfunction]
#[pyo3(signature = (graph, events, *, user_id, amount))]
pub fn metrics<'py>(
    py: Python<'py>,
    graph: &Bound<'py, PyReferralGraph>,
    events: Option<PyRecordBatchReader>,
    user_id: &str,
    amount: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let forest = &graph.get().forest;
    let (m, event_counts) = match events {
        None => {
            let f = forest.clone();
            (
                enter_core(py, move || Ok(program::metrics::<i64>(&f, None)))?,
                None,
            )
        }
        Some(events) => {
            let names = event_names(user_id, amount);
            let cols = read_events(events, &names)?;
            with_purchases!(py, forest, cols, &names, |p: T| {
                let counts = (p.events, p.unknown_buyer_events);
                let f = forest.clone();
                let m = enter_core(py, move || Ok(program::metrics::<T>(&f, Some(&p))))?;
                (m, Some(counts))
            })
        }
    };
    let d = PyDict::new(py);
    d.set_item("users", m.users)?;
    d.set_item("roots", m.roots)?;
    d.set_item("referred", m.referred)?;
    d.set_item("join_pairs", m.join_pairs)?;
    d.set_item("median_join_delay_ns", m.median_join_delay_ns)?;
    d.set_item("depth_histogram", m.depth_histogram)?;
    if let Some((events, unknown)) = event_counts {
        d.set_item("events", events)?;
        d.set_item("unknown_buyer_events", unknown)?;
        d.set_item("buyers", m.buyers)?;
        d.set_item("repeat_buyers", m.repeat_buyers)?;
        d.set_item("buyer_invitees", m.buyer_invitees)?;
    }
    Ok(d)
}

/// The rows of an events table that strict mode would reject (null ids,
/// null / NaN / infinite amounts, null ts), as an issues table.
#[pyfunction]
#[pyo3(signature = (graph, events, *, user_id, amount, ts, ts_required))]
pub fn event_issues(
    py: Python<'_>,
    graph: &Bound<'_, PyReferralGraph>,
    events: PyRecordBatchReader,
    user_id: &str,
    amount: &str,
    ts: Option<&str>,
    ts_required: bool,
) -> PyResult<Py<PyAny>> {
    let names = EventNames {
        ts,
        ts_required,
        ..event_names(user_id, amount)
    };
    let cols = read_events(events, &names)?;
    let forest = &graph.get().forest;
    macro_rules! issues {
        ($values:expr) => {{
            let input = cols.input($values, &names);
            let f = forest.clone();
            enter_core(py, move || {
                core_attr::buyers(&f, &input, OnInvalid::Drop).map(|(_, _, issues)| issues)
            })?
        }};
    }
    let found = match &cols.amounts {
        Amounts::Int(a) => issues!(a.values()),
        Amounts::Dec(a, ..) => issues!(a.values()),
        Amounts::Float(a) => issues!(a.values()),
    };
    issues_table(py, &found)
}
