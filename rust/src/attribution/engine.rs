//! The batch attribution pass.
//!
//! 1. Validate rows (strict or lenient) and map buyers to user indices in
//!    prefetching batches, in parallel.
//! 2. Precompute qualification: per user, the first positive purchase time
//!    ("purchased") or a time-sorted timeline with prefix sums (`MinSpend`,
//!    one binary search per query).
//! 3. Mark creditable events; keep each buyer's first N (`limits`). Events
//!    are put in (ts, input row) order only for first-N and `MinSpend`.
//! 4. Walk each eligible event's chain in parallel over fixed chunks of
//!    input rows, written in chunk order, so the ledger is in input order
//!    and identical on any number of threads. With integer ids and every
//!    ancestor qualified, the walk also writes the output columns (`Wide`).
//! 5. Apply caps (`limits`), then sum totals (`totals`) and stats in a
//!    fixed order (deterministic for floats too). Without caps, integer
//!    rows are grouped for the totals by each walk chunk while in cache.
//!
//! O(m log m + m·D) time; memory: the ledger plus a few arrays per user.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;

use rayon::prelude::*;

use super::limits::{self, Eligible};
use super::money::Money;
use super::policy::{Policy, Qualify};
use super::ranges::SharedMut;
use super::totals::{totals, Ranged, Totals};
use crate::error::{Error, Issue, IssueKind, OnInvalid, Result};
use crate::forest::{Chain, Forest, NULL_TS, UP};
use crate::ids::{prefetch, IdSlice, IdValues, UserIx, NO_USER};
use crate::progress::Progress;

/// Rows per parallel work item: fixed, so results never depend on threads.
pub(crate) const CHUNK: usize = 1 << 13;
/// Events whose chains are walked together (their cache misses overlap).
const GROUP: usize = 16;

/// An events table, borrowed from the caller's Arrow buffers.
#[derive(Debug, Clone, Copy)]
pub struct EventInput<'a, T> {
    pub buyer: IdSlice<'a>,
    pub buyer_valid: Option<&'a [bool]>,
    pub amount: &'a [T],
    pub amount_valid: Option<&'a [bool]>,
    /// Nanoseconds since the epoch; `None`: the table has no ts column.
    pub ts: Option<(&'a [i64], Option<&'a [bool]>)>,
    /// Validity of the event id column, when there is one.
    pub event_id_valid: Option<&'a [bool]>,
    /// The event ids when they are int64 (the ledger's `event_id` is then
    /// written by the walk; otherwise it is the input row).
    pub event_id: Option<&'a [i64]>,
    /// The caller reads `Ledger::event_row` itself (non-int64 event ids
    /// taken by row, distributed runs); otherwise the walk may leave it and
    /// `Ledger::beneficiary` empty where the engine does not need them.
    pub keep_rows: bool,
    pub buyer_col: &'a str,
    pub amount_col: &'a str,
    pub ts_col: &'a str,
    pub event_id_col: &'a str,
}

/// One row per paid level, in input event order, then level.
#[derive(Debug, Clone, PartialEq)]
pub struct Ledger<T> {
    /// The event's input row (its buyer and amount are read from there).
    /// Empty, like `beneficiary`, when the walk wrote `wide`, no cap
    /// follows, the totals came from the walk and the caller does not ask
    /// for rows (`EventInput::keep_rows`): 8 bytes a row less to write.
    pub event_row: Vec<u32>,
    pub beneficiary: Vec<UserIx>,
    pub level: Vec<u8>,
    pub credit: Vec<T>,
    /// The output columns the rows above stand for, when the walk could
    /// write them itself (integer ids, every ancestor qualified): saves
    /// gathering them by row and user afterwards.
    pub wide: Option<Wide<T>>,
}

/// A ledger's output columns, row for row (see `Ledger::wide`).
#[derive(Debug, Clone, PartialEq)]
pub struct Wide<T> {
    /// The event's int64 id, or its input row when the events have none.
    pub event_id: Vec<i64>,
    pub buyer_id: Vec<i64>,
    pub beneficiary_id: Vec<i64>,
    pub amount: Vec<T>,
    pub rate: Vec<f64>,
}

impl<T> Default for Ledger<T> {
    fn default() -> Self {
        Ledger {
            event_row: Vec::new(),
            beneficiary: Vec::new(),
            level: Vec::new(),
            credit: Vec::new(),
            wide: None,
        }
    }
}

impl<T> Ledger<T> {
    pub fn len(&self) -> usize {
        self.level.len()
    }
    pub fn is_empty(&self) -> bool {
        self.level.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats<T> {
    pub events: u64,
    pub creditable_events: u64,
    pub unknown_buyer_events: u64,
    pub ledger_rows: u64,
    pub credited: T,
    pub forfeited: T,
    pub capped_off: T,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attribution<T> {
    pub ledger: Ledger<T>,
    pub totals: Totals<T>,
    pub stats: Stats<T>,
    pub issues: Vec<Issue>,
}

fn overflow(what: &str) -> Error {
    Error::Overflow(format!("{what} does not fit the amount type"))
}

pub(crate) fn sum<T: Money>(a: T, b: T, what: &str) -> Result<T> {
    a.checked_add(b).ok_or_else(|| overflow(what))
}

/// State computed over all events of a distributed run (DESIGN.md
/// "Beyond one machine"), so that one batch of events is attributed as it
/// would be within the whole table.
#[derive(Debug)]
pub struct Global<T> {
    /// Qualification from all events (instead of this batch's).
    pub qualification: Option<Qualification<T>>,
    /// Per row of the batch: among its buyer's first N creditable events
    /// over all events (instead of first-N within the batch).
    pub allowed: Option<Vec<bool>>,
    /// Leave caps to a later pass over all of a beneficiary's credits.
    pub skip_cap: bool,
}

/// Whether ancestor `a` is qualified at time `t`.
#[derive(Debug)]
pub enum Qualification<T> {
    Always,
    /// First time each user bought with a positive amount (`i64::MAX`: never).
    FirstPurchase(Vec<i64>),
    /// Per user, times sorted ascending and prefix sums of amounts.
    Timeline {
        offsets: Vec<u32>,
        ts: Vec<i64>,
        prefix: Vec<T>,
        min: T,
    },
}

impl<T: Money> Qualification<T> {
    /// Hints the cache about `a`'s qualification data.
    #[inline]
    pub fn prefetch(&self, a: UserIx) {
        match self {
            Qualification::Always => {}
            Qualification::FirstPurchase(first) => prefetch(&first[a as usize]),
            Qualification::Timeline { offsets, .. } => prefetch(&offsets[a as usize]),
        }
    }

    #[inline]
    pub fn qualified(&self, a: UserIx, t: i64) -> bool {
        match self {
            Qualification::Always => true,
            Qualification::FirstPurchase(first) => first[a as usize] <= t,
            Qualification::Timeline {
                offsets,
                ts,
                prefix,
                min,
            } => {
                let (lo, hi) = (
                    offsets[a as usize] as usize,
                    offsets[a as usize + 1] as usize,
                );
                let k = ts[lo..hi].partition_point(|&x| x <= t);
                let spent = if k == 0 { T::ZERO } else { prefix[lo + k - 1] };
                spent >= *min
            }
        }
    }
}

impl<T> Default for Global<T> {
    fn default() -> Self {
        Global {
            qualification: None,
            allowed: None,
            skip_cap: false,
        }
    }
}

impl<T> Global<T> {
    fn check(&self, num_users: usize, rows: usize) -> Result<()> {
        let bad = |what: &str| Err(Error::Schema(format!("distributed state: {what}")));
        if self.allowed.as_ref().is_some_and(|a| a.len() != rows) {
            return bad("the allowed-rows mask does not match the batch");
        }
        match &self.qualification {
            Some(Qualification::FirstPurchase(v)) if v.len() != num_users => {
                bad("first purchases do not match the graph's users")
            }
            Some(Qualification::Timeline {
                offsets,
                ts,
                prefix,
                ..
            }) if offsets.len() != num_users + 1
                || ts.len() != prefix.len()
                || offsets.last().map(|&o| o as usize) != Some(ts.len())
                || offsets.windows(2).any(|w| w[0] > w[1]) =>
            {
                bad("the spend timeline does not match the graph's users")
            }
            _ => Ok(()),
        }
    }
}

/// Everything the passes share about the (validated) events.
pub(crate) struct Prepared<'a, T> {
    pub(crate) ev: &'a EventInput<'a, T>,
    /// Row passed validation.
    ok: Option<Vec<bool>>,
    /// Buyer of each row (`NO_USER`: unknown, or the row was left out).
    pub(crate) buyer: Vec<UserIx>,
    /// Valid rows in (ts, row) order, built only when a rule needs it
    /// (first-N, caps, `MinSpend`).
    order: OnceLock<Vec<u32>>,
}

impl<T: Money> Prepared<'_, T> {
    pub(crate) fn order(&self) -> &[u32] {
        self.order
            .get_or_init(|| event_order(self.ev, self.ok.as_deref()))
    }

    #[inline]
    pub(crate) fn ts(&self, r: usize) -> i64 {
        // No ts column: every event at time 0, so "ts <= t" always holds
        // (qualification uses all events) and (ts, row) order is row order.
        self.ev.ts.map_or(0, |(v, _)| v[r])
    }
    #[inline]
    fn ok(&self, r: usize) -> bool {
        self.ok.as_ref().is_none_or(|o| o[r])
    }
}

/// Attributes `events` over `forest` under `policy`.
///
/// Errors: `Policy` when the policy needs `ts` or `joined_at` and the input
/// lacks it; `Schema` for id kinds that differ; `Invalid` (strict mode)
/// for null ids, amounts or ts, NaN/infinite amounts; `Overflow` when a
/// total does not fit the amount type.
pub fn attribute<T: Money>(
    forest: &Forest,
    ev: &EventInput<'_, T>,
    policy: &Policy<T>,
    mode: OnInvalid,
) -> Result<Attribution<T>> {
    attribute_global(
        forest,
        ev,
        policy,
        mode,
        &Progress::new(),
        Global::default(),
    )
}

/// [`attribute`], reporting events walked to `progress` (stopping with
/// `Interrupted` once it is cancelled), with `global` state from all
/// events of a distributed run (`Global::default()` for a whole table).
/// Errors as [`attribute`], and `Schema` when the state's arrays do not
/// match the graph or the batch.
pub fn attribute_global<T: Money>(
    forest: &Forest,
    ev: &EventInput<'_, T>,
    policy: &Policy<T>,
    mode: OnInvalid,
    progress: &Progress,
    global: Global<T>,
) -> Result<Attribution<T>> {
    check_inputs(forest, ev, policy)?;
    global.check(forest.num_users(), ev.amount.len())?;
    progress.start(ev.amount.len() as u64);
    let (prep, issues) = prepare(forest, ev, mode)?;
    let qual = match global.qualification {
        Some(q) => q,
        None => qualification(forest, &prep, policy)?,
    };
    let eligible = limits::eligible(forest, &prep, policy, global.allowed.as_deref());
    let capped = policy.cap_per_beneficiary.is_some() && !global.skip_cap;
    let walked = walk(forest, &prep, policy, &qual, &eligible, !capped, progress)?;
    let (mut ledger, forfeited, ranged) = (walked.ledger, walked.forfeited, walked.ranged);
    let creditable = match eligible {
        Eligible::Creditable => walked.events,
        Eligible::Rows(_, count) => count,
    };
    let capped_off = match policy.cap_per_beneficiary {
        Some(cap) if capped => {
            limits::apply_cap(forest.num_users(), |r| prep.ts(r), &mut ledger, cap)?
        }
        _ => T::ZERO,
    };
    let totals = totals(
        forest,
        &ledger.beneficiary,
        &ledger.level,
        &ledger.credit,
        policy.levels(),
        ranged.as_ref(),
    )?;
    let credited = match exact_sum(&totals.credit) {
        Some(c) => c,
        None => {
            // Per fixed chunk, then chunks in order: the same float sum on
            // any number of threads.
            let partial: Vec<Result<T>> = ledger
                .credit
                .par_chunks(CHUNK)
                .map(|c| {
                    c.iter()
                        .try_fold(T::ZERO, |a, &x| sum(a, x, "the credited total"))
                })
                .collect();
            let mut credited = T::ZERO;
            for p in partial {
                credited = sum(credited, p?, "the credited total")?;
            }
            credited
        }
    };
    let valid = prep
        .ok
        .as_ref()
        .map_or(ev.amount.len(), |o| o.iter().filter(|&&x| x).count());
    let unknown = (0..ev.amount.len())
        .into_par_iter()
        .filter(|&r| prep.ok(r) && prep.buyer[r] == NO_USER)
        .count();
    let stats = Stats {
        events: valid as u64,
        creditable_events: creditable,
        unknown_buyer_events: unknown as u64,
        ledger_rows: ledger.len() as u64,
        credited,
        forfeited,
        capped_off,
    };
    Ok(Attribution {
        ledger,
        totals,
        stats,
        issues,
    })
}

/// The sum of integer values, exact in any order (128-bit), when each and
/// the sum fit an i64: the credited total from the beneficiaries' totals
/// instead of a pass over the whole ledger. `None` for floats and for
/// values beyond i64 (the ledger is summed then).
fn exact_sum<T: Money>(xs: &[T]) -> Option<T> {
    T::ZERO.to_i64()?;
    let mut s = 0i128;
    for &x in xs {
        s += x.to_i64()? as i128;
    }
    i64::try_from(s).ok().map(T::from_i64)
}

fn check_id_kind<T>(forest: &Forest, ev: &EventInput<'_, T>) -> Result<()> {
    if ev.buyer.kind() != forest.id_kind() {
        return Err(Error::Schema(format!(
            "column {} of the events holds {} ids but the graph's ids are {}",
            ev.buyer_col,
            ev.buyer.kind().name(),
            forest.id_kind().name()
        )));
    }
    Ok(())
}

pub(crate) fn check_inputs<T: Money>(
    forest: &Forest,
    ev: &EventInput<'_, T>,
    policy: &Policy<T>,
) -> Result<()> {
    check_id_kind(forest, ev)?;
    if policy.window_ns.is_some() {
        if ev.ts.is_none() {
            return Err(Error::Policy(format!(
                "the policy has a window, which needs the events' {} column",
                ev.ts_col
            )));
        }
        if forest.joined_at().is_none() {
            return Err(Error::Policy(
                "the policy has a window, which needs joined_at in the referrals".into(),
            ));
        }
    }
    Ok(())
}

/// Validated buyers as user indices (`NO_USER`: unknown, or the row was
/// left out), the number of valid rows, and the rows left out.
pub fn buyers<T: Money>(
    forest: &Forest,
    ev: &EventInput<'_, T>,
    mode: OnInvalid,
) -> Result<(Vec<UserIx>, usize, Vec<Issue>)> {
    check_id_kind(forest, ev)?;
    let (prep, issues) = prepare(forest, ev, mode)?;
    let valid = ev.amount.len() - issues.len();
    Ok((prep.buyer, valid, issues))
}

/// Strict validation, buyers as user indices, and the (ts, row) order.
pub(crate) fn validated_order<T: Money>(
    forest: &Forest,
    ev: &EventInput<'_, T>,
) -> Result<(Vec<UserIx>, Vec<u32>)> {
    let (prep, _) = prepare(forest, ev, OnInvalid::Raise)?;
    let order = prep.order().to_vec();
    Ok((prep.buyer, order))
}

fn prepare<'a, T: Money>(
    forest: &Forest,
    ev: &'a EventInput<'a, T>,
    mode: OnInvalid,
) -> Result<(Prepared<'a, T>, Vec<Issue>)> {
    let m = ev.amount.len();
    if ev.buyer.len() != m {
        return Err(Error::Schema("events columns differ in length".into()));
    }
    if m >= u32::MAX as usize {
        return Err(Error::Schema(format!(
            "{m} events: more than one call takes"
        )));
    }
    let null = |v: Option<&[bool]>, r: usize| v.is_some_and(|v| !v[r]);
    let problem = |r: usize| -> Option<(&str, IssueKind, &str)> {
        if null(ev.event_id_valid, r) {
            Some((ev.event_id_col, IssueKind::NullEventId, "null event id"))
        } else if null(ev.buyer_valid, r) {
            Some((ev.buyer_col, IssueKind::NullId, "null user id"))
        } else if null(ev.amount_valid, r) {
            Some((ev.amount_col, IssueKind::NullAmount, "null amount"))
        } else if !ev.amount[r].is_finite() {
            Some((
                ev.amount_col,
                IssueKind::InvalidAmount,
                "amount is NaN or infinite",
            ))
        } else if null(ev.ts.and_then(|(_, v)| v), r) {
            Some((ev.ts_col, IssueKind::NullTs, "null ts"))
        } else {
            None
        }
    };
    // No null masks and an amount type without NaN: no row can be bad, and
    // the scan (a pass over every row) is skipped.
    let unchecked = ev.event_id_valid.is_none()
        && ev.buyer_valid.is_none()
        && ev.amount_valid.is_none()
        && ev.ts.is_none_or(|(_, v)| v.is_none())
        && T::ALWAYS_FINITE;
    let bad: Vec<u32> = if unchecked {
        Vec::new()
    } else {
        (0..m)
            .into_par_iter()
            .filter(|&r| problem(r).is_some())
            .map(|r| r as u32)
            .collect()
    };
    let mut issues = Vec::new();
    let mut ok = None;
    if !bad.is_empty() {
        let mut mask = vec![true; m];
        for &r in &bad {
            let r = r as usize;
            let (column, kind, reason) = problem(r).expect("row was flagged");
            let id = (!null(ev.buyer_valid, r)).then(|| ev.buyer.get(r).to_string());
            if mode == OnInvalid::Raise {
                return Err(Error::Invalid {
                    column: column.to_string(),
                    row: Some(r as u64),
                    id,
                    reason: reason.to_string(),
                });
            }
            issues.push(Issue {
                row: r as u64,
                id,
                column: column.to_string(),
                kind,
                message: format!("{reason}: event left out"),
            });
            mask[r] = false;
        }
        ok = Some(mask);
    }
    let keep = |r: usize| ok.as_ref().is_none_or(|o| o[r]);
    let buyer = match (ev.buyer, forest.ids()) {
        (IdSlice::Int(keys), IdValues::Int(_)) => forest.lookup_ints(keys, keep),
        _ => forest.lookup_many(m, |r| keep(r).then(|| ev.buyer.get(r))),
    };
    Ok((
        Prepared {
            ev,
            ok,
            buyer,
            order: OnceLock::new(),
        },
        issues,
    ))
}

/// Valid rows in (ts, row) order (row order when there is no ts column or
/// the table is already sorted by ts).
fn event_order<T>(ev: &EventInput<'_, T>, ok: Option<&[bool]>) -> Vec<u32> {
    let m = ev.amount.len();
    let keep = |r: usize| ok.is_none_or(|o| o[r]);
    let rows = || (0..m).filter(move |&r| keep(r)).map(|r| r as u32);
    let Some((ts, _)) = ev.ts else {
        return rows().collect();
    };
    if crate::par::all(m, |r| r == 0 || ts[r - 1] <= ts[r]) {
        return rows().collect();
    }
    // Sort packed (ts, row) keys: comparisons touch only the keys, not
    // random rows of the ts column.
    let mut keys: Vec<(i64, u32)> = rows().map(|r| (ts[r as usize], r)).collect();
    keys.par_sort_unstable();
    keys.into_iter().map(|(_, r)| r).collect()
}

fn qualification<T: Money>(
    forest: &Forest,
    prep: &Prepared<'_, T>,
    policy: &Policy<T>,
) -> Result<Qualification<T>> {
    let n = forest.num_users();
    let amount = prep.ev.amount;
    Ok(match policy.qualify {
        Qualify::Always => Qualification::Always,
        Qualify::Purchased => {
            // The earliest positive purchase per user: a min, so any order
            // (and any thread interleaving) gives the same answer.
            let first: Vec<AtomicI64> = (0..n).map(|_| AtomicI64::new(i64::MAX)).collect();
            (0..amount.len()).into_par_iter().for_each(|r| {
                let b = prep.buyer[r];
                if b != NO_USER && amount[r].is_positive() {
                    first[b as usize].fetch_min(prep.ts(r), Ordering::Relaxed);
                }
            });
            Qualification::FirstPurchase(first.into_iter().map(AtomicI64::into_inner).collect())
        }
        Qualify::MinSpend(min) => {
            let mut offsets = vec![0u32; n + 1];
            let order = prep.order();
            for &r in order {
                let b = prep.buyer[r as usize];
                if b != NO_USER {
                    offsets[b as usize + 1] += 1;
                }
            }
            for u in 0..n {
                offsets[u + 1] += offsets[u];
            }
            let total = offsets[n] as usize;
            let mut next = offsets.clone();
            let mut ts = vec![0i64; total];
            let mut prefix = vec![T::ZERO; total];
            for &r in order {
                let (r, b) = (r as usize, prep.buyer[r as usize]);
                if b == NO_USER {
                    continue;
                }
                let at = next[b as usize] as usize;
                let before = if at == offsets[b as usize] as usize {
                    T::ZERO
                } else {
                    prefix[at - 1]
                };
                ts[at] = prep.ts(r);
                prefix[at] = sum(before, amount[r], "a user's running spend")?;
                next[b as usize] += 1;
            }
            Qualification::Timeline {
                offsets,
                ts,
                prefix,
                min,
            }
        }
    })
}

/// Where a chain walk writes its ledger rows.
trait Sink<T> {
    fn push(&mut self, row: u32, beneficiary: UserIx, level: u8, credit: T);
}

impl<T> Sink<T> for Ledger<T> {
    #[inline]
    fn push(&mut self, row: u32, beneficiary: UserIx, level: u8, credit: T) {
        self.event_row.push(row);
        self.beneficiary.push(beneficiary);
        self.level.push(level);
        self.credit.push(credit);
    }
}

/// Rows written in place into the final ledger columns, slots `at..end`.
struct Slots<T> {
    /// `None`: the rows are not kept (see `Ledger::event_row`).
    event_row: Option<SharedMut<u32>>,
    /// The ledger's column (`beneficiary_base` 0) or, when the ledger
    /// keeps none, the chunk's own buffer (`beneficiary_base`: its first
    /// slot).
    beneficiary: SharedMut<UserIx>,
    beneficiary_base: usize,
    level: SharedMut<u8>,
    credit: SharedMut<T>,
    at: usize,
    end: usize,
}

impl<T> Sink<T> for Slots<T> {
    #[inline]
    fn push(&mut self, row: u32, beneficiary: UserIx, level: u8, credit: T) {
        // A wrong row count would be a bug; never write outside our slots.
        assert!(self.at < self.end, "ledger slots overflow");
        // SAFETY: `at < end`, and slots `at..end` of every column belong to
        // this chunk alone and lie within the columns' capacity (the
        // chunk's own buffer holds `beneficiary_base..end`).
        unsafe {
            if let Some(e) = &self.event_row {
                *e.ptr().add(self.at) = row;
            }
            *self.beneficiary.ptr().add(self.at - self.beneficiary_base) = beneficiary;
            *self.level.ptr().add(self.at) = level;
            *self.credit.ptr().add(self.at) = credit;
        }
        self.at += 1;
    }
}

/// Walks the chain of every eligible event (see `Walked` for what it
/// returns). Chunks of input rows run in parallel.
/// When every ancestor qualifies, an event pays exactly min(levels, depth
/// of its buyer) rows, so chunks count their rows first and write straight
/// into the final columns, and with `pack` (credits final: no cap follows)
/// integer rows are also packed for the totals while in cache (`Ranged`);
/// otherwise each chunk fills its own ledger and the chunks are
/// concatenated in order.
fn walk<T: Money>(
    forest: &Forest,
    prep: &Prepared<'_, T>,
    policy: &Policy<T>,
    qual: &Qualification<T>,
    eligible: &Eligible,
    pack: bool,
    progress: &Progress,
) -> Result<Walked<T>> {
    let m = prep.ev.amount.len();
    let levels = policy.levels();
    let nchunks = m.div_ceil(CHUNK);
    let room = LedgerRoom::new::<T>(m, levels);
    let eligible_rows =
        |c: usize| (c * CHUNK..((c + 1) * CHUNK).min(m)).filter(|&r| eligible.get(forest, prep, r));
    let rows_of = |c: usize| -> Vec<usize> { eligible_rows(c).collect() };
    let advance = |c: usize| progress.advance((((c + 1) * CHUNK).min(m) - c * CHUNK) as u64);
    if matches!(qual, Qualification::Always) {
        // An event pays min(levels, depth of its buyer) rows: from the
        // layer starts (a few compares) when users are numbered breadth-
        // first, else from the 1-byte depths (levels <= 255, same count).
        let starts = forest.layer_starts(levels);
        // Per chunk: (ledger rows, eligible events); one loop per way of
        // counting, so none decides it row by row.
        let counts = match &starts {
            Some(s) if s.len() <= 8 => {
                // Padded with starts no user reaches: eight compares.
                let mut few = [NO_USER; 8];
                few[..s.len()].copy_from_slice(s);
                count_rows(nchunks, m, prep, forest, eligible, |b| {
                    few.iter().filter(|&&x| b >= x).count()
                })
            }
            Some(s) => count_rows(nchunks, m, prep, forest, eligible, |b| {
                s.partition_point(|&x| x <= b)
            }),
            None => {
                let depth = forest.depth_u8();
                count_rows(nchunks, m, prep, forest, eligible, |b| {
                    levels.min(depth[b as usize] as usize)
                })
            }
        };
        let events = counts.iter().map(|&(_, e)| e as u64).sum();
        let mut at = vec![0usize; nchunks + 1];
        for c in 0..nchunks {
            at[c + 1] = at[c] + counts[c].0;
        }
        let total = at[nchunks];
        room.check(total as u64, false)?;
        // Integer ids: the walk writes the output columns too.
        let wide_in = match (prep.ev.buyer, forest.chains(), forest.ids()) {
            (IdSlice::Int(keys), Some(chains), IdValues::Int(ids)) => Some((keys, chains, ids)),
            _ => None,
        };
        let rates = policy.rates();
        let mut ranged = if pack {
            Ranged::new(
                forest.num_users(),
                total,
                nchunks,
                prep.ev.amount,
                &policy.ppm,
            )
        } else {
            None
        };
        // Nothing reads the rows or the beneficiaries' indices after a walk
        // that writes the output columns and packs every credit.
        let lean = wide_in.is_some() && !prep.ev.keep_rows && ranged.is_some();
        let kept = if lean { 0 } else { total };
        let mut ledger = Ledger {
            event_row: Vec::with_capacity(kept),
            beneficiary: Vec::with_capacity(kept),
            level: Vec::with_capacity(total),
            credit: Vec::with_capacity(total),
            wide: None,
        };
        let mut wide = wide_in.map(|_| Wide {
            event_id: Vec::with_capacity(total),
            buyer_id: Vec::with_capacity(total),
            beneficiary_id: Vec::with_capacity(total),
            amount: Vec::with_capacity(total),
            rate: Vec::with_capacity(total),
        });
        let cols = (
            SharedMut(ledger.event_row.as_mut_ptr()),
            SharedMut(ledger.beneficiary.as_mut_ptr()),
            SharedMut(ledger.level.as_mut_ptr()),
            SharedMut(ledger.credit.as_mut_ptr()),
        );
        let wide_cols = wide.as_mut().map(|w| WideCols {
            event_id: SharedMut(w.event_id.as_mut_ptr()),
            buyer_id: SharedMut(w.buyer_id.as_mut_ptr()),
            beneficiary_id: SharedMut(w.beneficiary_id.as_mut_ptr()),
            amount: SharedMut(w.amount.as_mut_ptr()),
            rate: SharedMut(w.rate.as_mut_ptr()),
        });
        let slots = |c: usize, own: Option<&mut Vec<UserIx>>| Slots {
            event_row: (!lean).then_some(cols.0),
            beneficiary_base: if own.is_some() { at[c] } else { 0 },
            beneficiary: own.map_or(cols.1, |v| SharedMut(v.as_mut_ptr())),
            level: cols.2,
            credit: cols.3,
            at: at[c],
            end: at[c + 1],
        };
        (0..nchunks)
            .into_par_iter()
            .map(|c| {
                advance(c)?;
                let len = at[c + 1] - at[c];
                let mut own: Vec<UserIx> = Vec::with_capacity(if lean { len } else { 0 });
                let mut out = slots(c, lean.then_some(&mut own));
                match (&wide_cols, wide_in) {
                    (Some(w), Some((keys, chains, ids))) => {
                        let src = WideSource {
                            keys,
                            chains,
                            ids,
                            event_id: prep.ev.event_id,
                            rates: &rates,
                        };
                        walk_rows_wide(forest, prep, policy, &src, &rows_of(c), &mut out, w);
                    }
                    _ => {
                        walk_rows(forest, prep, policy, qual, &rows_of(c), &mut out)?;
                    }
                }
                assert!(out.at == out.end, "ledger slots left unwritten");
                if let Some(r) = &ranged {
                    let start = at[c];
                    // SAFETY: this chunk just wrote these slots (checked
                    // above), and no other chunk touches them; `fill` is
                    // called once per chunk, for the chunk's own span.
                    unsafe {
                        if lean {
                            own.set_len(len);
                        }
                        let beneficiary = if lean {
                            &own[..]
                        } else {
                            std::slice::from_raw_parts(cols.1.ptr().add(start), len)
                        };
                        r.fill(
                            c,
                            start,
                            beneficiary,
                            std::slice::from_raw_parts(cols.2.ptr().add(start), len),
                            std::slice::from_raw_parts(cols.3.ptr().add(start), len),
                        )
                    }
                }
                Ok(())
            })
            .collect::<Result<()>>()?;
        if let Some(r) = ranged.as_mut() {
            // SAFETY: every chunk filled its span (each checked its slots),
            // and the spans cover the ledger.
            unsafe { r.filled() };
        }
        // SAFETY: every chunk wrote each of its slots exactly once (checked
        // above), and the slots of all chunks cover 0..total; the walk
        // writes the wide columns' slots with the others.
        unsafe {
            if !lean {
                ledger.event_row.set_len(total);
                ledger.beneficiary.set_len(total);
            }
            ledger.level.set_len(total);
            ledger.credit.set_len(total);
            if let Some(w) = wide.as_mut() {
                w.event_id.set_len(total);
                w.buyer_id.set_len(total);
                w.beneficiary_id.set_len(total);
                w.amount.set_len(total);
                w.rate.set_len(total);
            }
        }
        ledger.wide = wide;
        return Ok(Walked {
            ledger,
            forfeited: T::ZERO,
            ranged,
            events,
        });
    }
    // Rows are known only once walked: a running count stops the walk
    // once the ledger surely cannot fit.
    let written = AtomicU64::new(0);
    let chunks: Vec<Result<(Ledger<T>, T, usize)>> = (0..nchunks)
        .into_par_iter()
        .map(|c| {
            advance(c)?;
            // Once the count is over, the chunks left stop at once.
            room.check(written.load(Ordering::Relaxed), true)?;
            let mut out = Ledger::default();
            let rows = rows_of(c);
            let forfeited = walk_rows(forest, prep, policy, qual, &rows, &mut out)?;
            let n = out.len() as u64;
            room.check(written.fetch_add(n, Ordering::Relaxed) + n, true)?;
            Ok((out, forfeited, rows.len()))
        })
        .collect();
    let chunks: Vec<(Ledger<T>, T, usize)> = chunks.into_iter().collect::<Result<_>>()?;
    let events = chunks.iter().map(|c| c.2 as u64).sum();
    let mut forfeited = T::ZERO;
    for (_, f, _) in &chunks {
        forfeited = sum(forfeited, *f, "the forfeited total")?;
    }
    let ledgers: Vec<Ledger<T>> = chunks.into_iter().map(|c| c.0).collect();
    let ledger = Ledger {
        event_row: concat_par(&ledgers, |l| &l.event_row),
        beneficiary: concat_par(&ledgers, |l| &l.beneficiary),
        level: concat_par(&ledgers, |l| &l.level),
        credit: concat_par(&ledgers, |l| &l.credit),
        wide: None,
    };
    Ok(Walked {
        ledger,
        forfeited,
        ranged: None,
        events,
    })
}

/// Whether a ledger of so many rows fits in the memory available. Checked
/// only when the largest ledger the events could give (every event paying
/// every level) is large: a small call never reads the system's figures.
struct LedgerRoom {
    /// Bytes of one row's output columns (a lower bound of what a row
    /// costs: intermediates come on top).
    row_bytes: u64,
    /// `None`: no check (a small call, or the system does not say).
    available: Option<u64>,
}

impl LedgerRoom {
    fn new<T>(events: usize, levels: usize) -> Self {
        // event_id, buyer_id, beneficiary_id, rate (8 B each), level (1 B),
        // amount and credit.
        let row_bytes = 33 + 2 * std::mem::size_of::<T>() as u64;
        const QUERY_ABOVE: u64 = if cfg!(test) { 0 } else { 256 << 20 };
        let most = (events as u64)
            .saturating_mul(levels as u64)
            .saturating_mul(row_bytes);
        LedgerRoom {
            row_bytes,
            available: (most > QUERY_ABOVE)
                .then(crate::sysmem::available_bytes)
                .flatten(),
        }
    }

    /// `Memory` when `rows` (`so_far`: rows written before the walk ends)
    /// need more than the memory available.
    fn check(&self, rows: u64, so_far: bool) -> Result<()> {
        let Some(available) = self.available else {
            return Ok(());
        };
        let need = rows.saturating_mul(self.row_bytes);
        if need <= available {
            return Ok(());
        }
        let gib = |b: u64| crate::sysmem::gib(b as u128);
        Err(Error::Memory(format!(
            "the ledger would have {}{rows} rows, {} for its columns alone, more than \
             the {} available: attribute fewer events per call \
             (referralgraph.dask.attribute splits them and keeps caps, first-N and \
             qualification exact)",
            if so_far { "more than " } else { "" },
            gib(need),
            gib(available),
        )))
    }
}

/// Per chunk of rows: (ledger rows, eligible events), an event paying
/// `paid(buyer)` rows. Generic, so each way of counting is its own loop.
fn count_rows<T: Money>(
    nchunks: usize,
    m: usize,
    prep: &Prepared<'_, T>,
    forest: &Forest,
    eligible: &Eligible,
    paid: impl Fn(UserIx) -> usize + Sync,
) -> Vec<(usize, usize)> {
    let buyer = &prep.buyer[..m];
    (0..nchunks)
        .into_par_iter()
        .map(|c| {
            let rows = c * CHUNK..((c + 1) * CHUNK).min(m);
            match eligible {
                Eligible::Creditable => buyer[rows].iter().fold((0, 0), |(n, e), &b| {
                    if limits::creditable(forest, b) {
                        (n + paid(b), e + 1)
                    } else {
                        (n, e)
                    }
                }),
                Eligible::Rows(ok, _) => rows
                    .filter(|&r| ok[r])
                    .fold((0, 0), |(n, e), r| (n + paid(buyer[r]), e + 1)),
            }
        })
        .collect()
}

/// What the walk returns: the ledger (before caps), the credit forfeited
/// by unqualified ancestors, integer rows packed for the totals, and the
/// number of eligible events walked.
struct Walked<T> {
    ledger: Ledger<T>,
    forfeited: T,
    ranged: Option<Ranged>,
    events: u64,
}

/// Walks the chains of `rows` (eligible events, in row order) into `out`;
/// returns the credit forfeited by unqualified ancestors.
fn walk_rows<T: Money, S: Sink<T>>(
    forest: &Forest,
    prep: &Prepared<'_, T>,
    policy: &Policy<T>,
    qual: &Qualification<T>,
    rows: &[usize],
    out: &mut S,
) -> Result<T> {
    let (up, parent) = (forest.ancestors(), forest.parent());
    let levels = policy.levels();
    let qualifies = !matches!(qual, Qualification::Always);
    let mut forfeited = T::ZERO;
    // Chain reads are cache misses: fetch a group's chains (one line per
    // buyer, its first UP ancestors) and their qualification data before
    // walking any, so the misses overlap instead of following each other.
    for group in rows.chunks(GROUP) {
        for &r in group {
            prefetch(up.of(prep.buyer[r]));
        }
        if qualifies {
            for &r in group {
                for &a in up.of(prep.buyer[r]) {
                    if a != NO_USER {
                        qual.prefetch(a);
                    }
                }
            }
        }
        for &r in group {
            let chain = up.of(prep.buyer[r]);
            let (t, amount) = (prep.ts(r), prep.ev.amount[r]);
            let mut level = 0usize;
            let mut hop = 0usize;
            let mut a = chain[0];
            while a != NO_USER && level < levels {
                let credit = amount.credit(policy.ppm[level]);
                if qual.qualified(a, t) {
                    out.push(r as u32, a, level as u8 + 1, credit);
                    level += 1;
                } else if !policy.compression {
                    forfeited = sum(forfeited, credit, "the forfeited total")?;
                    level += 1;
                }
                hop += 1;
                a = if hop < UP {
                    chain[hop]
                } else {
                    parent[a as usize]
                };
            }
        }
    }
    Ok(forfeited)
}

/// Where the wide columns come from: the events' buyer keys and int64
/// event ids, the ancestors' ids.
struct WideSource<'a> {
    keys: &'a [i64],
    chains: &'a [Chain],
    ids: &'a [i64],
    event_id: Option<&'a [i64]>,
    /// The rate of each level.
    rates: &'a [f64],
}

/// The wide columns' pointers; written at the same slots as `Slots`.
struct WideCols<T> {
    event_id: SharedMut<i64>,
    buyer_id: SharedMut<i64>,
    beneficiary_id: SharedMut<i64>,
    amount: SharedMut<T>,
    rate: SharedMut<f64>,
}

/// [`walk_rows`] when every ancestor qualifies and ids are integers: ancestor
/// k takes level k, and each row's output columns are written with it (the
/// beneficiaries' ids from the buyer's `Chain`, one cache line).
fn walk_rows_wide<T: Money>(
    forest: &Forest,
    prep: &Prepared<'_, T>,
    policy: &Policy<T>,
    src: &WideSource<'_>,
    rows: &[usize],
    out: &mut Slots<T>,
    w: &WideCols<T>,
) {
    let parent = forest.parent();
    let levels = policy.levels();
    // A pipeline: the chain of the event AHEAD rows on is fetched while
    // this one is written, so a steady number of misses is in flight.
    const AHEAD: usize = 2 * GROUP;
    for &r in rows.iter().take(AHEAD) {
        prefetch(&src.chains[prep.buyer[r] as usize]);
    }
    for (i, &r) in rows.iter().enumerate() {
        if let Some(&next) = rows.get(i + AHEAD) {
            prefetch(&src.chains[prep.buyer[next] as usize]);
        }
        let Chain {
            up: chain,
            ids: chain_ids,
        } = &src.chains[prep.buyer[r] as usize];
        let amount = prep.ev.amount[r];
        let event_id = src.event_id.map_or(r as i64, |e| e[r]);
        let key = src.keys[r];
        let mut level = 0usize;
        let mut a = chain[0];
        while a != NO_USER && level < levels {
            let id = if level < UP {
                chain_ids[level]
            } else {
                src.ids[a as usize]
            };
            let at = out.at;
            out.push(
                r as u32,
                a,
                level as u8 + 1,
                amount.credit(policy.ppm[level]),
            );
            // SAFETY: `push` checked `at` against this chunk's slots,
            // which the wide columns share (same capacity).
            unsafe {
                *w.event_id.ptr().add(at) = event_id;
                *w.buyer_id.ptr().add(at) = key;
                *w.beneficiary_id.ptr().add(at) = id;
                *w.amount.ptr().add(at) = amount;
                *w.rate.ptr().add(at) = src.rates[level];
            }
            level += 1;
            a = if level < UP {
                chain[level]
            } else {
                parent[a as usize]
            };
        }
    }
}

/// Concatenates one column of the chunk ledgers, copying chunks in parallel.
fn concat_par<T: Money, C: Copy + Send + Sync>(
    chunks: &[Ledger<T>],
    col: impl Fn(&Ledger<T>) -> &Vec<C> + Sync,
) -> Vec<C> {
    let mut at = Vec::with_capacity(chunks.len() + 1);
    at.push(0usize);
    for l in chunks {
        at.push(at.last().copied().unwrap_or(0) + col(l).len());
    }
    let total = at.last().copied().unwrap_or(0);
    let mut out: Vec<C> = Vec::with_capacity(total);
    let dst = SharedMut(out.as_mut_ptr());
    chunks.par_iter().enumerate().for_each(|(k, l)| {
        let src = col(l);
        // SAFETY: chunk k fills out[at[k]..at[k + 1]], disjoint from every
        // other chunk's range and within the capacity reserved above.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.ptr().add(at[k]), src.len()) };
    });
    // SAFETY: every index below `total` was written by exactly one chunk.
    unsafe { out.set_len(total) };
    out
}

/// Whether buyer `b`'s event at `t` falls in the window (null join: never).
#[inline]
pub(crate) fn in_window(joined: &[i64], b: UserIx, t: i64, window_ns: i64) -> bool {
    let j = joined[b as usize];
    j != NULL_TS && j <= t && t <= j.saturating_add(window_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forest::test_forest;
    use crate::rng::Rng;

    /// A forest of `n` users with sparse ids and chains deeper than `UP`
    /// (most users join under one of the last few).
    fn deep_forest(n: usize, rng: &mut Rng) -> (Vec<i64>, Forest) {
        let users: Vec<i64> = (0..n as i64).map(|i| i * 7_919 + 13).collect();
        let referrers: Vec<Option<i64>> = (0..n)
            .map(|i| match i {
                0 => None,
                _ if rng.below(10) == 0 => None,
                _ => Some(users[i - 1 - rng.below(i.min(3) as u64) as usize]),
            })
            .collect();
        (users.clone(), test_forest(&users, &referrers))
    }

    /// Parent pointers followed one by one: the rows the batch walk must
    /// write when every ancestor qualifies.
    fn naive(f: &Forest, buyers: &[i64], amounts: &[i64], ppm: &[u32]) -> Vec<(u32, i64, u8, i64)> {
        let IdValues::Int(ids) = f.ids() else {
            unreachable!("integer test ids")
        };
        let mut rows = Vec::new();
        for (r, (&b, &x)) in buyers.iter().zip(amounts).enumerate() {
            let Some(mut u) = (0..ids.len()).find(|&u| ids[u] == b) else {
                continue;
            };
            for (k, &p) in ppm.iter().enumerate() {
                match f.parent()[u] {
                    NO_USER => break,
                    a => {
                        rows.push((r as u32, ids[a as usize], k as u8 + 1, x.credit(p)));
                        u = a as usize;
                    }
                }
            }
        }
        rows
    }

    #[test]
    fn walk_writes_the_output_columns_of_every_row() {
        let mut rng = Rng::new(11, 0);
        let (users, f) = deep_forest(3_000, &mut rng);
        assert!(
            f.max_depth() as usize > 2 * UP,
            "chains longer than the table"
        );
        let m = 20_000;
        let buyers: Vec<i64> = (0..m)
            .map(|_| match rng.below(20) {
                0 => -5, // unknown
                _ => users[rng.below(users.len() as u64) as usize],
            })
            .collect();
        let amounts: Vec<i64> = (0..m).map(|_| rng.below(100_000) as i64 - 10_000).collect();
        let event_ids: Vec<i64> = (0..m as i64).map(|r| 1_000_000 - 3 * r).collect();
        let rates = [
            0.1, 0.05, 0.02, 0.01, 0.01, 0.005, 0.005, 0.001, 0.001, 0.001,
        ];
        let policy = Policy::new(&rates, None, None, Qualify::Always, false, None).unwrap();
        let want = naive(&f, &buyers, &amounts, &policy.ppm);
        for ids in [None, Some(&event_ids[..])] {
            let mut ev = crate::scores::tests::events(&buyers, &amounts);
            ev.event_id = ids;
            ev.keep_rows = true;
            let got = attribute(&f, &ev, &policy, OnInvalid::Raise).unwrap();
            // Without keep_rows the same columns, but no rows or indices.
            ev.keep_rows = false;
            let lean = attribute(&f, &ev, &policy, OnInvalid::Raise).unwrap();
            assert!(lean.ledger.event_row.is_empty() && lean.ledger.beneficiary.is_empty());
            assert_eq!(lean.ledger.len(), got.ledger.len());
            assert_eq!(lean.ledger.wide, got.ledger.wide);
            assert_eq!(lean.ledger.level, got.ledger.level);
            assert_eq!(lean.ledger.credit, got.ledger.credit);
            assert_eq!(lean.totals, got.totals);
            assert_eq!(lean.stats, got.stats);
            let l = &got.ledger;
            let w = l.wide.as_ref().expect("integer ids: wide columns");
            let rows: Vec<(u32, i64, u8, i64)> = (0..l.len())
                .map(|i| (l.event_row[i], w.beneficiary_id[i], l.level[i], l.credit[i]))
                .collect();
            assert_eq!(rows, want);
            for i in 0..l.len() {
                let r = l.event_row[i] as usize;
                assert_eq!(w.buyer_id[i], buyers[r]);
                assert_eq!(w.amount[i], amounts[r]);
                assert_eq!(w.event_id[i], ids.map_or(r as i64, |e| e[r]));
                assert_eq!(w.rate[i], rates[l.level[i] as usize - 1]);
                let IdValues::Int(gids) = f.ids() else {
                    unreachable!()
                };
                assert_eq!(gids[l.beneficiary[i] as usize], w.beneficiary_id[i]);
            }
        }
        // The totals from rows the walk packed equal those summed from the
        // ledger's columns afterwards.
        let mut ev = crate::scores::tests::events(&buyers, &amounts);
        ev.keep_rows = true;
        let got = attribute(&f, &ev, &policy, OnInvalid::Raise).unwrap();
        let l = &got.ledger;
        let from_ledger = totals(&f, &l.beneficiary, &l.level, &l.credit, 10, None).unwrap();
        assert_eq!(got.totals, from_ledger);
        assert!(!got.totals.beneficiary.is_empty());
        // A qualification rule takes the general walk, without wide columns.
        let purchased = Policy::new(&rates, None, None, Qualify::Purchased, false, None).unwrap();
        let ev = crate::scores::tests::events(&buyers, &amounts);
        let got = attribute(&f, &ev, &purchased, OnInvalid::Raise).unwrap();
        assert!(got.ledger.wide.is_none());
    }

    #[test]
    fn a_ledger_that_cannot_fit_is_refused_before_or_while_walking() {
        let mut rng = Rng::new(3, 0);
        let (users, f) = deep_forest(3_000, &mut rng);
        let buyers: Vec<i64> = (0..20_000)
            .map(|_| users[rng.below(users.len() as u64) as usize])
            .collect();
        let amounts: Vec<i64> = (0..20_000).map(|_| rng.below(1_000) as i64 + 1).collect();
        let ev = crate::scores::tests::events(&buyers, &amounts);
        let rates = [0.1, 0.05, 0.02, 0.01, 0.01];
        for q in [Qualify::Always, Qualify::Purchased] {
            let policy = Policy::new(&rates, None, None, q, false, None).unwrap();
            let ok = attribute(&f, &ev, &policy, OnInvalid::Raise).unwrap();
            // 49 bytes per row of output columns (int64 amounts).
            let need = ok.ledger.len() as u64 * 49;
            assert!(need > 1 << 20);
            let err = crate::sysmem::pretend_available(Some(1 << 20), || {
                attribute(&f, &ev, &policy, OnInvalid::Raise).unwrap_err()
            });
            assert!(matches!(err, Error::Memory(_)), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.contains("rows,") && msg.contains("GiB available"),
                "{msg}"
            );
            // Exactly enough room, or no figure from the system: no check fails.
            for room in [Some(need), None] {
                let again = crate::sysmem::pretend_available(room, || {
                    attribute(&f, &ev, &policy, OnInvalid::Raise).unwrap()
                });
                assert_eq!(again.totals, ok.totals);
            }
        }
    }

    #[test]
    fn packed_totals_cover_every_chunk_and_fall_back_for_big_credits() {
        let mut rng = Rng::new(5, 0);
        let (users, f) = deep_forest(2_000, &mut rng);
        // Several walk chunks, some of them (the middle ones) without rows.
        let m = 5 * CHUNK + 17;
        let buyers: Vec<i64> = (0..m)
            .map(|r| match r / CHUNK {
                2 => -1,
                _ => users[rng.below(users.len() as u64) as usize],
            })
            .collect();
        let policy =
            Policy::new(&[0.1, 0.05, 0.02], None, None, Qualify::Always, false, None).unwrap();
        // Packed rows summed unchecked, packed rows whose sums are checked
        // (rows × the largest credit passes 2^63), and rows too big to pack.
        for (large, big) in [(0, false), (1 << 50, false), (1 << 55, true)] {
            let amounts: Vec<i64> = (0..m)
                .map(|r| match r {
                    // 1 << 55: a credit beyond the 49 bits packing leaves
                    // for 2,000 users.
                    77 if large > 0 => large,
                    _ => rng.below(50_000) as i64 - 5_000,
                })
                .collect();
            let ranged = Ranged::new(f.num_users(), 3 * m, 6, &amounts, &policy.ppm);
            assert_eq!(
                ranged.as_ref().map(|r| r.unchecked()),
                (!big).then_some(large == 0)
            );
            let mut ev = crate::scores::tests::events(&buyers, &amounts);
            ev.keep_rows = true;
            let got = attribute(&f, &ev, &policy, OnInvalid::Raise).unwrap();
            let l = &got.ledger;
            assert_eq!(l.event_row.len(), l.len());
            let want = totals(&f, &l.beneficiary, &l.level, &l.credit, 3, None).unwrap();
            // Lean (no rows kept) only where every credit surely packs.
            ev.keep_rows = false;
            let lean = attribute(&f, &ev, &policy, OnInvalid::Raise).unwrap();
            assert_eq!(lean.ledger.event_row.is_empty(), !big);
            assert_eq!(lean.totals, got.totals);
            assert_eq!(got.totals, want);
            let mut by_user = std::collections::HashMap::new();
            for i in 0..l.len() {
                *by_user.entry(l.beneficiary[i]).or_insert(0i64) += l.credit[i];
            }
            assert_eq!(got.totals.beneficiary.len(), by_user.len());
            for (u, c) in got.totals.beneficiary.iter().zip(&got.totals.credit) {
                assert_eq!(by_user[u], *c);
            }
            assert_eq!(large > 0, got.totals.credit[0] >= 1 << 46);
            // The credited total, summed from the totals, is the ledger's.
            assert_eq!(got.stats.credited, l.credit.iter().sum::<i64>());
        }
    }
}
