//! `synthetic_program`: the core generator's vectors as two Arrow tables.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, StringArray};
use arrow_buffer::NullBuffer;
use pyo3::prelude::*;
use referralgraph_core::synthetic::{self, Params, CHANNELS};
use referralgraph_core::NO_CHANNEL;

use crate::arrow_io::{to_pyarrow, ts_array};
use crate::gil::enter_core;

/// (referrals, events) of a synthetic program; see `referralgraph.synthetic`.
#[pyfunction]
#[pyo3(signature = (users, seed, events_per_user, root_share, alpha, attenuation, days))]
#[allow(clippy::too_many_arguments)]
pub fn synthetic_program(
    py: Python<'_>,
    users: usize,
    seed: u64,
    events_per_user: f64,
    root_share: f64,
    alpha: f64,
    attenuation: f64,
    days: i64,
) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    let p = Params {
        users,
        seed,
        events_per_user,
        root_share,
        alpha,
        attenuation,
        days,
    };
    let (r, e) = enter_core(py, move || Ok(synthetic::program(&p)))?;
    let utc: Option<Arc<str>> = Some(Arc::from("UTC"));
    let referrer: ArrayRef = Arc::new(Int64Array::new(
        r.referrer_id.into(),
        Some(NullBuffer::from(r.referrer_valid)),
    ));
    let channel: ArrayRef = Arc::new(StringArray::from_iter(
        r.channel
            .iter()
            .map(|&c| (c != NO_CHANNEL).then(|| CHANNELS[c as usize].0)),
    ));
    let referrals = to_pyarrow(
        py,
        vec![
            ("user_id", Arc::new(Int64Array::from(r.user_id)) as ArrayRef),
            ("referrer_id", referrer),
            ("joined_at", ts_array(r.joined_at, utc.clone())),
            ("channel", channel),
        ],
    )?;
    let events = to_pyarrow(
        py,
        vec![
            (
                "event_id",
                Arc::new(Int64Array::from(e.event_id)) as ArrayRef,
            ),
            ("user_id", Arc::new(Int64Array::from(e.user_id))),
            ("amount", Arc::new(Int64Array::from(e.amount))),
            ("ts", ts_array(e.ts, utc)),
        ],
    )?;
    Ok((referrals, events))
}
