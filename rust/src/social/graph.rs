//! A directed social graph for reach and influence: influence flows from
//! `src` to `dst` with probability `p` per edge.
//!
//! Users get dense `u32` indices in order of first appearance (a row's
//! `src`, then its `dst`). Edges are held twice, in CSR: out-edges (for
//! forward reach and cascades) and in-edges (for reverse-reachable sets),
//! each list sorted by neighbour index. Building is O(m) counting sorts
//! plus a per-list sort: a self-loop is dropped (a user cannot influence
//! themselves), duplicate edges are merged into one whose `p` is the
//! largest of theirs (so the result does not depend on row order), and both
//! are counted. `"weighted_cascade"` sets p(u, v) = 1 / in-degree(v) after
//! that clean-up.

use rayon::prelude::*;

use crate::error::{Error, Issue, IssueKind, OnInvalid, Result};
use crate::forest::Forest;
use crate::ids::{IdIndex, IdKind, IdRef, IdSlice, IdValues, UserIx, NO_USER};
use crate::progress::Progress;

/// How edge probabilities are given.
#[derive(Debug, Clone, Copy)]
pub enum Prob<'a> {
    /// The same p on every edge.
    Constant(f64),
    /// p(u, v) = 1 / in-degree(v) (Kempe, Kleinberg, Tardos 2003).
    WeightedCascade,
    /// One p per row, with its validity (None: all valid).
    Column(&'a [f64], Option<&'a [bool]>),
}

/// An edge table's columns, as read by the bindings.
#[derive(Debug, Clone, Copy)]
pub struct EdgeInput<'a> {
    pub src: IdSlice<'a>,
    pub src_valid: Option<&'a [bool]>,
    pub dst: IdSlice<'a>,
    pub dst_valid: Option<&'a [bool]>,
    pub p: Prob<'a>,
    pub src_col: &'a str,
    pub dst_col: &'a str,
    pub p_col: &'a str,
}

/// An immutable directed graph with per-edge probabilities.
#[derive(Debug, Clone)]
pub struct SocialGraph {
    pub(crate) ids: IdValues,
    pub(crate) index: IdIndex,
    pub(crate) out_off: Vec<u64>,
    pub(crate) out_dst: Vec<UserIx>,
    pub(crate) out_p: Vec<f32>,
    in_off: Vec<u64>,
    in_src: Vec<UserIx>,
    in_p: Vec<f32>,
    /// Per user: all in-edges carry the same p (weighted cascade, constant p).
    in_uniform: Vec<bool>,
    /// Per user: all out-edges carry the same p (constant p).
    out_uniform: Vec<bool>,
    /// Rows merged into an earlier edge between the same two users.
    pub duplicate_edges: u64,
    /// Rows with src == dst, left out.
    pub self_loops: u64,
}

/// A freshly built graph and the rows lenient mode left out.
#[derive(Debug)]
pub struct BuiltSocial {
    pub graph: SocialGraph,
    pub issues: Vec<Issue>,
}

/// Passes of a build that report progress (see `build_watched`).
pub const SOCIAL_BUILD_PASSES: u64 = 3;
/// Rows read between progress reports.
const PROGRESS_ROWS: usize = 1 << 16;

impl SocialGraph {
    /// Builds a graph from an edge table.
    ///
    /// Errors (strict mode): `Invalid` for a null id, or a null, NaN or
    /// out-of-[0, 1] probability (in `Drop` mode such rows are left out and
    /// reported); `Policy` for a constant p outside [0, 1].
    pub fn build(input: &EdgeInput<'_>, on_invalid: OnInvalid) -> Result<BuiltSocial> {
        Self::build_watched(input, on_invalid, &Progress::new())
    }

    /// [`SocialGraph::build`], reporting to `progress`: one unit per row
    /// in each of [`SOCIAL_BUILD_PASSES`] passes (reading the rows, sorting
    /// the edges out of each node, and into it); stops once cancelled.
    pub fn build_watched(
        input: &EdgeInput<'_>,
        on_invalid: OnInvalid,
        progress: &Progress,
    ) -> Result<BuiltSocial> {
        if let Prob::Constant(p) = input.p {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::Policy(format!("p must be in [0, 1], not {p}")));
            }
        }
        let rows = input.src.len();
        progress.start(SOCIAL_BUILD_PASSES * rows as u64);
        let mut issues = Vec::new();
        let mut ids = IdValues::new(input.src.kind());
        let range = int_range(&[input.src, input.dst]);
        let mut index = IdIndex::for_ids(input.src.kind(), rows.max(1), range);
        let mut src = Vec::with_capacity(rows);
        let mut dst = Vec::with_capacity(rows);
        let mut prob = Vec::with_capacity(rows);
        let mut self_loops = 0u64;
        for row in 0..rows {
            if row % PROGRESS_ROWS == PROGRESS_ROWS - 1 {
                progress.advance(PROGRESS_ROWS as u64)?;
            }
            let s_ok = input.src_valid.is_none_or(|v| v[row]);
            let d_ok = input.dst_valid.is_none_or(|v| v[row]);
            if !s_ok || !d_ok {
                let column = if s_ok { input.dst_col } else { input.src_col };
                reject(
                    column,
                    row,
                    "null id".into(),
                    IssueKind::NullId,
                    on_invalid,
                    &mut issues,
                )?;
                continue;
            }
            let p = match input.p {
                Prob::Column(v, valid) => {
                    let x = v[row];
                    if valid.is_some_and(|m| !m[row]) {
                        let kind = IssueKind::NullProbability;
                        reject(
                            input.p_col,
                            row,
                            "null p".into(),
                            kind,
                            on_invalid,
                            &mut issues,
                        )?;
                        continue;
                    }
                    if !(0.0..=1.0).contains(&x) {
                        let why = format!("p = {x} is not a probability in [0, 1]");
                        let kind = IssueKind::InvalidProbability;
                        reject(input.p_col, row, why, kind, on_invalid, &mut issues)?;
                        continue;
                    }
                    x
                }
                Prob::Constant(x) => x,
                Prob::WeightedCascade => 0.0,
            };
            let s = intern(&mut ids, &mut index, input.src.get(row));
            let d = intern(&mut ids, &mut index, input.dst.get(row));
            if s == d {
                self_loops += 1;
                continue;
            }
            src.push(s);
            dst.push(d);
            prob.push(p as f32);
        }
        progress.advance((rows % PROGRESS_ROWS) as u64)?;
        let n = ids.len();
        let (out_off, out_dst, out_p, duplicate_edges) = csr_dedup(n, &src, &dst, &prob);
        drop((src, dst, prob));
        progress.advance(rows as u64)?;
        let mut g = SocialGraph::from_out_csr(ids, index, out_off, out_dst, out_p);
        progress.advance(rows as u64)?;
        g.duplicate_edges = duplicate_edges;
        g.self_loops = self_loops;
        if matches!(input.p, Prob::WeightedCascade) {
            g.set_weighted_cascade();
            g = g.with_uniform_flags();
        }
        Ok(BuiltSocial { graph: g, issues })
    }

    /// A referral forest as a social graph: influence flows from referrer to
    /// referee, with a constant p or weighted cascade (which gives every
    /// referee p = 1: they have one referrer).
    pub fn from_forest(forest: &Forest, p: Prob<'_>) -> Result<SocialGraph> {
        let pc = match p {
            Prob::Constant(x) if (0.0..=1.0).contains(&x) => x as f32,
            Prob::Constant(x) => {
                return Err(Error::Policy(format!("p must be in [0, 1], not {x}")))
            }
            Prob::WeightedCascade => 1.0,
            Prob::Column(..) => {
                return Err(Error::Policy(
                    "a referral graph has no probability column".into(),
                ))
            }
        };
        let (off, children) = forest.children_csr();
        let out_off: Vec<u64> = off.iter().map(|&o| o as u64).collect();
        let out_dst = children.to_vec();
        let out_p = vec![pc; out_dst.len()];
        Ok(SocialGraph::from_out_csr(
            forest.ids.clone(),
            forest.index.clone(),
            out_off,
            out_dst,
            out_p,
        ))
    }

    /// Assembles a graph from its stored parts (see `social::persist`),
    /// checking what every algorithm relies on: out-lists that cover the
    /// edges in order, each sorted without repeats or self-loops, ends that
    /// are users, probabilities in [0, 1]. The in-edges are rebuilt.
    pub(crate) fn from_parts(
        ids: IdValues,
        index: IdIndex,
        out_off: Vec<u64>,
        out_dst: Vec<UserIx>,
        out_p: Vec<f32>,
        duplicate_edges: u64,
        self_loops: u64,
    ) -> std::result::Result<SocialGraph, String> {
        let n = ids.len();
        crate::ids::check_parts(&ids, &index, n)?;
        let m = out_dst.len();
        if out_off.len() != n + 1 || out_off[0] != 0 || out_off[n] != m as u64 {
            return Err("edge offsets do not cover the edges".into());
        }
        if out_p.len() != m {
            return Err("one probability per edge expected".into());
        }
        if !crate::par::all(n, |u| out_off[u] <= out_off[u + 1]) {
            return Err("edge offsets decrease".into());
        }
        let list_ok = |u: usize| {
            let l = &out_dst[out_off[u] as usize..out_off[u + 1] as usize];
            l.iter().all(|&v| (v as usize) < n && v as usize != u)
                && l.windows(2).all(|w| w[0] < w[1])
        };
        if !crate::par::all(n, list_ok) {
            return Err(
                "an edge list is unsorted, repeats an edge, loops or leaves the graph".into(),
            );
        }
        if !crate::par::all(m, |e| (0.0..=1.0).contains(&out_p[e])) {
            return Err("an edge probability is outside [0, 1]".into());
        }
        let mut g = SocialGraph::from_out_csr(ids, index, out_off, out_dst, out_p);
        g.duplicate_edges = duplicate_edges;
        g.self_loops = self_loops;
        Ok(g)
    }

    fn from_out_csr(
        ids: IdValues,
        index: IdIndex,
        out_off: Vec<u64>,
        out_dst: Vec<UserIx>,
        out_p: Vec<f32>,
    ) -> SocialGraph {
        let n = ids.len();
        let (in_off, in_src, in_p) = transpose(n, &out_off, &out_dst, &out_p);
        SocialGraph {
            ids,
            index,
            out_off,
            out_dst,
            out_p,
            in_off,
            in_src,
            in_uniform: Vec::new(),
            out_uniform: Vec::new(),
            in_p,
            duplicate_edges: 0,
            self_loops: 0,
        }
        .with_uniform_flags()
    }

    fn with_uniform_flags(mut self) -> Self {
        let same = |p: &[f32]| p.iter().all(|&x| x == p[0]);
        let n = self.num_nodes() as UserIx;
        self.in_uniform = (0..n)
            .into_par_iter()
            .map(|v| same(self.inn(v).1))
            .collect();
        self.out_uniform = (0..n)
            .into_par_iter()
            .map(|u| same(self.out(u).1))
            .collect();
        self
    }

    fn set_weighted_cascade(&mut self) {
        let n = self.num_nodes();
        let inv: Vec<f32> = (0..n)
            .map(|v| {
                let d = self.in_off[v + 1] - self.in_off[v];
                if d == 0 {
                    0.0
                } else {
                    (1.0 / d as f64) as f32
                }
            })
            .collect();
        self.out_p
            .par_iter_mut()
            .zip(self.out_dst.par_iter())
            .for_each(|(p, &d)| *p = inv[d as usize]);
        let in_off = &self.in_off;
        self.in_p
            .par_chunks_mut(1 << 16)
            .enumerate()
            .for_each(|(c, chunk)| {
                let start = c << 16;
                // The in-list of v is a contiguous run: find v for the chunk's first edge.
                let mut v = in_off.partition_point(|&o| o <= start as u64) - 1;
                for (i, p) in chunk.iter_mut().enumerate() {
                    while in_off[v + 1] <= (start + i) as u64 {
                        v += 1;
                    }
                    *p = inv[v];
                }
            });
    }

    pub fn num_nodes(&self) -> usize {
        self.ids.len()
    }
    pub fn num_edges(&self) -> usize {
        self.out_dst.len()
    }
    pub fn id_kind(&self) -> IdKind {
        self.ids.kind()
    }
    pub fn ids(&self) -> &IdValues {
        &self.ids
    }
    /// The node index of an external id.
    pub fn lookup(&self, id: IdRef<'_>) -> Option<UserIx> {
        self.index.get(id, |v| self.ids.get(v))
    }
    /// Out-neighbours of `u` and their probabilities.
    #[inline]
    pub fn out(&self, u: UserIx) -> (&[UserIx], &[f32]) {
        let (a, b) = (
            self.out_off[u as usize] as usize,
            self.out_off[u as usize + 1] as usize,
        );
        (&self.out_dst[a..b], &self.out_p[a..b])
    }
    /// In-neighbours of `v` and their probabilities.
    #[inline]
    pub fn inn(&self, v: UserIx) -> (&[UserIx], &[f32]) {
        let (a, b) = (
            self.in_off[v as usize] as usize,
            self.in_off[v as usize + 1] as usize,
        );
        (&self.in_src[a..b], &self.in_p[a..b])
    }
    /// Whether all of `v`'s in-edges carry the same p.
    #[inline]
    pub fn in_uniform(&self, v: UserIx) -> bool {
        self.in_uniform[v as usize]
    }
    /// Whether all of `u`'s out-edges carry the same p.
    #[inline]
    pub fn out_uniform(&self, u: UserIx) -> bool {
        self.out_uniform[u as usize]
    }
    pub fn out_degree(&self, u: UserIx) -> usize {
        (self.out_off[u as usize + 1] - self.out_off[u as usize]) as usize
    }
    pub fn in_degree(&self, v: UserIx) -> usize {
        (self.in_off[v as usize + 1] - self.in_off[v as usize]) as usize
    }
    /// All edges in CSR order: (offsets, dst, p).
    pub fn out_csr(&self) -> (&[u64], &[UserIx], &[f32]) {
        (&self.out_off, &self.out_dst, &self.out_p)
    }

    /// Linear-threshold weights: per node, the factor that scales its
    /// in-weights so they sum to at most 1 (1 where they already do).
    pub fn lt_scale(&self) -> Vec<f32> {
        (0..self.num_nodes())
            .into_par_iter()
            .map(|v| {
                let s: f64 = self.inn(v as UserIx).1.iter().map(|&p| p as f64).sum();
                if s > 1.0 {
                    (1.0 / s) as f32
                } else {
                    1.0
                }
            })
            .collect()
    }

    /// Heap bytes held by the graph.
    pub fn heap_bytes(&self) -> usize {
        self.ids.heap_bytes()
            + self.index.heap_bytes()
            + 8 * (self.out_off.len() + self.in_off.len())
            + 8 * (self.out_dst.len() + self.in_src.len())
            + self.in_uniform.len()
            + self.out_uniform.len()
    }
}

/// Raises a bad row in strict mode, records it in lenient mode.
fn reject(
    column: &str,
    row: usize,
    reason: String,
    kind: IssueKind,
    mode: OnInvalid,
    issues: &mut Vec<Issue>,
) -> Result<()> {
    match mode {
        OnInvalid::Raise => Err(Error::Invalid {
            column: column.to_string(),
            row: Some(row as u64),
            id: None,
            reason,
        }),
        OnInvalid::Drop => {
            issues.push(Issue {
                row: row as u64,
                id: None,
                column: column.to_string(),
                kind,
                message: format!("column {column}, row {row}: {reason}"),
            });
            Ok(())
        }
    }
}

/// The index of `id`, numbering it next when it is new.
fn intern(ids: &mut IdValues, index: &mut IdIndex, id: IdRef<'_>) -> UserIx {
    if let Some(ix) = index.get(id, |v| ids.get(v)) {
        return ix;
    }
    let ix = ids.len() as UserIx;
    ids.push(id);
    let ids_ref = &*ids;
    index.insert(id, ix, |v| ids_ref.get(v));
    ix
}

/// (min, max) over integer id columns, for a direct id table.
fn int_range(cols: &[IdSlice<'_>]) -> Option<(i64, i64)> {
    let mut r: Option<(i64, i64)> = None;
    for c in cols {
        if let IdSlice::Int(v) = c {
            if let (Some(&lo), Some(&hi)) = (v.iter().min(), v.iter().max()) {
                r = Some(r.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
            }
        }
    }
    r
}

/// CSR offsets of n lists from the list of every item (a counting sort's first pass).
pub(crate) fn offsets_of(n: usize, keys: impl Iterator<Item = usize>) -> Vec<u64> {
    let mut off = vec![0u64; n + 1];
    for k in keys {
        off[k + 1] += 1;
    }
    for i in 0..n {
        off[i + 1] += off[i];
    }
    off
}

/// Out-CSR with each list sorted by target and duplicates merged (largest
/// p kept); returns (offsets, targets, p, merged rows).
fn csr_dedup(n: usize, src: &[u32], dst: &[u32], p: &[f32]) -> (Vec<u64>, Vec<u32>, Vec<f32>, u64) {
    let off = offsets_of(n, src.iter().map(|&s| s as usize));
    let mut pos = off.clone();
    let mut pairs = vec![(0u32, 0f32); src.len()];
    for i in 0..src.len() {
        let s = src[i] as usize;
        pairs[pos[s] as usize] = (dst[i], p[i]);
        pos[s] += 1;
    }
    // Sort each list by target, then by p descending so the first of a run is the largest.
    let mut lists: Vec<&mut [(u32, f32)]> = Vec::with_capacity(n);
    let mut rest: &mut [(u32, f32)] = &mut pairs;
    for u in 0..n {
        let (a, b) = rest.split_at_mut((off[u + 1] - off[u]) as usize);
        lists.push(a);
        rest = b;
    }
    lists.par_iter_mut().for_each(|l| {
        l.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
    });
    drop(lists);
    // The graph's adjacency: read at random by every cascade and BFS.
    let (mut new_off, mut out_dst, mut out_p) = crate::alloc::huge_tables(|| {
        (
            vec![0u64; n + 1],
            Vec::with_capacity(pairs.len()),
            Vec::with_capacity(pairs.len()),
        )
    });
    for u in 0..n {
        let mut last = NO_USER;
        for &(d, q) in &pairs[off[u] as usize..off[u + 1] as usize] {
            if d != last {
                out_dst.push(d);
                out_p.push(q);
                last = d;
            }
        }
        new_off[u + 1] = out_dst.len() as u64;
    }
    let merged = (pairs.len() - out_dst.len()) as u64;
    (new_off, out_dst, out_p, merged)
}

/// The in-CSR of an out-CSR; each in-list comes out sorted by source.
fn transpose(n: usize, off: &[u64], dst: &[u32], p: &[f32]) -> (Vec<u64>, Vec<u32>, Vec<f32>) {
    let in_off = crate::alloc::huge_tables(|| offsets_of(n, dst.iter().map(|&d| d as usize)));
    let mut pos = in_off.clone();
    // Read at random by reverse-reachable sets and linear thresholds.
    let (mut src, mut q) =
        crate::alloc::huge_tables(|| (vec![0u32; dst.len()], vec![0f32; dst.len()]));
    for u in 0..n {
        for e in off[u] as usize..off[u + 1] as usize {
            let d = dst[e] as usize;
            src[pos[d] as usize] = u as u32;
            q[pos[d] as usize] = p[e];
            pos[d] += 1;
        }
    }
    (in_off, src, q)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A graph from integer edges (src, dst) with constant p.
    pub(crate) fn graph(edges: &[(i64, i64)], p: Prob<'_>) -> SocialGraph {
        let s: Vec<i64> = edges.iter().map(|e| e.0).collect();
        let d: Vec<i64> = edges.iter().map(|e| e.1).collect();
        let input = EdgeInput {
            src: IdSlice::Int(&s),
            src_valid: None,
            dst: IdSlice::Int(&d),
            dst_valid: None,
            p,
            src_col: "src",
            dst_col: "dst",
            p_col: "p",
        };
        SocialGraph::build(&input, OnInvalid::Raise).unwrap().graph
    }

    #[test]
    fn duplicates_merge_and_self_loops_drop() {
        let g = graph(
            &[(1, 2), (1, 2), (2, 2), (2, 3), (3, 1)],
            Prob::Constant(0.5),
        );
        assert_eq!((g.num_nodes(), g.num_edges()), (3, 3));
        assert_eq!((g.duplicate_edges, g.self_loops), (1, 1));
        let one = g.lookup(IdRef::Int(1)).unwrap();
        let three = g.lookup(IdRef::Int(3)).unwrap();
        assert_eq!(g.inn(one).0, &[three]);
    }

    #[test]
    fn weighted_cascade_is_one_over_in_degree() {
        let g = graph(&[(1, 3), (2, 3), (4, 3), (3, 1)], Prob::WeightedCascade);
        let three = g.lookup(IdRef::Int(3)).unwrap();
        assert!(g.inn(three).1.iter().all(|&p| (p - 1.0 / 3.0).abs() < 1e-7));
        let (dst, p) = g.out(g.lookup(IdRef::Int(3)).unwrap());
        assert_eq!(dst.len(), 1);
        assert_eq!(p[0], 1.0);
        // Out- and in-lists hold the same probabilities.
        for u in 0..g.num_nodes() as u32 {
            let (d, q) = g.out(u);
            for (v, pv) in d.iter().zip(q) {
                let (s, qs) = g.inn(*v);
                let i = s.iter().position(|&x| x == u).unwrap();
                assert_eq!(qs[i], *pv);
            }
        }
    }

    #[test]
    fn bad_probabilities_raise_or_are_reported() {
        let s = [1i64, 2, 3];
        let d = [2i64, 3, 1];
        let p = [0.5, f64::NAN, 1.5];
        let mut input = EdgeInput {
            src: IdSlice::Int(&s),
            src_valid: None,
            dst: IdSlice::Int(&d),
            dst_valid: None,
            p: Prob::Column(&p, None),
            src_col: "src",
            dst_col: "dst",
            p_col: "weight",
        };
        let e = SocialGraph::build(&input, OnInvalid::Raise).unwrap_err();
        assert!(e.to_string().contains("column weight, row 1"), "{e}");
        let b = SocialGraph::build(&input, OnInvalid::Drop).unwrap();
        assert_eq!(b.graph.num_edges(), 1);
        assert_eq!(b.issues.iter().map(|i| i.row).collect::<Vec<_>>(), [1, 2]);
        input.p = Prob::Constant(2.0);
        assert!(matches!(
            SocialGraph::build(&input, OnInvalid::Raise),
            Err(Error::Policy(_))
        ));
    }
}
