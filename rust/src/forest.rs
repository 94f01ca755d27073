//! The referral forest: parent pointers, children in CSR, depth, and a
//! breadth-first numbering (every parent has a smaller index than its
//! children), built from a referrals table in O(n) with no recursion.
//!
//! Users are numbered breadth-first from the roots as they are built
//! (implicit roots, then explicit roots in row order, then layer by layer,
//! each user's children together in row order; users freed by breaking a
//! cycle come last): passes that sweep every user stream through memory,
//! and bottom-up passes are one reverse sweep over `0..n`. The children
//! lists and the layers are built in parallel, and the gathers into the
//! new numbering fetch ahead. Id lookups run in prefetching batches (see
//! `ids`). `extend` appends new users after the old ones in their own BFS
//! order, which keeps the numbering topological.
//! Memory: ids + 16 bytes per user (parent, depth, child offset, child) + the
//! id index (about 6.4 bytes per user hashed, 4 to 8 dense; hashed integer
//! ids also keep the build's keyed table, about 32).

use crate::once::ForkOnce;
use rayon::prelude::*;
use std::collections::HashMap;

use crate::error::{Error, Issue, IssueKind, OnInvalid, Result};
use crate::ids::{
    HashIndex, IdIndex, IdKind, IdRef, IdSlice, IdValues, KeyedSlots, StrSlots, UserIx, NO_USER,
};
use crate::progress::Progress;

/// `joined_at` of a user without one (an implicit root, a null cell).
pub const NULL_TS: i64 = i64::MIN;
/// Channel code of a user without one.
pub const NO_CHANNEL: u32 = u32::MAX;
/// Ancestors per user in [`Forest::ancestors`]: one 16-byte read gives
/// the whole chain of a typical 1-4 level policy.
pub const UP: usize = 4;

/// The table of every user's first `UP` ancestors ([`Forest::ancestors`]).
#[derive(Debug, Clone, Copy)]
pub enum Ancestors<'a> {
    /// String ids: ancestors alone.
    Plain(&'a [[UserIx; UP]]),
    /// Integer ids: the ancestors in each user's `Chain`.
    Chains(&'a [Chain]),
}

impl<'a> Ancestors<'a> {
    /// User `u`'s first `UP` ancestors.
    #[inline]
    pub fn of(self, u: UserIx) -> &'a [UserIx; UP] {
        match self {
            Ancestors::Plain(t) => &t[u as usize],
            Ancestors::Chains(c) => &c[u as usize].up,
        }
    }
}

/// A user's first `UP` ancestors (`NO_USER` above a root) and their
/// integer ids (0 there), aligned so that one record is one cache line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Chain {
    pub up: [UserIx; UP],
    pub ids: [i64; UP],
}

/// A nullable string column, borrowed (large-utf8 layout).
#[derive(Debug, Clone, Copy)]
pub struct StrColumn<'a> {
    pub offsets: &'a [i64],
    pub data: &'a [u8],
    pub valid: Option<&'a [bool]>,
}

impl<'a> StrColumn<'a> {
    #[inline]
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        if self.valid.is_some_and(|v| !v[i]) {
            return None;
        }
        Some(&self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize])
    }
}

/// A referrals table, borrowed from the caller's Arrow buffers.
#[derive(Debug, Clone, Copy)]
pub struct ReferralInput<'a> {
    pub user: IdSlice<'a>,
    pub user_valid: Option<&'a [bool]>,
    pub referrer: IdSlice<'a>,
    pub referrer_valid: Option<&'a [bool]>,
    /// Nanoseconds since the Unix epoch (UTC); nulls as `valid`.
    pub joined_at: Option<(&'a [i64], Option<&'a [bool]>)>,
    pub channel: Option<StrColumn<'a>>,
    /// Time zone name of `joined_at` (presentation only; values are UTC).
    pub joined_tz: Option<&'a str>,
    /// The caller's column names, for messages.
    pub user_col: &'a str,
    pub referrer_col: &'a str,
}

impl ReferralInput<'_> {
    pub fn len(&self) -> usize {
        self.user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Acquisition channels: a code per user into `names`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Channels {
    pub codes: Vec<u32>,
    pub names: Vec<String>,
}

/// An immutable, validated referral forest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forest {
    pub(crate) ids: IdValues,
    pub(crate) index: IdIndex,
    pub(crate) parent: Vec<UserIx>,
    pub(crate) depth: Vec<u32>,
    /// The first `UP` ancestors of each user (string ids), built on first use.
    pub(crate) up: ForkOnce<Vec<[UserIx; UP]>>,
    /// Those ancestors with their ids (integer ids), built on first use.
    pub(crate) chains: ForkOnce<Vec<Chain>>,
    /// The id index with keys in its slots (integer ids): the build's own
    /// table for a new graph, else built on first use.
    pub(crate) keyed: ForkOnce<Option<KeyedSlots>>,
    /// The id index with hash tags and byte places in its slots (string
    /// ids), built on first use.
    pub(crate) keyed_str: ForkOnce<Option<StrSlots>>,
    /// min(depth, 255) per user, built on first use.
    pub(crate) depth8: ForkOnce<Vec<u8>>,
    /// Children in CSR (offsets, children), built on first use.
    pub(crate) children_csr: ForkOnce<(Vec<u32>, Vec<UserIx>)>,
    /// Breadth-first numbering, built on first use when the users are
    /// not numbered breadth-first already (see `bfs.rs`).
    pub(crate) bfs: ForkOnce<crate::bfs::BfsLayout>,
    /// The numbering is breadth-first: roots first, then children grouped
    /// by referrer in referrer order (true after `build`).
    pub(crate) bfs_ordered: bool,
    pub(crate) joined_at: Option<Vec<i64>>,
    pub(crate) channels: Option<Channels>,
    pub(crate) joined_tz: Option<String>,
    pub(crate) num_roots: usize,
    pub(crate) max_depth: u32,
}

/// A freshly built forest and the problems lenient mode dealt with.
#[derive(Debug)]
pub struct Built {
    pub forest: Forest,
    pub issues: Vec<Issue>,
}

/// Where a row's referral points, before users are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    None,
    Row(u32),
    Base(UserIx),
    Missing,
}

impl Forest {
    pub fn num_users(&self) -> usize {
        self.parent.len()
    }
    pub fn num_roots(&self) -> usize {
        self.num_roots
    }
    pub fn max_depth(&self) -> u32 {
        self.max_depth
    }
    pub fn id_kind(&self) -> IdKind {
        self.ids.kind()
    }
    pub fn ids(&self) -> &IdValues {
        &self.ids
    }
    /// Parent of each user (`NO_USER` for a root); `parent[u] < u`.
    pub fn parent(&self) -> &[UserIx] {
        &self.parent
    }
    pub fn depth(&self) -> &[u32] {
        &self.depth
    }
    /// min(depth, 255): how many levels a chain from each user pays at
    /// most under a policy of up to 255 levels, in a quarter of the bytes
    /// of `depth` (a table that stays in cache for random reads). Built
    /// once, on first use.
    pub fn depth_u8(&self) -> &[u8] {
        self.depth8.get_or_init(|| {
            crate::alloc::huge_tables(|| self.depth.par_iter().map(|&d| d.min(255) as u8).collect())
        })
    }
    /// When users are numbered breadth-first (each layer after the one
    /// above it): the first user at depth 1, 2, .., up to `levels` (fewer
    /// when the forest is shallower), so that min(depth, levels) of a user
    /// is the number of starts at or below it — no read of `depth`.
    pub fn layer_starts(&self, levels: usize) -> Option<Vec<UserIx>> {
        self.bfs_ordered.then(|| {
            (1..=levels.min(self.max_depth as usize))
                .map(|d| self.depth.partition_point(|&x| (x as usize) < d) as UserIx)
                .collect()
        })
    }
    /// Whether user `u` has a referrer. Numbered breadth-first, the roots
    /// come first, so this needs no (random) read of `parent`.
    #[inline]
    pub fn has_referrer(&self, u: UserIx) -> bool {
        if self.bfs_ordered {
            u as usize >= self.num_roots
        } else {
            self.parent[u as usize] != NO_USER
        }
    }
    /// `ancestors().of(u)[k]`: u's ancestor k + 1 (`NO_USER` above a
    /// root). Walking parent pointers is one dependent cache miss per
    /// level; this table turns the first `UP` levels of a chain into one
    /// read. For integer ids it is part of `chains` (no table of its own);
    /// otherwise 16 bytes per user, built once, on first use: `UP`
    /// parallel passes, each reading the previous level at the parents.
    pub fn ancestors(&self) -> Ancestors<'_> {
        match self.chains() {
            Some(c) => Ancestors::Chains(c),
            None => Ancestors::Plain(
                self.up
                    .get_or_init(|| crate::alloc::huge_tables(|| ancestors(&self.parent))),
            ),
        }
    }
    /// `chains()[u]`: u's first `UP` ancestors and their ids in one
    /// cache line, for integer ids (`None` for strings). The batch walk
    /// reads a buyer's whole chain, beneficiary ids included, in one random
    /// read per event (instead of one for the ancestors and one for their
    /// ids, or one of `ids` per ledger row). Built once, on first use (64
    /// bytes per user): layer by layer in one pass when users are
    /// numbered breadth-first, else from the ancestor table.
    pub fn chains(&self) -> Option<&[Chain]> {
        let IdValues::Int(ids) = &self.ids else {
            return None;
        };
        Some(self.chains.get_or_init(|| {
            crate::alloc::huge_tables(|| {
                if let Some(starts) = self.layer_starts(self.max_depth as usize) {
                    return chains_by_layer(&self.parent, ids, &starts);
                }
                ancestors(&self.parent)
                    .par_iter()
                    .map(|&a| Chain {
                        up: a,
                        ids: a.map(|x| if x == NO_USER { 0 } else { ids[x as usize] }),
                    })
                    .collect()
            })
        }))
    }
    /// User indices of integer ids `keys` (`NO_USER`: absent or not
    /// `keep(row)`), in parallel. A hash index is read through its keyed
    /// copy (kept by the build, or built on first use after `extend` or a
    /// load: 16 bytes per slot, about 32 per user), one random cache line
    /// per key.
    pub fn lookup_ints(&self, keys: &[i64], keep: impl Fn(usize) -> bool + Sync) -> Vec<UserIx> {
        let IdValues::Int(ids) = &self.ids else {
            return vec![NO_USER; keys.len()];
        };
        let Some(keyed) = self
            .keyed
            .get_or_init(|| crate::alloc::huge_tables(|| self.index.keyed(ids)))
            .as_ref()
        else {
            return lookup_ints_par(&self.index, ids, keys, keep);
        };
        lookup_chunks(keys, keep, |k, o| keyed.get_many(k, o))
    }
    /// User indices of the ids `keys(row)` for rows 0..n (`None`: no key,
    /// `NO_USER` out), in parallel batches. String ids are read through
    /// the index's tagged copy (built on first use: 16 bytes per slot);
    /// other ids, or string ids too long for it, through the index.
    pub fn lookup_many<'q>(
        &self,
        n: usize,
        keys: impl Fn(usize) -> Option<IdRef<'q>> + Sync,
    ) -> Vec<UserIx> {
        let tagged = match &self.ids {
            IdValues::Str { offsets, data } => self
                .keyed_str
                .get_or_init(|| crate::alloc::huge_tables(|| self.index.str_slots(offsets, data)))
                .as_ref()
                .map(|t| (t, data)),
            IdValues::Int(_) => None,
        };
        let Some((slots, data)) = tagged else {
            return lookup_par(self, n, keys);
        };
        let mut out = vec![NO_USER; n];
        out.par_chunks_mut(LOOKUP_CHUNK)
            .enumerate()
            .for_each(|(c, o)| {
                let r0 = c * LOOKUP_CHUNK;
                let key = |i: usize| match keys(r0 + i) {
                    Some(IdRef::Str(b)) => Some(b),
                    _ => None,
                };
                slots.get_many(o.len(), key, data, o);
            });
        out
    }

    /// Children in CSR: `children[offsets[u]..offsets[u + 1]]` are u's, in
    /// index order. Built once, on first use (O(n)).
    pub fn children_csr(&self) -> (&[u32], &[UserIx]) {
        let (o, c) = self.children_csr.get_or_init(|| {
            crate::alloc::huge_tables(|| crate::bfs::children_csr(&self.parent, self.parent.len()))
        });
        (o, c)
    }
    pub fn children(&self, u: UserIx) -> &[UserIx] {
        let (offsets, children) = self.children_csr();
        &children[offsets[u as usize] as usize..offsets[u as usize + 1] as usize]
    }
    pub fn joined_at(&self) -> Option<&[i64]> {
        self.joined_at.as_deref()
    }
    pub fn channels(&self) -> Option<&Channels> {
        self.channels.as_ref()
    }
    pub fn joined_tz(&self) -> Option<&str> {
        self.joined_tz.as_deref()
    }

    /// The user index of an external id.
    #[inline]
    pub fn lookup(&self, id: IdRef<'_>) -> Option<UserIx> {
        self.index.get(id, |v| self.ids.get(v))
    }

    /// Heap bytes held by the graph (ids, structure, index, attributes),
    /// the tables built on first use included (a first attribution on
    /// integer ids adds chains, 64 bytes per user, to the keyed index the
    /// build kept, about 32: see `chains` and `lookup_ints`; on string ids
    /// the tagged index, about 32: see `lookup_many`).
    pub fn heap_bytes(&self) -> usize {
        self.ids.heap_bytes()
            + self.index.heap_bytes()
            + 4 * (self.parent.len() + self.depth.len())
            + self
                .up
                .get()
                .map_or(0, |u| u.len() * std::mem::size_of::<[UserIx; UP]>())
            + self
                .chains
                .get()
                .map_or(0, |c| c.len() * std::mem::size_of::<Chain>())
            + self
                .keyed
                .get()
                .and_then(Option::as_ref)
                .map_or(0, KeyedSlots::heap_bytes)
            + self
                .keyed_str
                .get()
                .and_then(Option::as_ref)
                .map_or(0, StrSlots::heap_bytes)
            + self.depth8.get().map_or(0, Vec::len)
            + self
                .children_csr
                .get()
                .map_or(0, |(o, c)| 4 * (o.len() + c.len()))
            + self
                .bfs
                .get()
                .map_or(0, |b| 4 * (b.order.len() + b.pos.len() + b.parent.len()))
            + self.joined_at.as_ref().map_or(0, |v| v.len() * 8)
            + self.channels.as_ref().map_or(0, |c| c.codes.len() * 4)
    }

    /// Builds a forest from a referrals table.
    ///
    /// Errors (strict mode): `Invalid` for a null user id or a
    /// self-referral, `DuplicateUser`, `Cycle` (listing its members),
    /// `Schema` when user and referrer ids are of different kinds.
    ///
    /// Users are numbered breadth-first (roots, then each layer with every
    /// referrer's users together), so passes over the whole forest stream.
    pub fn build(input: &ReferralInput<'_>, on_invalid: OnInvalid) -> Result<Built> {
        Self::build_watched(input, on_invalid, &Progress::new())
    }

    /// [`Forest::build`], reporting its passes to `progress` (each of
    /// [`BUILD_PASSES`] counts one unit per row) and stopping between them
    /// once it is cancelled.
    pub fn build_watched(
        input: &ReferralInput<'_>,
        on_invalid: OnInvalid,
        progress: &Progress,
    ) -> Result<Built> {
        let built = build(input, on_invalid, None, progress)?;
        Ok(Built {
            forest: built.forest.into_bfs_order(),
            issues: built.issues,
        })
    }

    /// A new forest with the users of `input` added; the old one is unchanged.
    /// A new user may not repeat an existing id nor close a cycle.
    pub fn extend(&self, input: &ReferralInput<'_>, on_invalid: OnInvalid) -> Result<Built> {
        self.extend_watched(input, on_invalid, &Progress::new())
    }

    /// [`Forest::extend`], reporting to `progress` as `build_watched` does.
    pub fn extend_watched(
        &self,
        input: &ReferralInput<'_>,
        on_invalid: OnInvalid,
        progress: &Progress,
    ) -> Result<Built> {
        if input.user.kind() != self.id_kind() {
            return Err(Error::Schema(format!(
                "column {} holds {} ids but the graph's ids are {}",
                input.user_col,
                input.user.kind().name(),
                self.id_kind().name()
            )));
        }
        build(input, on_invalid, Some(self), progress)
    }

    /// Assembles a forest from parts (used by `persist`), checking the
    /// invariants every algorithm relies on, so a corrupt file is an error.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        ids: IdValues,
        index: IdIndex,
        parent: Vec<UserIx>,
        joined_at: Option<Vec<i64>>,
        channels: Option<Channels>,
        joined_tz: Option<String>,
    ) -> std::result::Result<Forest, String> {
        let n = parent.len();
        crate::ids::check_parts(&ids, &index, n)?;
        if joined_at.as_ref().is_some_and(|j| j.len() != n) {
            return Err("joined_at length differs from the user count".into());
        }
        if let Some(c) = &channels {
            if c.codes.len() != n
                || c.codes
                    .iter()
                    .any(|&k| k != NO_CHANNEL && k as usize >= c.names.len())
            {
                return Err("channel codes out of range".into());
            }
        }
        if let Some(u) = parent
            .par_iter()
            .enumerate()
            .position_any(|(u, &p)| p != NO_USER && p as usize >= u)
        {
            return Err(format!(
                "user {u} has parent {}: not topological",
                parent[u]
            ));
        }
        let mut depth = vec![0u32; n];
        for u in 0..n {
            if parent[u] != NO_USER {
                depth[u] = depth[parent[u] as usize] + 1;
            }
        }
        // The checksum guards against corruption; these checks only keep a
        // crafted file from indexing out of bounds.
        let mut f = assemble(ids, index, parent, depth, joined_at, channels);
        f.joined_tz = joined_tz;
        Ok(f)
    }
}

pub(crate) fn assemble(
    ids: IdValues,
    index: IdIndex,
    parent: Vec<UserIx>,
    depth: Vec<u32>,
    joined_at: Option<Vec<i64>>,
    channels: Option<Channels>,
) -> Forest {
    let num_roots = parent.iter().filter(|&&p| p == NO_USER).count();
    let max_depth = depth.iter().copied().max().unwrap_or(0);
    let bfs_ordered = crate::bfs::is_bfs_ordered(&parent);
    Forest {
        ids,
        index,
        parent,
        depth,
        up: ForkOnce::new(),
        chains: ForkOnce::new(),
        keyed: ForkOnce::new(),
        keyed_str: ForkOnce::new(),
        depth8: ForkOnce::new(),
        children_csr: ForkOnce::new(),
        bfs: ForkOnce::new(),
        bfs_ordered,
        joined_at,
        channels,
        joined_tz: None,
        num_roots,
        max_depth,
    }
}

/// Chain records of a breadth-first forest in one pass: a user's record
/// is its referrer's shifted by one, and the referrer's layer is done
/// before the user's, whose records are then written in parallel. Within
/// a layer the referrers' positions never decrease, so their records are
/// read as a stream (the table of ancestors and the gathers of their ids
/// that the general path builds first are not needed).
/// `starts`: the first user of each layer below the roots
/// ([`Forest::layer_starts`]).
fn chains_by_layer(parent: &[UserIx], ids: &[i64], starts: &[UserIx]) -> Vec<Chain> {
    const BLOCK: usize = 1 << 12;
    let n = parent.len();
    let mut out: Vec<Chain> = Vec::with_capacity(n);
    let mut start = 0;
    for end in starts.iter().map(|&s| s as usize).chain([n]) {
        let (done, layer) = out.spare_capacity_mut()[..end].split_at_mut(start);
        // SAFETY: records 0..start (the layers above) were all written
        // by the previous rounds; MaybeUninit<Chain> has Chain's layout.
        let done: &[Chain] = unsafe { &*(done as *const _ as *const [Chain]) };
        layer
            .par_chunks_mut(BLOCK)
            .enumerate()
            .for_each(|(k, recs)| {
                for (i, rec) in recs.iter_mut().enumerate() {
                    let p = parent[start + k * BLOCK + i];
                    rec.write(match p {
                        NO_USER => Chain {
                            up: [NO_USER; UP],
                            ids: [0; UP],
                        },
                        p => {
                            let c = &done[p as usize];
                            let mut up = [p; UP];
                            let mut pid = [ids[p as usize]; UP];
                            up[1..].copy_from_slice(&c.up[..UP - 1]);
                            pid[1..].copy_from_slice(&c.ids[..UP - 1]);
                            Chain { up, ids: pid }
                        }
                    });
                }
            });
        start = end;
    }
    // SAFETY: the last round ended at n, and the rounds' layers cover
    // 0..n (a start before the previous one would have failed the split).
    unsafe { out.set_len(n) };
    out
}

fn ancestors(parent: &[UserIx]) -> Vec<[UserIx; UP]> {
    let mut up: Vec<[UserIx; UP]> = parent
        .par_iter()
        .map(|&p| [p, NO_USER, NO_USER, NO_USER])
        .collect();
    for k in 1..UP {
        let above: Vec<UserIx> = up
            .par_iter()
            .map(|a| match a[k - 1] {
                NO_USER => NO_USER,
                b => parent[b as usize],
            })
            .collect();
        up.par_iter_mut().zip(above).for_each(|(a, b)| a[k] = b);
    }
    up
}

/// Accumulates problems: the first one raises in strict mode.
struct Problems {
    mode: OnInvalid,
    issues: Vec<Issue>,
}

impl Problems {
    fn report(&mut self, issue: Issue, strict: impl FnOnce() -> Error) -> Result<()> {
        match self.mode {
            OnInvalid::Raise => Err(strict()),
            OnInvalid::Drop => {
                self.issues.push(issue);
                Ok(())
            }
        }
    }
}

const LOOKUP_CHUNK: usize = 1 << 14;

/// Looks ids up in a built forest, in parallel batches (`NO_USER`: absent).
pub(crate) fn lookup_par<'q>(
    f: &Forest,
    n: usize,
    keys: impl Fn(usize) -> Option<IdRef<'q>> + Sync,
) -> Vec<u32> {
    let mut out = vec![NO_USER; n];
    out.par_chunks_mut(LOOKUP_CHUNK)
        .enumerate()
        .for_each(|(c, o)| {
            let r0 = c * LOOKUP_CHUNK;
            f.index.get_many(
                o.len(),
                |i| keys(r0 + i),
                |v| f.ids.get(v),
                |v| f.ids.as_slice().prefetch(v as usize),
                f.ids.as_slice().bytes_prefetcher(),
                o,
            );
        });
    out
}

/// Looks up integer `keys` in an index over integer `ids` (`ids[v]` is
/// value v's key), in parallel chunks; rows where `keep(r)` is false get
/// `NO_USER` (their key is not read for meaning: null slots hold anything).
pub(crate) fn lookup_ints_par(
    index: &IdIndex,
    ids: &[i64],
    keys: &[i64],
    keep: impl Fn(usize) -> bool + Sync,
) -> Vec<u32> {
    lookup_chunks(keys, keep, |k, o| index.get_many_int(k, ids, o))
}

/// `fill(keys, out)` over parallel chunks of `keys`, then rows that are not
/// `keep(row)` set to `NO_USER`.
fn lookup_chunks(
    keys: &[i64],
    keep: impl Fn(usize) -> bool + Sync,
    fill: impl Fn(&[i64], &mut [u32]) + Sync,
) -> Vec<u32> {
    let mut out = vec![NO_USER; keys.len()];
    out.par_chunks_mut(LOOKUP_CHUNK)
        .enumerate()
        .for_each(|(c, o)| {
            let r0 = c * LOOKUP_CHUNK;
            fill(&keys[r0..r0 + o.len()], o);
            for (i, x) in o.iter_mut().enumerate() {
                if !keep(r0 + i) {
                    *x = NO_USER;
                }
            }
        });
    out
}

fn int_range(cols: &[(IdSlice<'_>, Option<&[bool]>)]) -> Option<(i64, i64)> {
    const CHUNK: usize = 1 << 16;
    let mut range: Option<(i64, i64)> = None;
    for (col, valid) in cols {
        if let IdSlice::Int(v) = col {
            // Plain loops over fixed chunks vectorise (a lane-wise min and
            // max); a filtered parallel iterator took ten times as long.
            let (lo, hi) = v
                .par_chunks(CHUNK)
                .enumerate()
                .map(|(c, xs)| {
                    let fold = |(lo, hi): (i64, i64), (x, ok): (i64, bool)| {
                        (
                            if ok { lo.min(x) } else { lo },
                            if ok { hi.max(x) } else { hi },
                        )
                    };
                    let empty = (i64::MAX, i64::MIN);
                    match valid {
                        None => xs.iter().map(|&x| (x, true)).fold(empty, fold),
                        Some(m) => {
                            let m = &m[c * CHUNK..c * CHUNK + xs.len()];
                            xs.iter().zip(m).map(|(&x, &ok)| (x, ok)).fold(empty, fold)
                        }
                    }
                })
                .reduce(|| (i64::MAX, i64::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)));
            if lo <= hi {
                range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
            }
        }
    }
    range
}

/// The build's id -> row index. Integer ids hashed in a new graph go into
/// a keyed table (each key in its slot: one cache line per lookup, no read
/// of the ids column), which the graph keeps as its keyed copy.
enum RowIndex {
    Ids(IdIndex),
    Keyed(KeyedSlots),
}

/// The passes of a build that report progress: the id index, the
/// referrers' lookup, the breadth-first numbering, the cycle check and the
/// assembly of the columns in the new order.
pub const BUILD_PASSES: u64 = 5;

fn build(
    input: &ReferralInput<'_>,
    mode: OnInvalid,
    base: Option<&Forest>,
    progress: &Progress,
) -> Result<Built> {
    let n = input.len();
    progress.start(BUILD_PASSES * n as u64);
    let pass_done = || progress.advance(n as u64);
    if input.referrer.len() != n {
        return Err(Error::Schema(
            "referrer column length differs from user column".into(),
        ));
    }
    if input.referrer.kind() != input.user.kind() {
        return Err(Error::Schema(format!(
            "column {} holds {} ids but column {} holds {} ids",
            input.referrer_col,
            input.referrer.kind().name(),
            input.user_col,
            input.user.kind().name()
        )));
    }
    if n >= (NO_USER as usize) / 2 {
        return Err(Error::Schema(format!(
            "{n} rows: more than a referral graph holds ({})",
            NO_USER / 2
        )));
    }
    let mut problems = Problems {
        mode,
        issues: Vec::new(),
    };
    let user = input.user;
    let referrer = input.referrer;
    let referrer_ok = |r: usize| input.referrer_valid.is_none_or(|m| m[r]);

    // 1. Null ids leave the row out.
    let mut kept: Vec<bool> = vec![true; n];
    if let Some(valid) = input.user_valid {
        for r in 0..n {
            if !valid[r] {
                problems.report(
                    Issue {
                        row: r as u64,
                        id: None,
                        column: input.user_col.to_string(),
                        kind: IssueKind::NullId,
                        message: "null user id: row left out".into(),
                    },
                    || Error::Invalid {
                        column: input.user_col.to_string(),
                        row: Some(r as u64),
                        id: None,
                        reason: "null user id".into(),
                    },
                )?;
                kept[r] = false;
            }
        }
    }

    // 2. Index the new users by row; a repeated id (or one the base graph
    //    already has) leaves the later row out.
    let range = if base.is_none() {
        int_range(&[(user, input.user_valid), (referrer, input.referrer_valid)])
    } else {
        None
    };
    let in_base: Vec<u32> = match base {
        Some(b) => lookup_par(b, n, |r| kept[r].then(|| user.get(r))),
        None => Vec::new(),
    };
    let new_row = |r: usize| kept[r] && in_base.get(r).is_none_or(|&ix| ix == NO_USER);
    let (mut index, first_seen) = match user {
        IdSlice::Int(ids)
            if base.is_none() && IdIndex::dense_span(IdKind::Int, n, range).is_none() =>
        {
            let (keyed, dups) = KeyedSlots::fill(n, |r| new_row(r).then(|| ids[r]));
            (RowIndex::Keyed(keyed), dups)
        }
        _ => {
            let mut index = IdIndex::for_ids(user.kind(), n, range);
            let dups = index.insert_many(
                n,
                |r| new_row(r).then(|| user.get(r)),
                |v| user.get(v as usize),
            );
            (RowIndex::Ids(index), dups)
        }
    };
    let mut dups: Vec<(u32, Option<u32>)> = in_base
        .iter()
        .enumerate()
        .filter(|(_, &ix)| ix != NO_USER)
        .map(|(r, _)| (r as u32, None))
        .collect();
    dups.extend(first_seen.into_iter().map(|(r, first)| (r, Some(first))));
    dups.sort_unstable();
    for (r, first) in dups {
        let r = r as usize;
        let id_s = user.get(r).to_string();
        let what = match first {
            Some(f) => format!("first seen on row {f}"),
            None => "already in the graph".to_string(),
        };
        problems.report(
            Issue {
                row: r as u64,
                id: Some(id_s.clone()),
                column: input.user_col.to_string(),
                kind: IssueKind::DuplicateUser,
                message: format!("duplicate user id ({what}): row left out"),
            },
            || Error::DuplicateUser {
                column: input.user_col.to_string(),
                row: r as u64,
                id: id_s.clone(),
                first_row: first.map(|f| f as u64),
            },
        )?;
        kept[r] = false;
    }

    pass_done()?;

    // 3. Resolve referrers: read-only batched lookups, in parallel.
    let wanted = |r: usize| (kept[r] && referrer_ok(r)).then(|| referrer.get(r));
    let ref_in_base: Vec<u32> = match base {
        Some(b) => lookup_par(b, n, wanted),
        None => Vec::new(),
    };
    let ref_row = match (&index, user, referrer) {
        (RowIndex::Keyed(keyed), _, IdSlice::Int(refs)) => {
            lookup_chunks(refs, |r| wanted(r).is_some(), |k, o| keyed.get_many(k, o))
        }
        (RowIndex::Ids(index), IdSlice::Int(users), IdSlice::Int(refs)) => {
            lookup_ints_par(index, users, refs, |r| wanted(r).is_some())
        }
        (RowIndex::Ids(index), _, _) => {
            let mut ref_row = vec![NO_USER; n];
            ref_row
                .par_chunks_mut(LOOKUP_CHUNK)
                .enumerate()
                .for_each(|(c, out)| {
                    let r0 = c * LOOKUP_CHUNK;
                    index.get_many(
                        out.len(),
                        |i| wanted(r0 + i),
                        |v| user.get(v as usize),
                        |v| user.prefetch(v as usize),
                        user.bytes_prefetcher(),
                        out,
                    );
                });
            ref_row
        }
        (RowIndex::Keyed(_), _, IdSlice::Str { .. }) => unreachable!("keyed: integer ids"),
    };
    let mut links: Vec<Link> = (0..n)
        .into_par_iter()
        .map(|r| {
            if !kept[r] || !referrer_ok(r) {
                Link::None
            } else if ref_in_base.get(r).is_some_and(|&ix| ix != NO_USER) {
                Link::Base(ref_in_base[r])
            } else if ref_row[r] != NO_USER {
                Link::Row(ref_row[r])
            } else {
                Link::Missing
            }
        })
        .collect();
    drop(ref_row);
    pass_done()?;

    // 4. Referrers without a row become implicit roots, numbered n, n+1, ...
    //    in order of first appearance.
    let mut implicit = IdValues::new(user.kind());
    let mut implicit_row: Vec<u32> = Vec::new(); // first row naming each
    {
        let mut seen = HashIndex::with_capacity(16);
        for r in 0..n {
            if links[r] != Link::Missing {
                continue;
            }
            let id = referrer.get(r);
            let key_of = |j: u32| referrer.get(implicit_row[j as usize] as usize);
            seen.reserve(1, |j| key_of(j).hash());
            let j = implicit_row.len() as u32;
            let j = seen
                .insert(id.hash(), j, |s| key_of(s) == id)
                .unwrap_or_else(|| {
                    implicit_row.push(r as u32);
                    j
                });
            links[r] = Link::Row(n as u32 + j);
        }
    }
    implicit.extend_gather(referrer, implicit_row.iter().map(|&r| r as usize));
    let total = n + implicit.len();
    let key_of_row = |v: u32| {
        if (v as usize) < n {
            user.get(v as usize)
        } else {
            implicit.get(v - n as u32)
        }
    };
    match (&mut index, &implicit) {
        (RowIndex::Keyed(keyed), IdValues::Int(roots)) => {
            keyed.reserve(roots.len());
            for (j, &id) in roots.iter().enumerate() {
                keyed.insert(id, (n + j) as u32);
            }
        }
        (RowIndex::Ids(index), _) => {
            index.reserve(implicit.len(), key_of_row);
            for j in 0..implicit.len() {
                index.insert(implicit.get(j as u32), (n + j) as u32, key_of_row);
            }
        }
        (RowIndex::Keyed(_), IdValues::Str { .. }) => unreachable!("keyed: integer ids"),
    }

    // 5. A self-referral is a cycle of one: the referral is dropped.
    for r in 0..n {
        if links[r] == Link::Row(r as u32) {
            let id_s = user.get(r).to_string();
            problems.report(
                Issue {
                    row: r as u64,
                    id: Some(id_s.clone()),
                    column: input.referrer_col.to_string(),
                    kind: IssueKind::SelfReferral,
                    message: "self-referral: referral dropped, user kept as a root".into(),
                },
                || Error::Invalid {
                    column: input.referrer_col.to_string(),
                    row: Some(r as u64),
                    id: Some(id_s.clone()),
                    reason: "user refers themself".into(),
                },
            )?;
            links[r] = Link::None;
        }
    }

    // 6. Number users breadth-first in row space: the implicit roots, then
    //    rows without a referrer in this table (row order), then layer by
    //    layer, each row's children together in row order. The forest is
    //    then BFS-ordered as built (no renumbering pass afterwards) and
    //    every child's referrer position is known when it is placed.
    let row_parent: Vec<u32> = links
        .par_iter()
        .map(|l| match l {
            Link::Row(p) => *p,
            _ => NO_USER,
        })
        .collect();
    let (offsets, kids) = crate::bfs::children_csr(&row_parent, total);
    let roots: Vec<u32> = (n as u32..total as u32)
        .chain((0..n as u32).filter(|&r| {
            kept[r as usize] && matches!(links[r as usize], Link::None | Link::Base(_))
        }))
        .collect();
    let (mut order, mut up) = crate::bfs::layers(roots, &offsets, &kids);
    let layered = order.len();
    // After a cycle is broken: its members and everything below them, from
    // the dropped referral's user (a child whose referral was dropped is
    // skipped).
    let bfs = |order: &mut Vec<u32>, up: &mut Vec<u32>, links: &[Link], start: usize| {
        let mut head = start;
        while head < order.len() {
            let r = order[head] as usize;
            for &c in &kids[offsets[r] as usize..offsets[r + 1] as usize] {
                if links[c as usize] == Link::Row(r as u32) {
                    order.push(c);
                    up.push(head as u32);
                }
            }
            head += 1;
        }
    };

    pass_done()?;

    // 7. Rows never reached sit on or below a referral cycle.
    let reachable = kept.iter().filter(|&&k| k).count() + implicit.len();
    if order.len() < reachable {
        let mut placed = vec![false; total];
        for &r in &order {
            placed[r as usize] = true;
        }
        let cycles = find_cycles(n, &kept, &placed, |r| row_parent[r]);
        if mode == OnInvalid::Raise {
            let ids = cycles[0]
                .iter()
                .map(|&r| user.get(r as usize).to_string())
                .collect();
            return Err(Error::Cycle(ids));
        }
        for cycle in &cycles {
            // Break at the member who joined last (null = unknown = last), ties by id.
            let joined = |r: u32| -> i64 {
                match input.joined_at {
                    Some((v, valid)) if valid.is_none_or(|m| m[r as usize]) => v[r as usize],
                    _ => i64::MAX,
                }
            };
            let &m = cycle
                .iter()
                .max_by(|&&a, &&b| {
                    (joined(a), user.get(a as usize)).cmp(&(joined(b), user.get(b as usize)))
                })
                .expect("a cycle has members");
            let members: Vec<String> = cycle
                .iter()
                .map(|&r| user.get(r as usize).to_string())
                .collect();
            problems.issues.push(Issue {
                row: m as u64,
                id: Some(user.get(m as usize).to_string()),
                column: input.referrer_col.to_string(),
                kind: IssueKind::Cycle,
                message: format!(
                    "referral cycle {}: referral dropped, user kept as a root",
                    members.join(" -> ")
                ),
            });
            links[m as usize] = Link::None;
            let start = order.len();
            order.push(m);
            up.push(NO_USER);
            bfs(&mut order, &mut up, &links, start);
        }
        debug_assert_eq!(order.len(), reachable);
    }

    pass_done()?;

    // 8. Number users in BFS order after the base's users and assemble.
    let base_n = base.map_or(0, |b| b.num_users());
    let mut pos = vec![NO_USER; total];
    {
        let out = crate::attribution::ranges::SharedMut(pos.as_mut_ptr());
        order.par_iter().enumerate().for_each(|(i, &r)| {
            // SAFETY: `order` lists each row at most once.
            unsafe { *out.ptr().add(r as usize) = (base_n + i) as u32 };
        });
    }
    // Only a root's link is read: the others' referrer position is `up`.
    let parent_new: Vec<UserIx> = order
        .par_iter()
        .zip(up.par_iter())
        .map(|(&r, &p)| match (p, links.get(r as usize)) {
            (NO_USER, Some(Link::Base(ix))) => *ix,
            (NO_USER, _) => NO_USER,
            _ => (base_n as u32) + p,
        })
        .collect();
    let base_depth = |ix: UserIx| base.map_or(0, |b| b.depth[ix as usize] + 1);
    let depth_new = depths(&up, layered, |i| match links.get(order[i] as usize) {
        Some(Link::Base(ix)) => base_depth(*ix),
        _ => 0,
    });
    // Kept with the graph and read at random (string lookups probe it).
    let new_ids = crate::alloc::huge_tables(|| match user.kind() {
        IdKind::Int => IdValues::Int(crate::par::gather(
            &order,
            |r| {
                if r < n {
                    user.prefetch(r)
                }
            },
            |r| match key_of_row(r as u32) {
                IdRef::Int(x) => x,
                IdRef::Str(_) => unreachable!("kinds checked"),
            },
        )),
        IdKind::Str => crate::ids::gather_strings(
            &order,
            |r| {
                if (r as usize) < n {
                    user.prefetch(r as usize)
                }
            },
            |r| match key_of_row(r) {
                IdRef::Str(s) => s,
                IdRef::Int(_) => unreachable!("kinds checked"),
            },
        ),
    });
    let joined_new: Option<Vec<i64>> = input.joined_at.map(|(vals, valid)| {
        crate::par::gather(
            &order,
            |r| {
                if r < n {
                    crate::ids::prefetch(&vals[r])
                }
            },
            |r| {
                if r < n && valid.is_none_or(|m| m[r]) {
                    vals[r]
                } else {
                    NULL_TS
                }
            },
        )
    });

    let mut keyed = None;
    let (ids, index, parent, depth, joined_at, channels) = match base {
        None => {
            let index = match index {
                RowIndex::Ids(mut index) => {
                    index.remap(&pos);
                    index
                }
                // Kept as the graph's keyed copy (what its first lookup of
                // integer ids would build).
                RowIndex::Keyed(mut k) => {
                    let index = IdIndex::Hash(k.remap_unkeyed(&pos));
                    keyed = Some(k);
                    index
                }
            };
            let channels = input.channel.map(|col| {
                let mut ch = Channels::default();
                encode_channels(&mut ch, col, &order, n);
                ch
            });
            (new_ids, index, parent_new, depth_new, joined_new, channels)
        }
        Some(b) => {
            let mut ids = b.ids.clone();
            ids.extend_gather(new_ids.as_slice(), 0..new_ids.len());
            let mut index = b.index.clone();
            index.reserve(new_ids.len(), |v| ids.get(v));
            for u in base_n..ids.len() {
                index.insert(ids.get(u as u32), u as u32, |v| ids.get(v));
            }
            let mut parent = b.parent.clone();
            parent.extend_from_slice(&parent_new);
            let mut depth = b.depth.clone();
            depth.extend_from_slice(&depth_new);
            let joined_at = match (&b.joined_at, joined_new) {
                (None, None) => None,
                (old, new) => {
                    let mut v = old.clone().unwrap_or_else(|| vec![NULL_TS; base_n]);
                    v.extend(new.unwrap_or_else(|| vec![NULL_TS; order.len()]));
                    Some(v)
                }
            };
            let channels = match (&b.channels, input.channel) {
                (None, None) => None,
                (old, new) => {
                    let mut ch = old.clone().unwrap_or_else(|| Channels {
                        codes: vec![NO_CHANNEL; base_n],
                        names: Vec::new(),
                    });
                    match new {
                        Some(col) => encode_channels(&mut ch, col, &order, n),
                        None => ch
                            .codes
                            .extend(std::iter::repeat_n(NO_CHANNEL, order.len())),
                    }
                    Some(ch)
                }
            };
            (ids, index, parent, depth, joined_at, channels)
        }
    };
    let mut forest = assemble(ids, index, parent, depth, joined_at, channels);
    if let Some(k) = keyed {
        forest.keyed.get_or_init(|| Some(k));
    }
    forest.joined_tz = base
        .and_then(|b| b.joined_tz.clone())
        .or_else(|| input.joined_tz.map(String::from));
    problems.issues.sort_by_key(|i| i.row);
    pass_done()?;
    Ok(Built {
        forest,
        issues: problems.issues,
    })
}

/// Depth of each position of a breadth-first numbering from its
/// referrer's position `up` (`NO_USER`: a root, of depth `root_depth(i)`).
/// Up to `layered` (roots first, then referrer positions that never
/// decrease) it goes wave by wave: the positions whose referrers all lie
/// before the wave are filled in parallel, their referrers read as a
/// stream. Later positions (cycles' subtrees) go one by one.
fn depths(up: &[u32], layered: usize, root_depth: impl Fn(usize) -> u32 + Sync) -> Vec<u32> {
    const BLOCK: usize = 1 << 12;
    let mut depth = vec![0u32; up.len()];
    let roots = up[..layered].partition_point(|&p| p == NO_USER);
    depth[..roots]
        .par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(c, d)| {
            d.iter_mut()
                .enumerate()
                .for_each(|(j, x)| *x = root_depth(c * BLOCK + j))
        });
    let mut a = roots;
    while a < layered {
        // A referrer precedes its referral, so the wave is never empty.
        let b = a + up[a..layered].partition_point(|&p| (p as usize) < a);
        let (done, wave) = depth.split_at_mut(a);
        let fill = |c: usize, d: &mut [u32]| {
            let at = a + c * BLOCK;
            for (x, &p) in d.iter_mut().zip(&up[at..]) {
                *x = done[p as usize] + 1;
            }
        };
        let wave = &mut wave[..b - a];
        if wave.len() > BLOCK {
            wave.par_chunks_mut(BLOCK)
                .enumerate()
                .for_each(|(c, d)| fill(c, d));
        } else {
            fill(0, wave);
        }
        a = b;
    }
    for i in layered..up.len() {
        depth[i] = match up[i] {
            NO_USER => root_depth(i),
            p => depth[p as usize] + 1,
        };
    }
    depth
}

/// Appends the channel code of each row of `order` (rows >= n are
/// implicit: none). Names are looked up in row order (a stream), per block
/// in parallel with a dictionary per block, then merged in block order: a
/// new name's code is its first appearance by row. The codes then move
/// into `order` by a gather that fetches ahead.
fn encode_channels(ch: &mut Channels, col: StrColumn<'_>, order: &[u32], n: usize) {
    const BLOCK: usize = 1 << 16;
    let blocks: Vec<(Vec<&[u8]>, Vec<u32>)> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let (mut names, mut local): (Vec<&[u8]>, Vec<u32>) = (Vec::new(), Vec::new());
            let mut seen: HashMap<&[u8], u32> = HashMap::new();
            let mut last: Option<(&[u8], u32)> = None;
            for r in b * BLOCK..((b + 1) * BLOCK).min(n) {
                local.push(match col.get(r) {
                    None => NO_CHANNEL,
                    Some(s) => match last {
                        Some((prev, c)) if prev == s => c,
                        _ => {
                            let c = *seen.entry(s).or_insert_with(|| {
                                names.push(s);
                                names.len() as u32 - 1
                            });
                            last = Some((s, c));
                            c
                        }
                    },
                });
            }
            (names, local)
        })
        .collect();
    let mut codes: HashMap<Vec<u8>, u32> = ch
        .names
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_bytes().to_vec(), i as u32))
        .collect();
    // Per block: local code -> channel code.
    let global: Vec<Vec<u32>> = blocks
        .iter()
        .map(|(names, _)| {
            names
                .iter()
                .map(|&s| {
                    let next = codes.len() as u32;
                    *codes.entry(s.to_vec()).or_insert_with(|| {
                        ch.names.push(String::from_utf8_lossy(s).into_owned());
                        next
                    })
                })
                .collect()
        })
        .collect();
    let new = crate::par::gather(
        order,
        |r| {
            if r < n {
                crate::ids::prefetch(&blocks[r / BLOCK].1[r % BLOCK])
            }
        },
        |r| match blocks.get(r / BLOCK).filter(|_| r < n) {
            Some((_, local)) => match local[r % BLOCK] {
                NO_CHANNEL => NO_CHANNEL,
                c => global[r / BLOCK][c as usize],
            },
            None => NO_CHANNEL,
        },
    );
    ch.codes.extend_from_slice(&new);
}

/// The cycles among rows not reached from a root. Each unreached component
/// of a one-parent graph holds exactly one cycle; walk parent pointers with
/// a colour per row (iterative, O(rows)). Members are listed so that each
/// referred the next, starting from the member on the lowest row; cycles
/// are ordered by that row.
fn find_cycles(
    n: usize,
    kept: &[bool],
    placed: &[bool],
    parent_of: impl Fn(usize) -> u32,
) -> Vec<Vec<u32>> {
    const WHITE: u32 = u32::MAX;
    const DONE: u32 = u32::MAX - 1;
    let mut walk_id = vec![WHITE; n];
    let mut cycles = Vec::new();
    for start in 0..n {
        if !kept[start] || placed[start] || walk_id[start] != WHITE {
            continue;
        }
        let mut path = Vec::new();
        let mut r = start;
        loop {
            if walk_id[r] == start as u32 {
                // Closed a new cycle at r.
                let at = path
                    .iter()
                    .position(|&x| x == r as u32)
                    .expect("r is on the path");
                let mut cyc: Vec<u32> = path[at..].to_vec();
                cyc.reverse(); // parent walk reversed: each referred the next
                let lo = cyc
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, &x)| x)
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                cyc.rotate_left(lo);
                cycles.push(cyc);
                break;
            }
            if walk_id[r] != WHITE {
                break; // joins an earlier walk: its cycle is known
            }
            walk_id[r] = start as u32;
            path.push(r as u32);
            let p = parent_of(r);
            if p == NO_USER || p as usize >= n {
                break;
            }
            r = p as usize;
        }
        for &x in &path {
            walk_id[x as usize] = DONE;
        }
    }
    cycles.sort_by_key(|c| c[0]);
    cycles
}

#[cfg(test)]
fn test_input<'a>(users: &'a [i64], refs: &'a [i64], valid: &'a [bool]) -> ReferralInput<'a> {
    ReferralInput {
        user: IdSlice::Int(users),
        user_valid: None,
        referrer: IdSlice::Int(refs),
        referrer_valid: Some(valid),
        joined_at: None,
        channel: None,
        joined_tz: None,
        user_col: "user_id",
        referrer_col: "referrer_id",
    }
}

/// Test forests from (user, referrer) pairs with int ids.
#[cfg(test)]
pub(crate) fn test_forest(users: &[i64], referrers: &[Option<i64>]) -> Forest {
    let refs: Vec<i64> = referrers.iter().map(|r| r.unwrap_or(0)).collect();
    let valid: Vec<bool> = referrers.iter().map(Option::is_some).collect();
    Forest::build(&test_input(users, &refs, &valid), OnInvalid::Raise)
        .expect("a valid test forest")
        .forest
}

#[cfg(test)]
/// Test forests over string ids (user i referred by (i - 1) / 2).
pub(crate) fn test_forest_str(names: &[Vec<u8>]) -> Forest {
    let col = |v: &mut Vec<i64>, d: &mut Vec<u8>, s: &[u8]| {
        d.extend_from_slice(s);
        v.push(d.len() as i64);
    };
    let (mut uo, mut ud, mut ro, mut rd) = (vec![0], vec![], vec![0], vec![]);
    let mut valid = vec![];
    for (i, s) in names.iter().enumerate() {
        col(&mut uo, &mut ud, s);
        let r: &[u8] = if i > 0 { &names[(i - 1) / 2] } else { b"" };
        col(&mut ro, &mut rd, r);
        valid.push(i > 0);
    }
    let input = ReferralInput {
        user: IdSlice::Str {
            offsets: &uo,
            data: &ud,
        },
        user_valid: None,
        referrer: IdSlice::Str {
            offsets: &ro,
            data: &rd,
        },
        referrer_valid: Some(&valid),
        joined_at: None,
        channel: None,
        joined_tz: None,
        user_col: "user_id",
        referrer_col: "referrer_id",
    };
    Forest::build(&input, OnInvalid::Raise).unwrap().forest
}

/// Like `test_forest`, but the rows after `split` are added by `extend`
/// (which keeps the base's numbering: usually not breadth-first).
#[cfg(test)]
pub(crate) fn test_forest_extended(
    users: &[i64],
    referrers: &[Option<i64>],
    split: usize,
) -> Forest {
    let base = test_forest(&users[..split], &referrers[..split]);
    let refs: Vec<i64> = referrers[split..].iter().map(|r| r.unwrap_or(0)).collect();
    let valid: Vec<bool> = referrers[split..].iter().map(Option::is_some).collect();
    base.extend(
        &test_input(&users[split..], &refs, &valid),
        OnInvalid::Raise,
    )
    .expect("a valid extension")
    .forest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::mix64;

    #[test]
    fn string_lookups_through_the_tagged_index_match_single_lookups() {
        // Ids of 0-40 bytes sharing long prefixes and suffixes (so the
        // 8-16 byte compare's two words each matter), 60k of them (several
        // lookup chunks); queries: every id, near misses of each length,
        // and rows without a key.
        let names: Vec<Vec<u8>> = (0..60_000u64)
            .map(|i| {
                let len = (i % 41) as usize;
                let mut s = vec![b'x'; len];
                for (k, b) in format!("{i}").bytes().enumerate().take(len) {
                    s[(k * 5) % len.max(1)] = b;
                }
                s
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let f = test_forest_str(&names);
        let mut queries: Vec<Option<Vec<u8>>> = Vec::new();
        for (i, s) in names.iter().enumerate() {
            queries.push(Some(s.clone()));
            let mut miss = s.clone();
            match i % 3 {
                0 => miss.push(b'x'),
                1 if !miss.is_empty() => *miss.last_mut().unwrap() ^= 0x40,
                _ => miss.insert(0, b'#'),
            }
            queries.push(Some(miss));
            if i % 5 == 0 {
                queries.push(None);
            }
        }
        let got = f.lookup_many(queries.len(), |r| queries[r].as_deref().map(IdRef::Str));
        assert!(
            f.keyed_str.get().is_some_and(Option::is_some),
            "tagged index built"
        );
        let mut found = 0;
        for (q, &g) in queries.iter().zip(&got) {
            let want = q.as_deref().and_then(|k| f.lookup(IdRef::Str(k)));
            assert_eq!(g, want.unwrap_or(NO_USER), "query {q:?}");
            found += want.is_some() as usize;
        }
        assert!(found >= names.len(), "every id found");
    }

    #[test]
    fn string_lookups_fall_back_to_the_index_for_ids_too_long_to_tag() {
        // One id of 16 MB: the tagged slots cannot place it.
        let mut names: Vec<Vec<u8>> = (0..100).map(|i| format!("u{i}").into_bytes()).collect();
        names.push(vec![b'z'; 1 << 24]);
        let f = test_forest_str(&names);
        let got = f.lookup_many(names.len() + 1, |r| {
            Some(IdRef::Str(names.get(r).map_or(b"nobody", |s| &s[..])))
        });
        assert!(
            f.keyed_str.get().is_some_and(Option::is_none),
            "no tagged index"
        );
        for (r, &g) in got.iter().enumerate() {
            let want = names.get(r).and_then(|s| f.lookup(IdRef::Str(s)));
            assert_eq!(g, want.unwrap_or(NO_USER));
        }
        assert_eq!(
            got[names.len() - 1],
            f.lookup(IdRef::Str(&names[100])).unwrap()
        );
    }

    #[test]
    fn channels_follow_their_users_across_blocks_and_extend() {
        // 150k rows (three encoding blocks), each referred by an earlier
        // row at random (one in ten a root); a channel on one user in five,
        // named after the id mod 7.
        let n = 150_000usize;
        let users: Vec<i64> = (0..n as i64).map(|i| i * 3 + 1).collect();
        let refs: Vec<i64> = (0..n)
            .map(|i| users[(mix64(i as u64) % i.max(1) as u64) as usize])
            .collect();
        let valid: Vec<bool> = (0..n).map(|i| i % 10 != 0).collect();
        let name = |id: i64| format!("ch{}", id % 7);
        let (mut offsets, mut data, mut has) = (vec![0i64], Vec::new(), Vec::new());
        for &u in &users {
            if u % 5 == 0 {
                data.extend_from_slice(name(u).as_bytes());
            }
            offsets.push(data.len() as i64);
            has.push(u % 5 == 0);
        }
        let input = |r: std::ops::Range<usize>| ReferralInput {
            channel: Some(StrColumn {
                offsets: &offsets[r.start..=r.end],
                data: &data,
                valid: Some(&has[r.clone()]),
            }),
            ..test_input(&users[r.clone()], &refs[r.clone()], &valid[r])
        };
        let check = |f: &Forest| {
            let ch = f.channels().expect("channels");
            assert_eq!(ch.codes.len(), f.num_users());
            assert_eq!(ch.names.len(), 7);
            for u in 0..f.num_users() as u32 {
                let IdRef::Int(id) = f.ids().get(u) else {
                    unreachable!()
                };
                match ch.codes[u as usize] {
                    NO_CHANNEL => assert_ne!(id % 5, 0, "user {id}"),
                    c => assert_eq!(ch.names[c as usize], name(id), "user {id}"),
                }
            }
        };
        let whole = Forest::build(&input(0..n), OnInvalid::Raise)
            .unwrap()
            .forest;
        assert_eq!(whole.num_users(), n);
        check(&whole);
        let split = 100_000;
        let base = Forest::build(&input(0..split), OnInvalid::Raise)
            .unwrap()
            .forest;
        let more = base
            .extend(&input(split..n), OnInvalid::Raise)
            .unwrap()
            .forest;
        assert_eq!(more.num_users(), n);
        check(&more);
    }

    use super::test_input as input;

    fn ids_of(f: &Forest) -> Vec<i64> {
        match &f.ids {
            IdValues::Int(v) => v.clone(),
            _ => panic!("int ids"),
        }
    }

    #[test]
    fn ancestor_table_matches_parent_walks() {
        // A random forest: user i's referrer is a random earlier user, or none.
        let n = 5_000i64;
        let users: Vec<i64> = (0..n).map(|i| i * 7 + 3).collect();
        let mut state = 42u64;
        let refs: Vec<i64> = (0..n)
            .map(|i| {
                state = mix64(state.wrapping_add(i as u64));
                if i == 0 || state.is_multiple_of(13) {
                    -1
                } else {
                    users[(state % i as u64) as usize]
                }
            })
            .collect();
        let valid: Vec<bool> = refs.iter().map(|&r| r >= 0).collect();
        let f = Forest::build(&input(&users, &refs, &valid), OnInvalid::Raise)
            .unwrap()
            .forest;
        // Built (breadth-first: records by layer) and extended with new
        // users, a new root after non-roots among them (not breadth-first:
        // records from the ancestor table).
        let g = f
            .extend(
                &input(&[-1, -2, -3], &[users[7], 0, -2], &[true, false, true]),
                OnInvalid::Raise,
            )
            .unwrap()
            .forest;
        assert!(f.bfs_ordered && !g.bfs_ordered);
        for f in [&f, &g] {
            let up = f.ancestors();
            assert!(
                matches!(up, Ancestors::Chains(c) if c.len() == f.num_users()),
                "integer ids: one record per user"
            );
            for u in 0..f.num_users() {
                let mut a = u as UserIx;
                for k in 0..UP {
                    a = if a == NO_USER {
                        NO_USER
                    } else {
                        f.parent()[a as usize]
                    };
                    assert_eq!(up.of(u as UserIx)[k], a, "user {u}, ancestor {}", k + 1);
                }
                let known = up
                    .of(u as UserIx)
                    .iter()
                    .take_while(|&&a| a != NO_USER)
                    .count();
                assert_eq!(known, (f.depth()[u] as usize).min(UP));
            }
            // The walk's records: the same ancestors, with their ids, one line each.
            let chains = f.chains().expect("integer ids");
            let IdValues::Int(ids) = f.ids() else {
                unreachable!()
            };
            assert_eq!(std::mem::size_of::<Chain>(), 64);
            assert!((chains.as_ptr() as usize).is_multiple_of(64));
            for (u, c) in chains.iter().enumerate() {
                for k in 0..UP {
                    let a = c.up[k];
                    let want = if a == NO_USER { 0 } else { ids[a as usize] };
                    assert_eq!(c.ids[k], want, "user {u}, ancestor {}", k + 1);
                }
            }
        }
    }

    #[test]
    fn build_reports_every_pass_and_stops_once_cancelled() {
        let users: Vec<i64> = (0..10_000).collect();
        let refs: Vec<i64> = users.iter().map(|&u| u / 3).collect();
        let valid: Vec<bool> = users.iter().map(|&u| u > 0).collect();
        let input_of = input;
        let input = input_of(&users, &refs, &valid);
        let p = Progress::new();
        let b = Forest::build_watched(&input, OnInvalid::Raise, &p).unwrap();
        assert_eq!(p.get(), (BUILD_PASSES * 10_000, BUILD_PASSES * 10_000));
        let more = [10_000i64, 10_001];
        let (more_refs, ok) = ([5i64, 10_000], [true, true]);
        let e = b
            .forest
            .extend_watched(&input_of(&more, &more_refs, &ok), OnInvalid::Raise, &p)
            .unwrap();
        assert_eq!(e.forest.num_users(), 10_002);
        assert_eq!(p.get(), (BUILD_PASSES * 2, BUILD_PASSES * 2));
        let cancelled = Progress::new();
        cancelled.cancel();
        let r = Forest::build_watched(&input, OnInvalid::Raise, &cancelled);
        assert!(matches!(r, Err(Error::Interrupted)));
    }

    #[test]
    fn heap_bytes_count_the_tables_built_on_first_use() {
        let users: Vec<i64> = (0..1000).map(|u| u * 7919).collect();
        let refs: Vec<i64> = users.iter().map(|&u| (u / 7919 / 2) * 7919).collect();
        let valid: Vec<bool> = (0..1000).map(|u| u > 0).collect();
        let f = Forest::build(&input(&users, &refs, &valid), OnInvalid::Raise)
            .unwrap()
            .forest;
        // Ids spread wide: hashed, and the build keeps its keyed table.
        let keyed = f
            .keyed
            .get()
            .and_then(Option::as_ref)
            .map_or(0, KeyedSlots::heap_bytes);
        assert!(keyed >= 16 * 1000, "ids spread wide: a hash index, keyed");
        let before = f.heap_bytes();
        assert_eq!(
            before - keyed,
            f.ids.heap_bytes() + f.index.heap_bytes() + 8 * 1000
        );
        f.chains();
        let with_chains = f.heap_bytes();
        assert_eq!(with_chains - before, 1000 * std::mem::size_of::<Chain>());
        f.lookup_ints(&users, |_| true);
        assert_eq!(
            f.heap_bytes(),
            with_chains,
            "the keyed table is there already"
        );
        f.depth_u8();
        assert_eq!(f.heap_bytes() - with_chains, 1000);
        // Extended, the graph builds its keyed copy on first use.
        let more = [1i64 << 40];
        let g = f
            .extend(&input(&more, &[0], &[true]), OnInvalid::Raise)
            .unwrap()
            .forest;
        assert!(g.keyed.get().is_none());
        let plain = g.heap_bytes();
        g.lookup_ints(&more, |_| true);
        let keyed = g
            .keyed
            .get()
            .and_then(Option::as_ref)
            .map_or(0, KeyedSlots::heap_bytes);
        assert_eq!(g.heap_bytes() - plain, keyed);
    }

    #[test]
    fn keyed_table_of_a_build_agrees_with_its_index() {
        // Wide ids (hashed), a repeated id, and a third of the referrers
        // without a row: implicit roots that make the keyed table grow.
        let n = 3000i64;
        let mut users: Vec<i64> = (0..n).map(|u| u * 1_000_003 + 17).collect();
        users[2999] = users[5];
        let refs: Vec<i64> = (0..n)
            .map(|u| {
                if u % 3 == 0 {
                    -(u + 1) * 999_983
                } else {
                    users[(u / 2) as usize]
                }
            })
            .collect();
        let valid: Vec<bool> = (0..n).map(|u| u != 1).collect();
        let b = Forest::build(&input(&users, &refs, &valid), OnInvalid::Drop).unwrap();
        assert_eq!(b.issues.len(), 1, "the repeated id");
        assert_eq!(b.issues[0].row, 2999);
        let f = b.forest;
        assert_eq!(f.num_users(), 2999 + 1000);
        let ids = ids_of(&f);
        let keyed = f
            .keyed
            .get()
            .and_then(Option::as_ref)
            .expect("kept by the build");
        assert_eq!(Some(keyed), f.index.keyed(&ids).as_ref(), "slot for slot");
        let absent = [i64::MIN, 0, 1 << 50, -999_983 * 2];
        let keys: Vec<i64> = ids.iter().copied().chain(absent).collect();
        let want: Vec<UserIx> = (0..ids.len() as UserIx)
            .chain(absent.map(|_| NO_USER))
            .collect();
        assert_eq!(f.lookup_ints(&keys, |_| true), want);
        for (&k, &w) in keys.iter().zip(&want) {
            assert_eq!(
                f.lookup(IdRef::Int(k)),
                (w != NO_USER).then_some(w),
                "id {k}"
            );
        }
        // No rows: no range, so the keyed path, with nothing to renumber.
        let empty = Forest::build(&input(&[], &[], &[]), OnInvalid::Raise)
            .unwrap()
            .forest;
        assert_eq!(empty.num_users(), 0);
        assert_eq!(empty.lookup_ints(&absent, |_| true), vec![NO_USER; 4]);
    }

    #[test]
    fn chain_with_implicit_root_is_numbered_topologically() {
        // 3 <- 2 <- 1 <- 100 (100 has no row: implicit root)
        let users = [3, 2, 1];
        let refs = [2, 1, 100];
        let b = Forest::build(&input(&users, &refs, &[true; 3]), OnInvalid::Raise).unwrap();
        let f = b.forest;
        assert_eq!(f.num_users(), 4);
        assert_eq!(f.num_roots(), 1);
        assert_eq!(f.max_depth(), 3);
        assert_eq!(ids_of(&f), vec![100, 1, 2, 3]);
        assert_eq!(f.parent(), &[NO_USER, 0, 1, 2]);
        assert_eq!(f.depth(), &[0, 1, 2, 3]);
        assert_eq!(f.children(0), &[1]);
        assert_eq!(f.lookup(IdRef::Int(2)), Some(2));
        assert_eq!(f.lookup(IdRef::Int(7)), None);
    }

    #[test]
    fn id_range_skips_masked_values_in_every_chunk() {
        // Three chunks and a tail; masked values far outside the range.
        let n = 3 * (1 << 16) + 77;
        let ids: Vec<i64> = (0..n as i64).map(|i| (i * 7919) % 100_003).collect();
        let valid: Vec<bool> = (0..n).map(|i| i % 5 != 3).collect();
        let mut masked = ids.clone();
        for (x, &ok) in masked.iter_mut().zip(&valid) {
            if !ok {
                *x = if x.is_positive() { i64::MAX } else { i64::MIN };
            }
        }
        let kept = || {
            ids.iter()
                .zip(&valid)
                .filter(|(_, &ok)| ok)
                .map(|(&x, _)| x)
        };
        let want = (kept().min().unwrap(), kept().max().unwrap());
        let col = (IdSlice::Int(&masked), Some(valid.as_slice()));
        assert_eq!(int_range(&[col]), Some(want));
        let none = vec![false; n];
        assert_eq!(int_range(&[(IdSlice::Int(&masked), Some(&none))]), None);
        // Columns widen each other; an unmasked column counts every value.
        let wide = [-5i64, 200_000];
        let both = int_range(&[col, (IdSlice::Int(&wide), None)]);
        assert_eq!(both, Some((-5, 200_000)));
        assert_eq!(int_range(&[]), None);
    }

    #[test]
    fn depths_by_wave_match_a_sweep() {
        // Roots, a wide layer (parallel blocks), a chain of one-user
        // layers, then a cycle's subtree placed after the layers.
        let mut up: Vec<u32> = vec![NO_USER; 3];
        up.extend((0..10_000u32).map(|i| i / 3_334));
        for _ in 0..50 {
            up.push(up.len() as u32 - 1);
        }
        let layered = up.len();
        up.extend([NO_USER, layered as u32, layered as u32 + 1, 5]);
        let root_depth = |i: usize| i as u32 % 4;
        let mut want = vec![0u32; up.len()];
        for i in 0..up.len() {
            want[i] = match up[i] {
                NO_USER => root_depth(i),
                p => want[p as usize] + 1,
            };
        }
        assert_eq!(depths(&up, layered, root_depth), want);
        assert_eq!(depths(&[], 0, root_depth), Vec::<u32>::new());
    }

    #[test]
    fn duplicate_is_an_error_or_a_dropped_row() {
        let users = [1, 2, 1];
        let refs = [0, 1, 2];
        let valid = [false, true, true];
        let e = Forest::build(&input(&users, &refs, &valid), OnInvalid::Raise).unwrap_err();
        assert!(
            matches!(
                e,
                Error::DuplicateUser {
                    row: 2,
                    first_row: Some(0),
                    ..
                }
            ),
            "{e}"
        );
        let b = Forest::build(&input(&users, &refs, &valid), OnInvalid::Drop).unwrap();
        assert_eq!(b.forest.num_users(), 2);
        assert_eq!(b.issues.len(), 1);
        assert_eq!(b.issues[0].kind, IssueKind::DuplicateUser);
        assert_eq!(b.issues[0].row, 2);
    }

    #[test]
    fn cycle_is_listed_in_referral_order() {
        // 1 referred 2, 2 referred 3, 3 referred 1; 4 hangs below 3.
        let users = [2, 3, 1, 4];
        let refs = [1, 2, 3, 3];
        let e = Forest::build(&input(&users, &refs, &[true; 4]), OnInvalid::Raise).unwrap_err();
        match e {
            Error::Cycle(ids) => assert_eq!(ids, vec!["2", "3", "1"]),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn dropping_a_cycle_breaks_it_at_the_latest_joiner() {
        let users = [2, 3, 1, 4];
        let refs = [1, 2, 3, 3];
        let joined = [10, 30, 20, 40];
        let mut inp = input(&users, &refs, &[true; 4]);
        inp.joined_at = Some((&joined, None));
        let b = Forest::build(&inp, OnInvalid::Drop).unwrap();
        assert_eq!(b.issues.len(), 1);
        assert_eq!(b.issues[0].id.as_deref(), Some("3"));
        let f = b.forest;
        assert_eq!(f.num_roots(), 1);
        assert_eq!(ids_of(&f)[0], 3);
        assert_eq!(f.max_depth(), 2);
    }

    #[test]
    fn a_million_user_ring_is_found_without_recursion() {
        let n = 1_000_000i64;
        let users: Vec<i64> = (0..n).collect();
        let refs: Vec<i64> = (0..n).map(|i| (i + 1) % n).collect();
        let valid = vec![true; n as usize];
        match Forest::build(&input(&users, &refs, &valid), OnInvalid::Raise) {
            Err(Error::Cycle(ids)) => assert_eq!(ids.len(), n as usize),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_million_deep_chain_builds() {
        let n = 1_000_000i64;
        let users: Vec<i64> = (1..=n).collect();
        let refs: Vec<i64> = (0..n).collect();
        let valid = vec![true; n as usize];
        let f = Forest::build(&input(&users, &refs, &valid), OnInvalid::Raise)
            .unwrap()
            .forest;
        assert_eq!(f.max_depth(), n as u32);
        assert_eq!(f.num_roots(), 1);
    }

    #[test]
    fn has_referrer_and_short_depths_match_parents_in_any_numbering() {
        // Built: breadth-first (roots first). Extended with a new root
        // after non-roots: not breadth-first, so the parent array decides.
        let f = Forest::build(
            &input(&[5, 1, 2, 3], &[1, 0, 1, 2], &[true, false, true, true]),
            OnInvalid::Raise,
        )
        .unwrap()
        .forest;
        let g = f
            .extend(&input(&[9, 8], &[0, 9], &[false, true]), OnInvalid::Raise)
            .unwrap()
            .forest;
        assert!(f.bfs_ordered && !g.bfs_ordered);
        for h in [&f, &g] {
            for u in 0..h.num_users() as UserIx {
                assert_eq!(h.has_referrer(u), h.parent()[u as usize] != NO_USER);
                assert_eq!(h.depth_u8()[u as usize] as u32, h.depth()[u as usize]);
            }
        }
        let deep: Vec<i64> = (0..300).collect();
        let refs: Vec<i64> = (0..300).map(|i| i - 1).collect();
        let valid: Vec<bool> = (0..300).map(|i| i > 0).collect();
        let d = Forest::build(&input(&deep, &refs, &valid), OnInvalid::Raise)
            .unwrap()
            .forest;
        assert_eq!(
            d.depth_u8()[299],
            255,
            "capped at the most levels a policy has"
        );
        assert!(g.layer_starts(3).is_none(), "not breadth-first");
        // Layer starts count min(depth, levels) for every user, levels
        // beyond the depth included.
        for h in [&f, &d] {
            for levels in [1, 2, 3, 8, 299, 400] {
                let s = h.layer_starts(levels).unwrap();
                for u in 0..h.num_users() as UserIx {
                    let want = (h.depth()[u as usize] as usize).min(levels);
                    assert_eq!(s.iter().filter(|&&x| u >= x).count(), want);
                    assert_eq!(s.partition_point(|&x| x <= u), want);
                }
            }
        }
    }

    #[test]
    fn extend_appends_users_below_existing_ones() {
        let f = Forest::build(&input(&[1, 2], &[0, 1], &[false, true]), OnInvalid::Raise)
            .unwrap()
            .forest;
        let g = f
            .extend(&input(&[3, 4], &[2, 3], &[true, true]), OnInvalid::Raise)
            .unwrap()
            .forest;
        assert_eq!(g.num_users(), 4);
        assert_eq!(g.max_depth(), 3);
        assert_eq!(g.lookup(IdRef::Int(4)), Some(3));
        assert_eq!(f.num_users(), 2, "the old graph is unchanged");
        let e = f
            .extend(&input(&[2], &[1], &[true]), OnInvalid::Raise)
            .unwrap_err();
        assert!(e.to_string().contains("already in the graph"), "{e}");
    }

    #[test]
    fn from_parts_rejects_non_topological_parents() {
        let e = Forest::from_parts(
            IdValues::Int(vec![5, 6]),
            IdIndex::for_ids(IdKind::Int, 2, None),
            vec![1, NO_USER],
            None,
            None,
            None,
        );
        assert!(e.is_err());
    }

    quickcheck::quickcheck! {
        fn prop_drop_mode_always_yields_a_valid_forest(rows: Vec<(Option<u8>, Option<u8>)>) -> bool {
            let users: Vec<i64> = rows.iter().map(|r| r.0.unwrap_or(0) as i64 % 24).collect();
            let uvalid: Vec<bool> = rows.iter().map(|r| r.0.is_some()).collect();
            let refs: Vec<i64> = rows.iter().map(|r| r.1.unwrap_or(0) as i64 % 24).collect();
            let rvalid: Vec<bool> = rows.iter().map(|r| r.1.is_some()).collect();
            let mut inp = input(&users, &refs, &rvalid);
            inp.user_valid = Some(&uvalid);
            let built = Forest::build(&inp, OnInvalid::Drop).expect("drop mode never fails");
            let f = &built.forest;
            let n = f.num_users() as u32;
            let structure_ok = (0..n).all(|u| {
                let p = f.parent()[u as usize];
                let depth_ok = if p == NO_USER {
                    f.depth()[u as usize] == 0
                } else {
                    p < u && f.depth()[u as usize] == f.depth()[p as usize] + 1
                };
                depth_ok && f.lookup(f.ids().get(u)) == Some(u) && f.children(u).iter().all(|&c| f.parent()[c as usize] == u)
            });
            let strict = Forest::build(&inp, OnInvalid::Raise);
            structure_ok && (strict.is_err() != built.issues.is_empty())
        }
    }
}
