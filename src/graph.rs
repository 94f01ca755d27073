//! `ReferralGraph`: build (with validation), properties, the user table,
//! id <-> index mapping, persistence, pickling and `extend`.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{ArrayRef, StringArray, UInt64Array};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3_arrow::{PyArray, PyRecordBatchReader};
use referralgraph_core::{
    self as core, Forest, Issue, OnInvalid, ReferralInput, NO_CHANNEL, NO_USER,
};

use crate::arrow_io::{
    depth_array, gather_ids, ids_array, to_pyarrow, ts_array, u32_array, user_id_array, IdColumn,
    InputTable, StrValues, Timestamps,
};
use crate::errors::{internal_err, schema_err};
use crate::gil::{enter_core, enter_watched, guard};

/// An immutable referral forest shared between threads (`Arc` inside).
#[pyclass(frozen, name = "ReferralGraph", module = "referralgraph._core")]
pub struct PyReferralGraph {
    pub(crate) forest: Arc<Forest>,
    pub(crate) issues: Arc<Vec<Issue>>,
}

pub(crate) fn parse_on_invalid(s: &str) -> PyResult<OnInvalid> {
    match s {
        "raise" => Ok(OnInvalid::Raise),
        "drop" => Ok(OnInvalid::Drop),
        other => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "on_invalid must be \"raise\" or \"drop\", not {other:?}"
        ))),
    }
}

/// The referrals table's columns, read and normalised.
struct ReferralColumns {
    user: IdColumn,
    user_valid: Option<Vec<bool>>,
    referrer: IdColumn,
    referrer_valid: Option<Vec<bool>>,
    joined: Option<Timestamps>,
    channel: Option<StrValues>,
    user_col: String,
    referrer_col: String,
}

/// Column names of a referrals table; an optional column named by the
/// caller (`*_required`) must be present.
#[derive(Clone, Copy)]
struct ColumnNames<'a> {
    user_id: &'a str,
    referrer_id: &'a str,
    joined_at: Option<&'a str>,
    joined_at_required: bool,
    channel: Option<&'a str>,
    channel_required: bool,
}

/// Reads a referrals table and builds a graph, or extends `base` with it.
fn ingest(
    py: Python<'_>,
    base: Option<&Arc<Forest>>,
    data: PyRecordBatchReader,
    names: &ColumnNames<'_>,
    on_invalid: &str,
    progress: Option<Py<PyAny>>,
) -> PyResult<PyReferralGraph> {
    let mode = parse_on_invalid(on_invalid)?;
    let cols = guard(|| ReferralColumns::read(data, names))?;
    let base = base.cloned();
    let built = enter_watched(py, progress, |p| match &base {
        None => Forest::build_watched(&cols.input(), mode, p),
        Some(f) => f.extend_watched(&cols.input(), mode, p),
    })?;
    Ok(PyReferralGraph::wrap(built))
}

impl ReferralColumns {
    fn read(data: PyRecordBatchReader, names: &ColumnNames<'_>) -> PyResult<Self> {
        let ColumnNames {
            user_id,
            referrer_id,
            joined_at,
            joined_at_required,
            channel,
            channel_required,
        } = *names;
        let t = InputTable::read(data, "referrals")?;
        let user_arr = t.require(user_id)?;
        let user = if IdColumn::is_all_null_type(&user_arr) {
            IdColumn::null_like(user_arr.len(), core::IdKind::Int)
        } else {
            IdColumn::from_array(user_id, &user_arr)?
        };
        let ref_arr = t.require(referrer_id)?;
        let referrer = if IdColumn::is_all_null_type(&ref_arr) {
            IdColumn::null_like(ref_arr.len(), user.kind())
        } else {
            IdColumn::from_array(referrer_id, &ref_arr)?
        };
        if referrer.kind() != user.kind() {
            return Err(schema_err(format!(
                "column {referrer_id} holds {} ids but column {user_id} holds {} ids",
                referrer.kind().name(),
                user.kind().name()
            )));
        }
        let optional = |name: Option<&str>, required: bool| -> PyResult<Option<ArrayRef>> {
            match name {
                None => Ok(None),
                Some(n) if required => t.require(n).map(Some),
                Some(n) => t.column(n),
            }
        };
        let joined = optional(joined_at, joined_at_required)?
            .map(|a| Timestamps::from_array(joined_at.unwrap_or_default(), &a))
            .transpose()?;
        let channel_vals = optional(channel, channel_required)?
            .map(|a| StrValues::from_array(channel.unwrap_or_default(), &a))
            .transpose()?;
        debug_assert_eq!(t.num_rows(), user_arr.len());
        Ok(ReferralColumns {
            user_valid: user.validity(),
            referrer_valid: referrer.validity(),
            user,
            referrer,
            joined,
            channel: channel_vals,
            user_col: user_id.to_string(),
            referrer_col: referrer_id.to_string(),
        })
    }

    fn input(&self) -> ReferralInput<'_> {
        ReferralInput {
            user: self.user.slice(),
            user_valid: self.user_valid.as_deref(),
            referrer: self.referrer.slice(),
            referrer_valid: self.referrer_valid.as_deref(),
            joined_at: self
                .joined
                .as_ref()
                .map(|j| (&j.ns[..], j.valid.as_deref())),
            channel: self.channel.as_ref().map(|c| c.column()),
            joined_tz: self.joined.as_ref().and_then(|j| j.tz.as_deref()),
            user_col: &self.user_col,
            referrer_col: &self.referrer_col,
        }
    }
}

pub(crate) fn issues_table(py: Python<'_>, issues: &[Issue]) -> PyResult<Py<PyAny>> {
    let rows: ArrayRef = Arc::new(UInt64Array::from_iter_values(issues.iter().map(|i| i.row)));
    let ids: ArrayRef = Arc::new(StringArray::from_iter(
        issues.iter().map(|i| i.id.as_deref()),
    ));
    let cols: ArrayRef = Arc::new(StringArray::from_iter_values(
        issues.iter().map(|i| i.column.as_str()),
    ));
    let kinds: ArrayRef = Arc::new(StringArray::from_iter_values(
        issues.iter().map(|i| i.kind.as_str()),
    ));
    let msgs: ArrayRef = Arc::new(StringArray::from_iter_values(
        issues.iter().map(|i| i.message.as_str()),
    ));
    to_pyarrow(
        py,
        vec![
            ("row", rows),
            ("id", ids),
            ("column", cols),
            ("kind", kinds),
            ("message", msgs),
        ],
    )
}

impl PyReferralGraph {
    fn wrap(built: core::Built) -> Self {
        PyReferralGraph {
            forest: Arc::new(built.forest),
            issues: Arc::new(built.issues),
        }
    }

    fn bare(forest: Forest) -> Self {
        PyReferralGraph {
            forest: Arc::new(forest),
            issues: Arc::new(Vec::new()),
        }
    }
}

#[pymethods]
impl PyReferralGraph {
    /// Builds and validates a graph from a referrals table (see `referralgraph.ReferralGraph`).
    #[staticmethod]
    #[pyo3(signature = (data, *, user_id, referrer_id, joined_at, joined_at_required, channel, channel_required, on_invalid, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn from_arrow(
        py: Python<'_>,
        data: PyRecordBatchReader,
        user_id: &str,
        referrer_id: &str,
        joined_at: Option<&str>,
        joined_at_required: bool,
        channel: Option<&str>,
        channel_required: bool,
        on_invalid: &str,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let names = ColumnNames {
            user_id,
            referrer_id,
            joined_at,
            joined_at_required,
            channel,
            channel_required,
        };
        ingest(py, None, data, &names, on_invalid, progress)
    }

    /// A new graph with more users; this one is unchanged.
    #[pyo3(signature = (data, *, user_id, referrer_id, joined_at, joined_at_required, channel, channel_required, on_invalid, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn extend(
        &self,
        py: Python<'_>,
        data: PyRecordBatchReader,
        user_id: &str,
        referrer_id: &str,
        joined_at: Option<&str>,
        joined_at_required: bool,
        channel: Option<&str>,
        channel_required: bool,
        on_invalid: &str,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let names = ColumnNames {
            user_id,
            referrer_id,
            joined_at,
            joined_at_required,
            channel,
            channel_required,
        };
        ingest(py, Some(&self.forest), data, &names, on_invalid, progress)
    }

    #[getter]
    fn num_users(&self) -> usize {
        self.forest.num_users()
    }

    #[getter]
    fn num_roots(&self) -> usize {
        self.forest.num_roots()
    }

    #[getter]
    fn max_depth(&self) -> u32 {
        self.forest.max_depth()
    }

    #[getter]
    fn id_type(&self) -> &'static str {
        match self.forest.id_kind() {
            core::IdKind::Int => "int64",
            core::IdKind::Str => "string",
        }
    }

    #[getter]
    fn has_joined_at(&self) -> bool {
        self.forest.joined_at().is_some()
    }

    /// Heap bytes held by the graph.
    #[getter]
    fn nbytes(&self) -> usize {
        self.forest.heap_bytes()
    }

    /// Problems dropped in lenient mode: row, id, column, kind, message.
    fn issues(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        issues_table(py, &self.issues)
    }

    /// One row per user in index order: user_id, referrer_id, depth, joined_at, channel.
    fn users(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let f = &self.forest;
        let mut cols: Vec<(&str, ArrayRef)> = vec![
            ("user_id", user_id_array(f)),
            ("referrer_id", gather_ids(f.ids(), f.parent())),
            ("depth", depth_array(f)),
        ];
        if let Some(j) = f.joined_at() {
            cols.push((
                "joined_at",
                ts_array(j.to_vec(), f.joined_tz().map(Arc::from)),
            ));
        }
        if let Some(c) = f.channels() {
            let names: ArrayRef =
                Arc::new(StringArray::from_iter(c.codes.iter().map(|&k| {
                    (k != NO_CHANNEL).then(|| c.names[k as usize].as_str())
                })));
            cols.push(("channel", names));
        }
        to_pyarrow(py, cols)
    }

    /// The ids of all users, in index order (position = user index).
    fn user_ids(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let arr = ids_array(self.forest.ids());
        Ok(PyArray::from_array_ref(arr).to_pyarrow(py)?.unbind())
    }

    /// The user index of each id (null where the id is unknown).
    fn index_of(&self, py: Python<'_>, ids: PyArray) -> PyResult<Py<PyAny>> {
        let arr = ids.array().clone();
        let col = IdColumn::from_array("ids", &arr)?;
        if col.kind() != self.forest.id_kind() {
            return Err(schema_err(format!(
                "ids are {} but the graph's ids are {}",
                col.kind().name(),
                self.forest.id_kind().name()
            )));
        }
        let valid = col.validity();
        let forest = self.forest.clone();
        let out = enter_core(py, || {
            let s = col.slice();
            Ok((0..s.len())
                .map(|i| {
                    if valid.as_ref().is_some_and(|v| !v[i]) {
                        NO_USER
                    } else {
                        forest.lookup(s.get(i)).unwrap_or(NO_USER)
                    }
                })
                .collect::<Vec<u32>>())
        })?;
        Ok(PyArray::from_array_ref(u32_array(out, Some(NO_USER)))
            .to_pyarrow(py)?
            .unbind())
    }

    /// Saves to a versioned, checksummed file (written atomically).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let forest = self.forest.clone();
        enter_core(py, move || core::persist::save(&forest, &path))
    }

    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let forest = enter_core(py, move || core::persist::load(&path))?;
        Ok(Self::bare(forest))
    }

    /// The graph as bytes (the pickle payload): the file format.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let forest = self.forest.clone();
        let bytes = enter_core(py, move || Ok(core::persist::to_bytes(&forest)))?;
        Ok(PyBytes::new(py, &bytes))
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        // `bytes` are immutable and the caller holds them for the call, so
        // the buffer can be read without the GIL and without a copy.
        let forest = enter_core(py, move || core::persist::from_bytes(data))?;
        Ok(Self::bare(forest))
    }
}

/// Raises inside the core, to test that panics become `ReferralGraphError`.
#[pyfunction]
pub fn _panic_for_test(py: Python<'_>) -> PyResult<()> {
    enter_core(py, || -> core::Result<()> {
        panic!("deliberate panic for a test")
    })
    .map_err(|e| internal_err(e.to_string()))
}
