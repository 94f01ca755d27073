//! `SocialGraph`: edges in, reach / spread / seeds out. All the work is in
//! `referralgraph_core::social`; this file reads columns, maps ids and
//! releases the GIL.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, Float32Array, Float64Array, Int64Array, UInt32Array};
use arrow_schema::DataType;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use pyo3_arrow::{PyArray, PyRecordBatchReader};
use referralgraph_core::social::{
    self as core_social, bfs, hll, EdgeInput, ImmParams, Model, Prob, SocialGraph,
};
use referralgraph_core::{Issue, UserIx};

use crate::arrow_io::{gather_ids, ids_array, to_pyarrow, IdColumn, InputTable};
use crate::errors::{invalid_err, schema_err};
use crate::gil::{enter_core, enter_watched, guard};
use crate::graph::{issues_table, parse_on_invalid, PyReferralGraph};

/// An immutable directed graph with edge probabilities (`Arc` inside).
#[pyclass(frozen, name = "SocialGraph", module = "referralgraph._core")]
pub struct PySocialGraph {
    g: Arc<SocialGraph>,
    issues: Arc<Vec<Issue>>,
}

fn parse_model(model: &str) -> PyResult<Model> {
    match model {
        "ic" => Ok(Model::IndependentCascade),
        "lt" => Ok(Model::LinearThreshold),
        other => Err(PyValueError::new_err(format!(
            "model must be \"ic\" or \"lt\", not {other:?}"
        ))),
    }
}

fn prob<'a>(
    p_value: Option<f64>,
    weighted_cascade: bool,
    column: Option<&'a [f64]>,
    valid: Option<&'a [bool]>,
) -> PyResult<Prob<'a>> {
    match (p_value, weighted_cascade, column) {
        (Some(x), false, None) => Ok(Prob::Constant(x)),
        (None, true, None) => Ok(Prob::WeightedCascade),
        (None, false, Some(c)) => Ok(Prob::Column(c, valid)),
        _ => Err(PyValueError::new_err(
            "give exactly one of p_value, weighted_cascade, p_column",
        )),
    }
}

impl PySocialGraph {
    /// A loaded graph (no rows were left out of it: no issues).
    fn bare(g: SocialGraph) -> Self {
        PySocialGraph {
            g: Arc::new(g),
            issues: Arc::new(Vec::new()),
        }
    }

    /// Node indices of `ids` (an Arrow array); an unknown or null id is an error naming it.
    fn indices(&self, ids: &ArrayRef, what: &str) -> PyResult<Vec<UserIx>> {
        let col = IdColumn::from_array(what, ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if col.kind() != self.g.id_kind() {
            return Err(schema_err(format!(
                "{what} are {} ids but the graph's ids are {}",
                col.kind().name(),
                self.g.id_kind().name()
            )));
        }
        let valid = col.validity();
        let s = col.slice();
        (0..s.len())
            .map(|i| {
                if valid.as_ref().is_some_and(|v| !v[i]) {
                    return Err(invalid_err(format!("{what}, row {i}: null id")));
                }
                self.g.lookup(s.get(i)).ok_or_else(|| {
                    invalid_err(format!(
                        "{what}, row {i}: id {} is not a user of the graph",
                        s.get(i)
                    ))
                })
            })
            .collect()
    }
}

#[pymethods]
impl PySocialGraph {
    /// Builds a graph from an edge table (see `referralgraph.SocialGraph`).
    #[staticmethod]
    #[pyo3(signature = (data, *, src, dst, p_value, weighted_cascade, p_column, on_invalid, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn from_arrow(
        py: Python<'_>,
        data: PyRecordBatchReader,
        src: &str,
        dst: &str,
        p_value: Option<f64>,
        weighted_cascade: bool,
        p_column: Option<&str>,
        on_invalid: &str,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let mode = parse_on_invalid(on_invalid)?;
        let (s_col, d_col, p_col) = guard(|| {
            let t = InputTable::read(data, "edges")?;
            let s = IdColumn::from_array(src, &t.require(src)?)?;
            let d = IdColumn::from_array(dst, &t.require(dst)?)?;
            if s.kind() != d.kind() {
                return Err(schema_err(format!(
                    "column {dst} holds {} ids but column {src} holds {} ids",
                    d.kind().name(),
                    s.kind().name()
                )));
            }
            let p = match p_column {
                None => None,
                Some(name) => {
                    let a = t.require(name)?;
                    if !matches!(
                        a.data_type(),
                        DataType::Float16
                            | DataType::Float32
                            | DataType::Float64
                            | DataType::Decimal128(..)
                    ) && !a.data_type().is_integer()
                    {
                        return Err(schema_err(format!(
                            "column {name} has type {}; probabilities must be numbers",
                            a.data_type()
                        )));
                    }
                    let f = arrow_cast::cast(&a, &DataType::Float64)
                        .map_err(|e| schema_err(format!("column {name}: {e}")))?;
                    Some(f.as_primitive::<Float64Type>().clone())
                }
            };
            Ok((s, d, p))
        })?;
        let s_valid = s_col.validity();
        let d_valid = d_col.validity();
        let p_valid: Option<Vec<bool>> = p_col
            .as_ref()
            .and_then(|a| a.logical_nulls())
            .filter(|n| n.null_count() > 0)
            .map(|n| n.iter().collect());
        let p = prob(
            p_value,
            weighted_cascade,
            p_col.as_ref().map(|a| a.values().as_ref()),
            p_valid.as_deref(),
        )?;
        let input = EdgeInput {
            src: s_col.slice(),
            src_valid: s_valid.as_deref(),
            dst: d_col.slice(),
            dst_valid: d_valid.as_deref(),
            p,
            src_col: src,
            dst_col: dst,
            p_col: p_column.unwrap_or("p"),
        };
        let built = enter_watched(py, progress, |p| {
            SocialGraph::build_watched(&input, mode, p)
        })?;
        Ok(PySocialGraph {
            g: Arc::new(built.graph),
            issues: Arc::new(built.issues),
        })
    }

    /// A referral graph seen as a social graph (referrer -> referee).
    #[staticmethod]
    #[pyo3(signature = (graph, *, p_value, weighted_cascade))]
    fn from_referral(
        py: Python<'_>,
        graph: &Bound<'_, PyReferralGraph>,
        p_value: Option<f64>,
        weighted_cascade: bool,
    ) -> PyResult<Self> {
        let p = prob(p_value, weighted_cascade, None, None)?;
        let f = graph.get().forest.clone();
        let g = enter_core(py, move || SocialGraph::from_forest(&f, p))?;
        Ok(PySocialGraph {
            g: Arc::new(g),
            issues: Arc::new(Vec::new()),
        })
    }

    #[getter]
    fn num_nodes(&self) -> usize {
        self.g.num_nodes()
    }

    #[getter]
    fn num_edges(&self) -> usize {
        self.g.num_edges()
    }

    #[getter]
    fn duplicate_edges(&self) -> u64 {
        self.g.duplicate_edges
    }

    #[getter]
    fn self_loops(&self) -> u64 {
        self.g.self_loops
    }

    #[getter]
    fn id_type(&self) -> &'static str {
        match self.g.id_kind() {
            referralgraph_core::IdKind::Int => "int64",
            referralgraph_core::IdKind::Str => "string",
        }
    }

    /// Saves to a versioned, checksummed file (written atomically).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let g = self.g.clone();
        enter_core(py, move || core_social::persist::save(&g, &path))
    }

    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let g = enter_core(py, move || core_social::persist::load(&path))?;
        Ok(Self::bare(g))
    }

    /// The graph as bytes (the pickle payload): the file format.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let g = self.g.clone();
        let bytes = enter_core(py, move || Ok(core_social::persist::to_bytes(&g)))?;
        Ok(PyBytes::new(py, &bytes))
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        // Immutable `bytes` held by the caller: read without the GIL or a copy.
        let g = enter_core(py, move || core_social::persist::from_bytes(data))?;
        Ok(Self::bare(g))
    }

    /// Heap bytes held by the graph.
    #[getter]
    fn nbytes(&self) -> usize {
        self.g.heap_bytes()
    }

    /// Rows left out in lenient mode: row, id, column, kind, message.
    fn issues(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        issues_table(py, &self.issues)
    }

    /// The ids of all users, in index order.
    fn user_ids(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(PyArray::from_array_ref(ids_array(self.g.ids()))
            .to_pyarrow(py)?
            .unbind())
    }

    /// The cleaned edges: src, dst, p (float32), sorted by source index, then target index.
    fn edges(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let (off, dst, p) = self.g.out_csr();
        let mut src = Vec::with_capacity(dst.len());
        for u in 0..self.g.num_nodes() {
            src.extend(std::iter::repeat_n(
                u as u32,
                (off[u + 1] - off[u]) as usize,
            ));
        }
        to_pyarrow(
            py,
            vec![
                ("src", gather_ids(self.g.ids(), &src)),
                ("dst", gather_ids(self.g.ids(), dst)),
                ("p", Arc::new(Float32Array::from(p.to_vec())) as ArrayRef),
            ],
        )
    }

    /// Per user: user_id, reach_1..reach_k; method "exact", "hll" or "auto".
    /// Returns (table, method used, precision used: None for exact).
    #[pyo3(signature = (k, method, precision, progress=None))]
    fn reach(
        &self,
        py: Python<'_>,
        k: usize,
        method: &str,
        precision: u32,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(Py<PyAny>, &'static str, Option<u32>)> {
        let exact = match method {
            "exact" => true,
            "hll" => false,
            "auto" => bfs::prefer_exact(&self.g, k),
            other => {
                return Err(PyValueError::new_err(format!(
                    "method must be \"exact\", \"hll\" or \"auto\", not {other:?}"
                )))
            }
        };
        if !exact && !(hll::MIN_PRECISION..=hll::MAX_PRECISION).contains(&precision) {
            return Err(PyValueError::new_err(format!(
                "precision must be in [{}, {}], not {precision}",
                hll::MIN_PRECISION,
                hll::MAX_PRECISION
            )));
        }
        // Counters that cannot fit are refused (or, for "auto", made
        // smaller) before any is allocated, not left to the OOM killer.
        let precision = if exact {
            precision
        } else {
            hll::fitting_precision(
                self.g.num_nodes(),
                precision,
                referralgraph_core::sysmem::available_bytes(),
                method == "auto",
            )
            .map_err(|e| PyErr::from(crate::errors::PyCoreErr(e)))?
        };
        let g = self.g.clone();
        let cols: Vec<ArrayRef> = if exact {
            enter_watched(py, progress, move |p| bfs::reach_exact(&g, k, p))?
                .into_iter()
                .map(|c| Arc::new(UInt32Array::from(c)) as ArrayRef)
                .collect()
        } else {
            enter_watched(py, progress, move |p| hll::reach_hll(&g, k, precision, p))?
                .into_iter()
                .map(|c| Arc::new(Float64Array::from(c)) as ArrayRef)
                .collect()
        };
        let names: Vec<String> = (1..=k).map(|j| format!("reach_{j}")).collect();
        let mut out: Vec<(&str, ArrayRef)> = vec![("user_id", ids_array(self.g.ids()))];
        for (name, c) in names.iter().zip(cols) {
            out.push((name, c));
        }
        Ok(if exact {
            (to_pyarrow(py, out)?, "exact", None)
        } else {
            (to_pyarrow(py, out)?, "hll", Some(precision))
        })
    }

    /// Monte Carlo spread of `seeds` (an Arrow array of ids): (mean, stderr).
    #[pyo3(signature = (seeds, *, model, simulations, seed, max_hops, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn spread(
        &self,
        py: Python<'_>,
        seeds: PyArray,
        model: &str,
        simulations: u64,
        seed: u64,
        max_hops: Option<u32>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(f64, f64)> {
        let model = parse_model(model)?;
        let seeds = self.indices(seeds.array(), "seeds")?;
        let g = self.g.clone();
        let r = enter_watched(py, progress, move |p| {
            let scale = match model {
                Model::LinearThreshold => g.lt_scale(),
                Model::IndependentCascade => Vec::new(),
            };
            core_social::spread(&g, &seeds, model, simulations, seed, max_hops, &scale, p)
        })?;
        Ok((r.mean, r.stderr))
    }

    /// IMM seeds: (table rank, user_id, marginal_gain, spread; stats dict).
    #[pyo3(signature = (k, *, model, epsilon, ell, seed, candidates, max_hops, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn seeds<'py>(
        &self,
        py: Python<'py>,
        k: usize,
        model: &str,
        epsilon: f64,
        ell: f64,
        seed: u64,
        candidates: Option<PyArray>,
        max_hops: Option<u32>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(Py<PyAny>, Bound<'py, PyDict>)> {
        let model = parse_model(model)?;
        if epsilon.is_nan() || epsilon <= 0.0 || epsilon >= 1.0 {
            return Err(PyValueError::new_err(format!(
                "epsilon must be in (0, 1), not {epsilon}"
            )));
        }
        if ell.is_nan() || ell <= 0.0 {
            return Err(PyValueError::new_err(format!("ell must be > 0, not {ell}")));
        }
        let candidates = candidates
            .map(|c| self.indices(c.array(), "candidates"))
            .transpose()?;
        let pool = candidates.as_ref().map_or(self.g.num_nodes(), |c| {
            let mut v = c.clone();
            v.sort_unstable();
            v.dedup();
            v.len()
        });
        if k > pool {
            return Err(PyValueError::new_err(format!(
                "k = {k} exceeds the {pool} users that can be seeds"
            )));
        }
        let params = ImmParams {
            k,
            epsilon,
            ell,
            seed,
            model,
            max_hops,
            candidates,
        };
        let g = self.g.clone();
        let r = enter_watched(py, progress, move |p| core_social::imm(&g, &params, p))?;
        let rank: ArrayRef = Arc::new(Int64Array::from_iter_values(1..=r.seeds.len() as i64));
        let table = to_pyarrow(
            py,
            vec![
                ("rank", rank),
                ("user_id", gather_ids(self.g.ids(), &r.seeds)),
                (
                    "marginal_gain",
                    Arc::new(Float64Array::from(r.marginal_gain)),
                ),
                ("spread", Arc::new(Float64Array::from(r.spread))),
            ],
        )?;
        let stats = PyDict::new(py);
        stats.set_item("rr_sets", r.rr_sets)?;
        stats.set_item("sampling_rr_sets", r.sampling_rr_sets)?;
        stats.set_item("rr_bytes", r.rr_bytes)?;
        stats.set_item("lower_bound", r.lower_bound)?;
        stats.set_item("generate_seconds", r.generate_seconds)?;
        stats.set_item("select_seconds", r.select_seconds)?;
        Ok((table, stats))
    }
}

/// A power-law social graph's edges (src, dst), int64 user ids 0..nodes.
#[pyfunction]
pub fn synthetic_social(
    py: Python<'_>,
    nodes: u64,
    edges: u64,
    exponent: f64,
    seed: u64,
) -> PyResult<Py<PyAny>> {
    let (s, d) = enter_core(py, move || {
        Ok(core_social::generate::power_law(
            nodes, edges, exponent, seed,
        ))
    })?;
    to_pyarrow(
        py,
        vec![
            ("src", Arc::new(Int64Array::from(s)) as ArrayRef),
            ("dst", Arc::new(Int64Array::from(d))),
        ],
    )
}
