//! External ids (int64 or strings) and the map from id to dense `UserIx`.
//!
//! The index stores only `u32` indices: keys are compared through a closure
//! that reads the id of a stored index, so a 10M-user graph costs about 6.4
//! bytes per user for the map (linear probing, load <= 0.75) instead of the
//! 16+ of a `HashMap<i64, u32>`. Integer ids spanning a range of at most 2n
//! use a direct table instead (autoincrement ids: one read, no hashing).
//! The hash functions are fixed (no random seed) so a saved index stays valid.

use rayon::prelude::*;
use std::cmp::Ordering;
use std::fmt;
use std::mem::MaybeUninit;

/// A dense user index: 0..num_users, in topological (root-first) order.
pub type UserIx = u32;
/// "No user": a root's parent, an empty slot.
pub const NO_USER: UserIx = u32::MAX;

/// The type of a table's id column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Int,
    Str,
}

impl IdKind {
    pub fn name(self) -> &'static str {
        match self {
            IdKind::Int => "integer",
            IdKind::Str => "string",
        }
    }
}

/// One id, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdRef<'a> {
    Int(i64),
    Str(&'a [u8]),
}

impl IdRef<'_> {
    /// Fixed hash: splitmix64's finaliser for integers, xxh3 for strings.
    #[inline]
    pub fn hash(self) -> u64 {
        match self {
            IdRef::Int(x) => mix64(x as u64),
            IdRef::Str(s) => xxhash_rust::xxh3::xxh3_64(s),
        }
    }
}

impl PartialOrd for IdRef<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Integers numerically, strings bytewise; an integer sorts before a string.
impl Ord for IdRef<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (IdRef::Int(a), IdRef::Int(b)) => a.cmp(b),
            (IdRef::Str(a), IdRef::Str(b)) => a.cmp(b),
            (IdRef::Int(_), IdRef::Str(_)) => Ordering::Less,
            (IdRef::Str(_), IdRef::Int(_)) => Ordering::Greater,
        }
    }
}

impl fmt::Display for IdRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdRef::Int(x) => write!(f, "{x}"),
            IdRef::Str(s) => write!(f, "{:?}", String::from_utf8_lossy(s)),
        }
    }
}

/// A cache prefetch hint (no-op off x86_64): lets many independent random
/// reads overlap instead of paying 100+ ns each in turn.
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults and reads nothing
    // observable. `p` is a valid reference anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const T as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// How many lookups are in flight at once in the batched operations.
const BATCH: usize = 16;

#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A borrowed id column: int64 values, or large-utf8 style offsets + bytes.
#[derive(Debug, Clone, Copy)]
pub enum IdSlice<'a> {
    Int(&'a [i64]),
    Str { offsets: &'a [i64], data: &'a [u8] },
}

impl<'a> IdSlice<'a> {
    pub fn len(&self) -> usize {
        match self {
            IdSlice::Int(v) => v.len(),
            IdSlice::Str { offsets, .. } => offsets.len().saturating_sub(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn kind(&self) -> IdKind {
        match self {
            IdSlice::Int(_) => IdKind::Int,
            IdSlice::Str { .. } => IdKind::Str,
        }
    }

    #[inline]
    pub fn prefetch(&self, i: usize) {
        match *self {
            IdSlice::Int(v) => prefetch(&v[i]),
            IdSlice::Str { offsets, .. } => prefetch(&offsets[i]),
        }
    }

    /// Fetches the bytes of string id i (its offsets read, so fetch them
    /// first: [`IdSlice::prefetch`]); `None` for integer ids, which have
    /// no bytes elsewhere.
    #[inline]
    pub fn bytes_prefetcher(self) -> Option<impl Fn(u32) + 'a> {
        match self {
            IdSlice::Int(_) => None,
            IdSlice::Str { offsets, data } => Some(move |i: u32| {
                if let Some(b) = data.get(offsets[i as usize] as usize) {
                    prefetch(b)
                }
            }),
        }
    }

    #[inline]
    pub fn get(&self, i: usize) -> IdRef<'a> {
        match *self {
            IdSlice::Int(v) => IdRef::Int(v[i]),
            IdSlice::Str { offsets, data } => {
                IdRef::Str(&data[offsets[i] as usize..offsets[i + 1] as usize])
            }
        }
    }

    /// The ids at `items` in that order (`NO_USER`: 0, or an empty
    /// string), in parallel: user ids of a graph, or an input column's ids
    /// at ledger rows. Strings are copied in two passes — their lengths
    /// into offsets, then the bytes into place — with no check: every id
    /// was valid UTF-8 when read.
    pub fn gather(&self, items: &[u32]) -> IdValues {
        match *self {
            IdSlice::Int(v) => IdValues::Int(crate::par::gather(
                items,
                |u| {
                    if u != NO_USER as usize {
                        prefetch(&v[u])
                    }
                },
                |u| if u == NO_USER as usize { 0 } else { v[u] },
            )),
            IdSlice::Str { offsets, data } => gather_strings(
                items,
                |u| {
                    if u != NO_USER {
                        prefetch(&offsets[u as usize])
                    }
                },
                |u| {
                    if u == NO_USER {
                        &[]
                    } else {
                        &data[offsets[u as usize] as usize..offsets[u as usize + 1] as usize]
                    }
                },
            ),
        }
    }
}

/// Owned ids, in user-index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdValues {
    Int(Vec<i64>),
    Str { offsets: Vec<i64>, data: Vec<u8> },
}

impl IdValues {
    pub fn new(kind: IdKind) -> Self {
        match kind {
            IdKind::Int => IdValues::Int(Vec::new()),
            IdKind::Str => IdValues::Str {
                offsets: vec![0],
                data: Vec::new(),
            },
        }
    }

    pub fn kind(&self) -> IdKind {
        self.as_slice().kind()
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the ids.
    pub fn heap_bytes(&self) -> usize {
        match self {
            IdValues::Int(v) => v.len() * 8,
            IdValues::Str { offsets, data } => offsets.len() * 8 + data.len(),
        }
    }

    pub fn as_slice(&self) -> IdSlice<'_> {
        match self {
            IdValues::Int(v) => IdSlice::Int(v),
            IdValues::Str { offsets, data } => IdSlice::Str { offsets, data },
        }
    }

    #[inline]
    pub fn get(&self, ix: UserIx) -> IdRef<'_> {
        self.as_slice().get(ix as usize)
    }

    /// The ids of `users` in that order (see [`IdSlice::gather`]).
    pub fn gather(&self, users: &[UserIx]) -> IdValues {
        self.as_slice().gather(users)
    }

    /// Appends one id; the caller guarantees it is of this column's kind.
    pub fn push(&mut self, id: IdRef<'_>) {
        match (self, id) {
            (IdValues::Int(v), IdRef::Int(x)) => v.push(x),
            (IdValues::Str { offsets, data }, IdRef::Str(s)) => {
                data.extend_from_slice(s);
                offsets.push(data.len() as i64);
            }
            _ => unreachable!("id kinds are checked before ids are copied"),
        }
    }

    /// Appends `src[rows[i]]` for every i (a gather).
    pub fn extend_gather(&mut self, src: IdSlice<'_>, rows: impl Iterator<Item = usize>) {
        match (self, src) {
            (IdValues::Int(v), IdSlice::Int(s)) => v.extend(rows.map(|r| s[r])),
            (this, src) => {
                for r in rows {
                    this.push(src.get(r));
                }
            }
        }
    }
}

/// Users per task in [`gather_strings`].
const STR_CHUNK: usize = 1 << 14;

/// String ids `bytes_of(u)` for each of `items`, as new ids. Each chunk
/// of items sums its lengths, a scan gives every chunk its start, then
/// chunks write their offsets and copy their bytes into disjoint ranges in
/// parallel (into memory sized once: no growth, no copy).
pub(crate) fn gather_strings<'a>(
    items: &[u32],
    touch: impl Fn(u32) + Sync,
    bytes_of: impl Fn(u32) -> &'a [u8] + Sync,
) -> IdValues {
    // Reads land at random (a graph's ids at ledger beneficiaries): the
    // lengths pass fetches each item's offsets AHEAD items on, the copy
    // pass its offsets 2 * AHEAD on and its bytes AHEAD on.
    const AHEAD: usize = 16;
    use crate::attribution::ranges::SharedMut;
    let sums: Vec<i64> = items
        .par_chunks(STR_CHUNK)
        .map(|c| {
            let mut n = 0i64;
            for (j, &u) in c.iter().enumerate() {
                if let Some(&a) = c.get(j + AHEAD) {
                    touch(a);
                }
                n += bytes_of(u).len() as i64;
            }
            n
        })
        .collect();
    let starts: Vec<i64> = sums
        .iter()
        .scan(0i64, |at, &n| {
            let s = *at;
            *at += n;
            Some(s)
        })
        .collect();
    let total = sums.iter().sum::<i64>() as usize;
    let mut offsets = vec![0i64; items.len() + 1];
    let mut data: Vec<u8> = Vec::with_capacity(total);
    let dst = SharedMut(data.as_mut_ptr());
    offsets[1..]
        .par_chunks_mut(STR_CHUNK)
        .zip(items.par_chunks(STR_CHUNK))
        .zip(starts.par_iter())
        .for_each(|((ends, chunk), &start)| {
            let mut at = start as usize;
            for (j, (end, &u)) in ends.iter_mut().zip(chunk).enumerate() {
                if let Some(&a) = chunk.get(j + 2 * AHEAD) {
                    touch(a);
                }
                if let Some(b) = chunk.get(j + AHEAD).and_then(|&a| bytes_of(a).first()) {
                    prefetch(b);
                }
                let b = bytes_of(u);
                // SAFETY: this chunk owns data[start..start + its sum] (the
                // scan of the chunks' sums), within `total`.
                unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), dst.ptr().add(at), b.len()) };
                at += b.len();
                *end = at as i64;
            }
        });
    // SAFETY: the chunks wrote every byte of 0..total (their ranges tile it).
    unsafe { data.set_len(total) };
    IdValues::Str { offsets, data }
}

/// Checks ids and their index read from a file for `n` users: as many
/// ids, consistent string offsets, no slot past the last user. (A
/// checksum guards against damage; this keeps a crafted file from
/// indexing out of bounds.)
pub(crate) fn check_parts(ids: &IdValues, index: &IdIndex, n: usize) -> Result<(), String> {
    if ids.len() != n {
        return Err(format!("{} ids for {} users", ids.len(), n));
    }
    if let IdValues::Str { offsets, data } = ids {
        if offsets.first() != Some(&0)
            || offsets.windows(2).any(|w| w[0] > w[1])
            || *offsets.last().unwrap_or(&0) as usize != data.len()
        {
            return Err("string id offsets are inconsistent".into());
        }
    }
    let bad_slot = |v: u32| v != NO_USER && v as usize >= n;
    let index_ok = match index {
        IdIndex::Dense { table, .. } => crate::par::all(table.len(), |i| !bad_slot(table[i])),
        IdIndex::Hash(h) => crate::par::all(h.slots().len(), |i| !bad_slot(h.slots()[i])),
    };
    if !index_ok {
        return Err("id index points past the last user".into());
    }
    Ok(())
}

/// Slots per region: probing wraps inside a region of this size, so a
/// region (256 KiB) can be filled by one thread while it sits in cache. The
/// layout depends only on the table size, never on the thread count.
const REGION: usize = 1 << 16;

#[inline]
fn region_len(table_len: usize) -> usize {
    table_len.min(REGION)
}

/// Fills an empty table of `slots` (home slot: the top bits of a row's
/// hash above `shift`) with rows 0..n: rows are bucketed by region in row
/// order (a stable counting sort of `entry(i)`; `hash(i)` `None`: no row),
/// then `fill(region, entries, dups)` fills each region in parallel, in
/// cache. Within a region inserts follow row order, so the first row of a
/// repeated id wins, as in a sequential build. Returns the rows bucketed
/// and what `fill` pushed to `dups` (row, first row), in row order; `None`
/// when a region would pass 7/8 full.
fn fill_by_region<S: Send, E: Copy + Send + Sync>(
    slots: &mut [S],
    shift: u32,
    n: usize,
    hash: impl Fn(usize) -> Option<u64> + Sync,
    entry: impl Fn(usize) -> E + Sync,
    fill: impl Fn(&mut [S], &[E], &mut Vec<(u32, u32)>) + Sync,
) -> Option<(usize, Vec<(u32, u32)>)> {
    let rlen = region_len(slots.len());
    let regions = slots.len() / rlen;
    // Region = top bits of the hash (a shift: no division per row).
    let rshift = shift + rlen.trailing_zeros();
    let (counts, bucket) = crate::par::scatter_by_key(
        n,
        regions,
        |i| hash(i).map(|h| h.checked_shr(rshift).unwrap_or(0) as usize),
        entry,
    );
    if counts.windows(2).any(|w| w[1] - w[0] > rlen / 8 * 7) {
        return None;
    }
    let dups: Vec<Vec<(u32, u32)>> = slots
        .par_chunks_mut(rlen)
        .enumerate()
        .map(|(r, region)| {
            let mut dups = Vec::new();
            fill(region, &bucket[counts[r]..counts[r + 1]], &mut dups);
            dups
        })
        .collect();
    let mut dups: Vec<(u32, u32)> = dups.into_iter().flatten().collect();
    dups.sort_unstable();
    Some((counts[regions], dups))
}

/// The slot after `i` in a table of `table_len` slots: linear probing
/// that wraps inside `i`'s region.
#[inline]
fn next_slot(i: usize, table_len: usize) -> usize {
    let rmask = region_len(table_len) - 1;
    (i & !rmask) | ((i + 1) & rmask)
}

/// A slot of [`KeyedSlots`]: an integer key beside its value, so one
/// cache line answers a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct KeyedSlot {
    key: i64,
    value: u32,
}

/// A copy of a [`HashIndex`] over integer ids with each key stored in its
/// slot: a lookup reads one random cache line instead of a slot and then
/// the id it points to. Same slots, same probing (16 bytes a slot instead
/// of 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedSlots {
    slots: Vec<KeyedSlot>,
    shift: u32,
    len: usize,
}

const EMPTY_KEYED: KeyedSlot = KeyedSlot {
    key: 0,
    value: NO_USER,
};

impl KeyedSlots {
    pub fn heap_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<KeyedSlot>()
    }
    fn new(h: &HashIndex, ids: &[i64]) -> Self {
        // The ids are read at random (slots are in hash order), so each is
        // fetched ahead.
        let slots = crate::par::gather(
            &h.slots,
            |v| {
                if v != NO_USER as usize {
                    prefetch(&ids[v])
                }
            },
            |v| KeyedSlot {
                key: if v == NO_USER as usize { 0 } else { ids[v] },
                value: v as u32,
            },
        );
        KeyedSlots {
            slots,
            shift: h.shift,
            len: h.len,
        }
    }

    /// A table of integer keys `keys(i) -> i` for rows 0..n (`None`: no
    /// key), sized and probed as [`HashIndex::with_capacity`] and
    /// [`IdIndex::insert_many`] would (the same slots): filled region by
    /// region in parallel, without reading a key twice. Also returns the
    /// (row, first row) of repeated keys, in row order.
    pub fn fill(n: usize, keys: impl Fn(usize) -> Option<i64> + Sync) -> (Self, Vec<(u32, u32)>) {
        let mut cap = n;
        loop {
            let bits = table_bits(cap);
            let (len, shift) = (1usize << bits, 64 - bits);
            // Each region is cleared by the thread that fills it, in cache
            // (one pass over the table, not two).
            let mut slots: Vec<MaybeUninit<KeyedSlot>> = crate::alloc::huge_tables(|| {
                let mut v = Vec::with_capacity(len);
                // SAFETY: MaybeUninit needs no initialisation.
                unsafe { v.set_len(len) };
                v
            });
            let rlen = region_len(len);
            let rmask = rlen - 1;
            let filled = fill_by_region(
                &mut slots,
                shift,
                n,
                |i| keys(i).map(|k| mix64(k as u64)),
                |i| (keys(i).unwrap_or(0), i as u32),
                |region, rows, dups| {
                    region.fill(MaybeUninit::new(EMPTY_KEYED));
                    // SAFETY: every slot of the region was just written.
                    let region = unsafe {
                        &mut *(region as *mut [MaybeUninit<KeyedSlot>] as *mut [KeyedSlot])
                    };
                    for &(k, row) in rows {
                        let mut i = ((mix64(k as u64) >> shift) as usize) & rmask;
                        loop {
                            let s = region[i];
                            if s.value == NO_USER {
                                region[i] = KeyedSlot { key: k, value: row };
                                break;
                            }
                            if s.key == k {
                                dups.push((row, s.value));
                                break;
                            }
                            i = (i + 1) & rmask;
                        }
                    }
                },
            );
            if let Some((rows, dups)) = filled {
                // SAFETY: every region (so every slot) was initialised, and
                // MaybeUninit<T> has T's layout.
                let slots = unsafe {
                    let mut v = std::mem::ManuallyDrop::new(slots);
                    Vec::from_raw_parts(v.as_mut_ptr().cast::<KeyedSlot>(), v.len(), v.capacity())
                };
                let t = KeyedSlots {
                    slots,
                    shift,
                    len: rows - dups.len(),
                };
                return (t, dups);
            }
            // A region overflowed (a pathological hash spread): double and retry.
            cap = 2 * len;
        }
    }

    /// Makes room for `additional` more entries (as [`HashIndex::reserve`]).
    pub fn reserve(&mut self, additional: usize) {
        let need = self.len + additional;
        if need.saturating_mul(4) / 3 < self.slots.len() {
            return;
        }
        let bits = table_bits(need.max(self.len * 2));
        let old = std::mem::replace(
            self,
            KeyedSlots {
                slots: crate::alloc::huge_tables(|| vec![EMPTY_KEYED; 1 << bits]),
                shift: 64 - bits,
                len: 0,
            },
        );
        for s in old.slots.iter().filter(|s| s.value != NO_USER) {
            self.insert(s.key, s.value);
        }
    }

    /// Inserts `key -> value` unless `key` is present; returns the present
    /// value. The caller reserves room first.
    pub fn insert(&mut self, key: i64, value: u32) -> Option<u32> {
        let mut i = (mix64(key as u64) >> self.shift) as usize;
        loop {
            let s = self.slots[i];
            if s.value == NO_USER {
                self.slots[i] = KeyedSlot { key, value };
                self.len += 1;
                return None;
            }
            if s.key == key {
                return Some(s.value);
            }
            i = next_slot(i, self.slots.len());
        }
    }

    /// Rewrites every stored value v as `pos[v]` (after users are
    /// renumbered) and returns the table without its keys (a [`HashIndex`]
    /// read through the ids column: same slots), in the same pass.
    pub fn remap_unkeyed(&mut self, pos: &[u32]) -> HashIndex {
        let len = self.slots.len();
        let mut values: Vec<u32> = crate::alloc::huge_tables(|| Vec::with_capacity(len));
        let out = crate::attribution::ranges::SharedMut(values.as_mut_ptr());
        remap_slots_by(
            &mut self.slots,
            pos,
            |s| s.value,
            |i, s, v| {
                s.value = v;
                // SAFETY: slot i of `len`, written once (by the task owning it).
                unsafe { out.ptr().add(i).write(v) };
            },
        );
        // SAFETY: every slot was written above.
        unsafe { values.set_len(len) };
        HashIndex {
            slots: values,
            shift: self.shift,
            len: self.len,
        }
    }

    /// The values of `keys` into `out` (`NO_USER`: absent), fetching the
    /// home slot of the key AHEAD places on before probing this one.
    pub fn get_many(&self, keys: &[i64], out: &mut [u32]) {
        const AHEAD: usize = 48;
        let home = |k: i64| (mix64(k as u64) >> self.shift) as usize;
        for &k in keys.iter().take(AHEAD) {
            prefetch(&self.slots[home(k)]);
        }
        for (j, (&k, o)) in keys.iter().zip(out.iter_mut()).enumerate() {
            if let Some(&next) = keys.get(j + AHEAD) {
                prefetch(&self.slots[home(next)]);
            }
            let mut i = home(k);
            *o = loop {
                let s = self.slots[i];
                if s.value == NO_USER || s.key == k {
                    break s.value;
                }
                i = next_slot(i, self.slots.len());
            };
        }
    }
}

/// `a == b`, without a call for ids of 8-16 bytes (most ids): two
/// overlapping 8-byte loads each side.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let word =
            |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
        return word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8);
    }
    a == b
}

/// A slot of [`StrSlots`]: the value, 32 bits of its key's hash, and where
/// its bytes are (start in the low 40 bits, length in the high 24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct StrSlot {
    tag: u32,
    value: u32,
    at: u64,
}

const STR_START_BITS: u32 = 40;

/// A copy of a [`HashIndex`] over string ids with a hash tag and the
/// bytes' place in each slot: a probe rejects other keys by their tag, and
/// the one candidate's bytes are fetched ahead from the slot itself,
/// instead of reading each probed key's offsets and then its bytes (two
/// dependent random reads per probed slot). 16 bytes per slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrSlots {
    slots: Vec<StrSlot>,
    shift: u32,
}

impl StrSlots {
    pub fn heap_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<StrSlot>()
    }

    /// `None` when an id is 16 MB or longer or the ids' bytes pass 1 TB.
    fn new(h: &HashIndex, offsets: &[i64], data: &[u8]) -> Option<Self> {
        if data.len() as u64 >= 1 << STR_START_BITS
            || offsets
                .windows(2)
                .any(|w| w[1] - w[0] >= 1 << (64 - STR_START_BITS))
        {
            return None;
        }
        // Slots are in hash order, so each id's offsets and then its bytes
        // are read at random: fetched two stages ahead.
        let slots = crate::par::gather_two(
            &h.slots,
            |v| {
                if v != NO_USER as usize {
                    prefetch(&offsets[v])
                }
            },
            |v| {
                if let Some(b) = offsets.get(v).and_then(|&a| data.get(a as usize)) {
                    prefetch(b)
                }
            },
            |v| {
                if v == NO_USER as usize {
                    return StrSlot {
                        tag: 0,
                        value: NO_USER,
                        at: 0,
                    };
                }
                let (a, b) = (offsets[v] as u64, offsets[v + 1] as u64);
                StrSlot {
                    tag: IdRef::Str(&data[a as usize..b as usize]).hash() as u32,
                    value: v as u32,
                    at: (b - a) << STR_START_BITS | a,
                }
            },
        );
        Some(StrSlots {
            slots,
            shift: h.shift,
        })
    }

    /// The values of `keys(i)` for i in 0..n into `out` (`NO_USER`: absent
    /// or no key), with `data` the indexed ids' bytes: a pipeline that
    /// fetches key i's home slot, AHEAD keys later the first candidate's
    /// bytes, and AHEAD more probes with both in cache.
    pub fn get_many<'q>(
        &self,
        n: usize,
        keys: impl Fn(usize) -> Option<&'q [u8]>,
        data: &[u8],
        out: &mut [u32],
    ) {
        const AHEAD: usize = 24;
        const RING: usize = 4 * AHEAD;
        let bytes = |s: &StrSlot| {
            let a = (s.at & ((1 << STR_START_BITS) - 1)) as usize;
            &data[a..a + (s.at >> STR_START_BITS) as usize]
        };
        // Per key in flight: (hash, home slot, key), read once.
        let mut ring: [(u64, usize, Option<&'q [u8]>); RING] = [(0, 0, None); RING];
        for i in 0..n + 2 * AHEAD {
            if i < n {
                let k = keys(i);
                ring[i % RING] = match k {
                    Some(k) => {
                        let h = IdRef::Str(k).hash();
                        let home = (h >> self.shift) as usize;
                        prefetch(&self.slots[home]);
                        (h, home, Some(k))
                    }
                    None => (0, 0, None),
                };
            }
            if let Some(j) = i.checked_sub(AHEAD).filter(|&j| j < n) {
                let (h, home, k) = ring[j % RING];
                if k.is_some() {
                    let tag = h as u32;
                    let mut at = home;
                    loop {
                        let s = &self.slots[at];
                        if s.value == NO_USER {
                            break;
                        }
                        if s.tag == tag {
                            if let Some(b) = bytes(s).first() {
                                prefetch(b);
                            }
                            break;
                        }
                        at = next_slot(at, self.slots.len());
                    }
                }
            }
            if let Some(j) = i.checked_sub(2 * AHEAD).filter(|&j| j < n) {
                let (h, home, k) = ring[j % RING];
                out[j] = match k {
                    None => NO_USER,
                    Some(k) => {
                        let tag = h as u32;
                        let mut at = home;
                        loop {
                            let s = &self.slots[at];
                            if s.value == NO_USER || (s.tag == tag && same_bytes(bytes(s), k)) {
                                break s.value;
                            }
                            at = next_slot(at, self.slots.len());
                        }
                    }
                };
            }
        }
    }
}

/// log2 of the slots of a table for `n` entries at load <= 0.75.
fn table_bits(n: usize) -> u32 {
    let want = (n.saturating_mul(4) / 3).max(16);
    usize::BITS - (want - 1).leading_zeros()
}

/// Open-addressing table of `u32` values keyed through a closure
/// (linear probing within fixed regions; load <= 0.75).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashIndex {
    slots: Vec<u32>,
    shift: u32,
    len: usize,
}

impl HashIndex {
    /// A table sized for `n` entries at load <= 0.6.
    pub fn with_capacity(n: usize) -> Self {
        let bits = table_bits(n);
        HashIndex {
            // Probed at random by every lookup.
            slots: crate::alloc::huge_tables(|| vec![NO_USER; 1usize << bits]),
            shift: 64 - bits,
            len: 0,
        }
    }

    /// Rebuilds a table from saved slots; `None` unless it has a free slot
    /// (a full table would make a probe loop forever).
    pub fn from_parts(slots: Vec<u32>) -> Option<Self> {
        if !slots.len().is_power_of_two() || slots.len() < 2 {
            return None;
        }
        let r = region_len(slots.len());
        if slots.par_chunks(r).any(|c| !c.contains(&NO_USER)) {
            return None;
        }
        let len = slots.par_iter().filter(|&&v| v != NO_USER).count();
        let bits = slots.len().trailing_zeros();
        Some(HashIndex {
            slots,
            shift: 64 - bits,
            len,
        })
    }

    pub fn slots(&self) -> &[u32] {
        &self.slots
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        (h >> self.shift) as usize
    }

    /// The slot after `i`: linear probing that wraps inside `i`'s region.
    #[inline]
    fn next(&self, i: usize) -> usize {
        next_slot(i, self.slots.len())
    }

    #[inline]
    pub fn find(&self, h: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = self.home(h);
        loop {
            let v = self.slots[i];
            if v == NO_USER {
                return None;
            }
            if eq(v) {
                return Some(v);
            }
            i = self.next(i);
        }
    }

    /// Finds n keys into `out` (`NO_USER`: absent) as a software pipeline,
    /// so a steady number of misses stays in flight: key i's home slot is
    /// fetched, then (AHEAD keys later) the key its slot points to, then
    /// (AHEAD more) the probe runs with both in cache. `home_of(i)`: key
    /// i's home slot (`None`: no key); `is_key(i, v)`: whether value v
    /// holds key i; `prefetch_key(v)` fetches v's key. A key reached
    /// through it (a string's bytes, after its offsets) is fetched by
    /// `prefetch_bytes(v)` in a stage of its own, AHEAD keys later.
    #[inline]
    fn find_many(
        &self,
        n: usize,
        home_of: impl Fn(usize) -> Option<usize>,
        is_key: impl Fn(usize, u32) -> bool,
        prefetch_key: impl Fn(u32),
        prefetch_bytes: Option<impl Fn(u32)>,
        out: &mut [u32],
    ) {
        const AHEAD: usize = 32;
        const RING: usize = 4 * AHEAD;
        const NONE: usize = usize::MAX;
        let stages = if prefetch_bytes.is_some() { 3 } else { 2 };
        let mut home = [NONE; RING];
        let candidate = |home: &[usize; RING], j: usize| {
            let s = home[j % RING];
            (s != NONE && self.slots[s] != NO_USER).then(|| self.slots[s])
        };
        for i in 0..n + stages * AHEAD {
            if i < n {
                let s = home_of(i).unwrap_or(NONE);
                home[i % RING] = s;
                if s != NONE {
                    prefetch(&self.slots[s]);
                }
            }
            if let Some(j) = i.checked_sub(AHEAD).filter(|&j| j < n) {
                if let Some(v) = candidate(&home, j) {
                    prefetch_key(v);
                }
            }
            if let Some(fetch) = &prefetch_bytes {
                if let Some(j) = i.checked_sub(2 * AHEAD).filter(|&j| j < n) {
                    if let Some(v) = candidate(&home, j) {
                        fetch(v);
                    }
                }
            }
            if let Some(j) = i.checked_sub(stages * AHEAD) {
                let mut s = home[j % RING];
                out[j] = if s == NONE {
                    NO_USER
                } else {
                    loop {
                        let v = self.slots[s];
                        if v == NO_USER || is_key(j, v) {
                            break v;
                        }
                        s = self.next(s);
                    }
                };
            }
        }
    }

    /// Inserts `v` unless an equal key is present; returns the present value.
    /// The caller reserves room first.
    #[inline]
    pub fn insert(&mut self, h: u64, v: u32, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = self.home(h);
        loop {
            let s = self.slots[i];
            if s == NO_USER {
                self.slots[i] = v;
                self.len += 1;
                return None;
            }
            if eq(s) {
                return Some(s);
            }
            i = self.next(i);
        }
    }

    /// Fills an empty table with `keys(i) -> i` (see [`fill_by_region`]).
    /// Returns the (row, first row) of repeated ids in row order, or `None`
    /// when a region would pass 7/8 full.
    fn fill_regions<'k, 'q>(
        &mut self,
        n: usize,
        keys: &(impl Fn(usize) -> Option<IdRef<'q>> + Sync),
        key_of: impl Fn(u32) -> IdRef<'k> + Copy + Sync,
    ) -> Option<Vec<(u32, u32)>> {
        let shift = self.shift;
        // Hashes are computed once, in parallel, reading keys in row order;
        // rows then move with their hash, so filling reads no key unless two
        // full hashes match (a repeated id, or a 1-in-2^64 collision).
        const NONE: u64 = u64::MAX;
        let hashes: Vec<u64> = (0..n)
            .into_par_iter()
            .map(|i| keys(i).map_or(NONE, |k| k.hash().min(NONE - 1)))
            .collect();
        let rlen = region_len(self.slots.len());
        let (rows, dups) = fill_by_region(
            &mut self.slots,
            shift,
            n,
            |i| (hashes[i] != NONE).then_some(hashes[i]),
            |i| (hashes[i], i as u32),
            |region, rows, dups| {
                let rmask = rlen - 1;
                let mut slot_hash = vec![0u64; rlen];
                for &(h, row) in rows {
                    let mut i = ((h >> shift) as usize) & rmask;
                    loop {
                        let s = region[i];
                        if s == NO_USER {
                            region[i] = row;
                            slot_hash[i] = h;
                            break;
                        }
                        if slot_hash[i] == h
                            && key_of(s) == keys(row as usize).expect("bucketed rows have keys")
                        {
                            dups.push((row, s));
                            break;
                        }
                        i = (i + 1) & rmask;
                    }
                }
            },
        )?;
        self.len = rows - dups.len();
        Some(dups)
    }

    /// Makes room for `additional` more entries, rehashing through `hash_of`.
    pub fn reserve(&mut self, additional: usize, hash_of: impl Fn(u32) -> u64) {
        let need = self.len + additional;
        if need.saturating_mul(4) / 3 < self.slots.len() {
            return;
        }
        let mut grown = HashIndex::with_capacity(need.max(self.len * 2));
        for &v in &self.slots {
            if v != NO_USER {
                grown.insert(hash_of(v), v, |_| false);
            }
        }
        *self = grown;
    }

    /// Rewrites every stored value v as `pos[v]` (after users are renumbered).
    pub fn remap(&mut self, pos: &[u32]) {
        remap_slots(&mut self.slots, pos);
    }
}

/// `v = pos[v]` for every filled slot, in parallel blocks, with the `pos`
/// entry of a slot further on fetched ahead (the reads are random).
fn remap_slots(slots: &mut [u32], pos: &[u32]) {
    remap_slots_by(slots, pos, |&v| v, |_, s, v| *s = v);
}

/// `remap_slots` for slots whose value `get` reads and `set(i, slot, v)`
/// writes (i: the slot's index).
fn remap_slots_by<S: Send>(
    slots: &mut [S],
    pos: &[u32],
    get: impl Fn(&S) -> u32 + Sync,
    set: impl Fn(usize, &mut S, u32) + Sync,
) {
    const CHUNK: usize = 1 << 14;
    const AHEAD: usize = 32;
    if pos.is_empty() {
        // No users, so every slot is empty: each keeps its value.
        for (i, s) in slots.iter_mut().enumerate() {
            let v = get(s);
            set(i, s, v);
        }
        return;
    }
    // Branch-free (half the slots are empty, at random): an empty slot
    // reads pos[0], which stays cached, and keeps NO_USER.
    let at = |v: u32| if v == NO_USER { 0 } else { v as usize };
    slots.par_chunks_mut(CHUNK).enumerate().for_each(|(c, s)| {
        for j in 0..s.len() {
            if let Some(a) = s.get(j + AHEAD) {
                prefetch(&pos[at(get(a))]);
            }
            let v = get(&s[j]);
            let p = pos[at(v)];
            set(
                c * CHUNK + j,
                &mut s[j],
                if v == NO_USER { NO_USER } else { p },
            );
        }
    });
}

/// Id -> user index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdIndex {
    /// Integer ids in `min .. min + table.len()`: `table[id - min]`.
    Dense {
        min: i64,
        table: Vec<u32>,
    },
    Hash(HashIndex),
}

impl IdIndex {
    /// Picks a direct table when integer ids span at most 2n (+ slack), else a hash table.
    pub fn for_ids(kind: IdKind, n: usize, range: Option<(i64, i64)>) -> Self {
        match Self::dense_span(kind, n, range) {
            Some(span) => IdIndex::Dense {
                min: range.map_or(0, |r| r.0),
                table: crate::alloc::huge_tables(|| vec![NO_USER; span]),
            },
            None => IdIndex::Hash(HashIndex::with_capacity(n)),
        }
    }

    /// The direct table's length `for_ids` would pick (`None`: hashed).
    pub fn dense_span(kind: IdKind, n: usize, range: Option<(i64, i64)>) -> Option<usize> {
        let (lo, hi) = range.filter(|_| kind == IdKind::Int)?;
        let span = (hi as i128 - lo as i128 + 1) as u128;
        (span <= (2 * n as u128 + 1024)).then_some(span as usize)
    }

    pub fn len(&self) -> usize {
        match self {
            IdIndex::Dense { table, .. } => table.iter().filter(|&&v| v != NO_USER).count(),
            IdIndex::Hash(h) => h.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn get<'k>(&self, key: IdRef<'_>, key_of: impl Fn(u32) -> IdRef<'k>) -> Option<u32> {
        match (self, key) {
            (IdIndex::Dense { min, table }, IdRef::Int(x)) => {
                let off = (x as i128) - (*min as i128);
                if off < 0 || off >= table.len() as i128 {
                    return None;
                }
                let v = table[off as usize];
                (v != NO_USER).then_some(v)
            }
            (IdIndex::Dense { .. }, IdRef::Str(_)) => None,
            (IdIndex::Hash(h), key) => h.find(key.hash(), |v| key_of(v) == key),
        }
    }

    /// Inserts `v` for `key` unless present (returns the present value).
    /// A dense table turns into a hash table when `key` falls outside it.
    pub fn insert<'k>(
        &mut self,
        key: IdRef<'_>,
        v: u32,
        key_of: impl Fn(u32) -> IdRef<'k> + Copy,
    ) -> Option<u32> {
        if let (IdIndex::Dense { min, table }, IdRef::Int(x)) = (&mut *self, key) {
            let off = (x as i128) - (*min as i128);
            if off >= 0 && off < table.len() as i128 {
                let slot = &mut table[off as usize];
                if *slot != NO_USER {
                    return Some(*slot);
                }
                *slot = v;
                return None;
            }
            self.make_hashed(key_of);
        }
        match self {
            IdIndex::Hash(h) => {
                h.reserve(1, |s| key_of(s).hash());
                h.insert(key.hash(), v, |s| key_of(s) == key)
            }
            IdIndex::Dense { .. } => unreachable!("converted to a hash table above"),
        }
    }

    /// Looks up `keys(i)` for i in 0..n into `out` (`NO_USER`: absent or
    /// `None`), keeping `BATCH` table probes and key reads in flight.
    pub fn get_many<'k, 'q>(
        &self,
        n: usize,
        keys: impl Fn(usize) -> Option<IdRef<'q>>,
        key_of: impl Fn(u32) -> IdRef<'k>,
        prefetch_key: impl Fn(u32),
        prefetch_bytes: Option<impl Fn(u32)>,
        out: &mut [u32],
    ) {
        match self {
            IdIndex::Hash(h) => h.find_many(
                n,
                |i| keys(i).map(|k| h.home(k.hash())),
                |j, v| keys(j) == Some(key_of(v)),
                prefetch_key,
                prefetch_bytes,
                out,
            ),
            IdIndex::Dense { min, table } => {
                for start in (0..n).step_by(BATCH) {
                    let end = (start + BATCH).min(n);
                    for i in start..end {
                        if let Some(IdRef::Int(x)) = keys(i) {
                            let off = (x as i128) - (*min as i128);
                            if off >= 0 && off < table.len() as i128 {
                                prefetch(&table[off as usize]);
                            }
                        }
                    }
                    for i in start..end {
                        out[i] = keys(i)
                            .and_then(|k| self.get(k, &key_of))
                            .unwrap_or(NO_USER);
                    }
                }
            }
        }
    }

    /// A tagged copy of a hash table over string ids (`offsets`, `data`);
    /// `None` for a dense table (integer ids only) or ids too long to place.
    pub fn str_slots(&self, offsets: &[i64], data: &[u8]) -> Option<StrSlots> {
        match self {
            IdIndex::Hash(h) => StrSlots::new(h, offsets, data),
            IdIndex::Dense { .. } => None,
        }
    }

    /// A keyed copy of a hash table over integer ids `ids` (`None` for a
    /// dense table, whose lookup is one read already).
    pub fn keyed(&self, ids: &[i64]) -> Option<KeyedSlots> {
        match self {
            IdIndex::Hash(h) => Some(KeyedSlots::new(h, ids)),
            IdIndex::Dense { .. } => None,
        }
    }

    /// [`get_many`](Self::get_many) for integer keys over integer ids: the
    /// same pipeline without the per-key dispatch (the hot path of event
    /// lookups). `ids[v]` is the key of value `v`.
    pub fn get_many_int(&self, keys: &[i64], ids: &[i64], out: &mut [u32]) {
        let IdIndex::Hash(h) = self else {
            return self.get_many(
                keys.len(),
                |i| Some(IdRef::Int(keys[i])),
                |v| IdRef::Int(ids[v as usize]),
                |_| {},
                None::<fn(u32)>,
                out,
            );
        };
        h.find_many(
            keys.len(),
            |i| Some(h.home(mix64(keys[i] as u64))),
            |j, v| ids[v as usize] == keys[j],
            |v| prefetch(&ids[v as usize]),
            None::<fn(u32)>,
            out,
        );
    }

    /// Inserts `keys(i)` with value `i` for i in 0..n (skipping `None`),
    /// an empty hash table region by region in parallel; returns the (i, first value) of each key
    /// already present, in order. Needs room reserved for n entries.
    pub fn insert_many<'k, 'q>(
        &mut self,
        n: usize,
        keys: impl Fn(usize) -> Option<IdRef<'q>> + Sync,
        key_of: impl Fn(u32) -> IdRef<'k> + Copy + Sync,
    ) -> Vec<(u32, u32)> {
        if let IdIndex::Hash(h) = self {
            if h.is_empty() {
                loop {
                    if let Some(dups) = h.fill_regions(n, &keys, key_of) {
                        return dups;
                    }
                    // A region overflowed (a pathological hash spread): double and retry.
                    *h = HashIndex::with_capacity(h.slots.len());
                }
            }
        }
        // A dense table, or a hash table that has entries already (rare:
        // build always starts empty): one insert at a time.
        let mut dups = Vec::new();
        for i in 0..n {
            if let Some(k) = keys(i) {
                if let Some(first) = self.insert(k, i as u32, key_of) {
                    dups.push((i as u32, first));
                }
            }
        }
        dups
    }

    /// Makes room for `additional` entries without rehashing per insert.
    pub fn reserve<'k>(&mut self, additional: usize, key_of: impl Fn(u32) -> IdRef<'k>) {
        if let IdIndex::Hash(h) = self {
            h.reserve(additional, |s| key_of(s).hash());
        }
    }

    fn make_hashed<'k>(&mut self, key_of: impl Fn(u32) -> IdRef<'k>) {
        if let IdIndex::Dense { table, .. } = self {
            let n = table.iter().filter(|&&v| v != NO_USER).count();
            let mut h = HashIndex::with_capacity(n + n / 2 + 16);
            for &v in table.iter() {
                if v != NO_USER {
                    h.insert(key_of(v).hash(), v, |_| false);
                }
            }
            *self = IdIndex::Hash(h);
        }
    }

    /// Rewrites every stored value v as `pos[v]` (after users are renumbered).
    pub fn remap(&mut self, pos: &[u32]) {
        match self {
            IdIndex::Dense { table, .. } => remap_slots(table, pos),
            IdIndex::Hash(h) => h.remap(pos),
        }
    }

    /// Bytes held by the index.
    pub fn heap_bytes(&self) -> usize {
        match self {
            IdIndex::Dense { table, .. } => table.len() * 4,
            IdIndex::Hash(h) => h.slots.len() * 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_is_slice_equality_at_every_length_and_position() {
        for n in 0..=24usize {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37)).collect();
            assert!(same_bytes(&a, &a.clone()));
            assert!(!same_bytes(&a, &a[..n.saturating_sub(1)]) || n == 0);
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 1;
                assert!(!same_bytes(&a, &b), "n={n}, byte {i} differs");
            }
        }
    }

    fn ints(v: &[i64]) -> IdValues {
        IdValues::Int(v.to_vec())
    }

    #[test]
    fn gathers_match_a_naive_copy_across_chunks_with_nulls_and_empties() {
        // 40k users (three chunks), every seventh an empty string.
        let n = 40_000u32;
        let mut strs = IdValues::new(IdKind::Str);
        for u in 0..n {
            let s = if u % 7 == 0 {
                String::new()
            } else {
                format!("user-{u}")
            };
            strs.push(IdRef::Str(s.as_bytes()));
        }
        let ints = IdValues::Int((0..n as i64).map(|x| x * 3 - 5).collect());
        let mut rng = crate::rng::Rng::new(4, 0);
        let users: Vec<UserIx> = (0..100_000)
            .map(|i| {
                if i % 11 == 0 {
                    NO_USER
                } else {
                    rng.below(n as u64) as UserIx
                }
            })
            .collect();
        for ids in [&strs, &ints] {
            let got = ids.gather(&users);
            assert_eq!(got.len(), users.len());
            for (i, &u) in users.iter().enumerate() {
                let want = match (u, ids) {
                    (NO_USER, IdValues::Int(_)) => IdRef::Int(0),
                    (NO_USER, _) => IdRef::Str(b""),
                    (u, _) => ids.get(u),
                };
                assert_eq!(got.get(i as UserIx), want, "row {i}");
            }
        }
        assert_eq!(strs.gather(&[]).len(), 0);
    }

    #[test]
    fn hash_index_finds_what_it_inserted_and_reports_duplicates() {
        let ids = ints(&[10, 7, 123_456_789_012, -5]);
        let key_of = |v: u32| ids.get(v);
        let mut ix = IdIndex::for_ids(IdKind::Int, 4, None);
        for v in 0..4u32 {
            assert_eq!(ix.insert(ids.get(v), v, key_of), None);
        }
        assert_eq!(ix.insert(IdRef::Int(7), 9, key_of), Some(1));
        assert_eq!(ix.get(IdRef::Int(-5), key_of), Some(3));
        assert_eq!(ix.get(IdRef::Int(8), key_of), None);
    }

    #[test]
    fn keyed_fill_is_the_keyed_copy_of_a_filled_index() {
        // Several regions, repeated keys, rows without a key; then inserts
        // past the load limit (the table grows).
        for n in [0usize, 1, 100, 200_000] {
            let key = |i: usize| {
                (i % 11 != 4).then(|| ((i % 50_000) as i64).wrapping_mul(0x9E37_79B9) - 7)
            };
            let mut ix = IdIndex::Hash(HashIndex::with_capacity(n));
            let ids: Vec<i64> = (0..n).map(|i| key(i).unwrap_or(0)).collect();
            let vals = ints(&ids);
            let want_dups = ix.insert_many(n, |i| key(i).map(IdRef::Int), |v| vals.get(v));
            let (mut keyed, dups) = KeyedSlots::fill(n, key);
            assert_eq!(dups, want_dups, "n={n}");
            assert_eq!(Some(&keyed), ix.keyed(&ids).as_ref(), "n={n}");
            let IdIndex::Hash(h) = &ix else {
                unreachable!()
            };
            let same: Vec<u32> = (0..n as u32).collect();
            assert_eq!(&keyed.remap_unkeyed(&same), h);
            assert_eq!(Some(&keyed), ix.keyed(&ids).as_ref(), "values kept");
            let extra = n + 40;
            keyed.reserve(extra);
            for j in 0..extra {
                assert_eq!(
                    keyed.insert(-(j as i64) - 1_000_000_000, (n + j) as u32),
                    None
                );
            }
            assert_eq!(keyed.insert(-1_000_000_000, 0), Some(n as u32));
            let probe: Vec<i64> = (0..extra).map(|j| -(j as i64) - 1_000_000_000).collect();
            let mut out = vec![0u32; extra];
            keyed.get_many(&probe, &mut out);
            assert!(out.iter().enumerate().all(|(j, &v)| v == (n + j) as u32));
            // The first keys survive the growth.
            let mut out = vec![0u32; n];
            keyed.get_many(&ids, &mut out);
            for (i, &got) in out.iter().enumerate() {
                if let Some(k) = key(i) {
                    assert_eq!(Some(got), ix.get(IdRef::Int(k), |v| vals.get(v)), "row {i}");
                }
            }
        }
    }

    #[test]
    fn string_batch_lookups_match_single_lookups() {
        // The three-stage pipeline (slot, offsets, bytes) against single
        // lookups, through the index and its tagged copy, with an empty id,
        // absent keys and fewer and more keys than it keeps in flight.
        let mut ids = IdValues::new(IdKind::Str);
        for u in 0..5000 {
            let s = if u == 17 {
                String::new()
            } else {
                format!("user-{u}")
            };
            ids.push(IdRef::Str(s.as_bytes()));
        }
        let mut ix = IdIndex::for_ids(IdKind::Str, 5000, None);
        for v in 0..5000u32 {
            assert_eq!(ix.insert(ids.get(v), v, |w| ids.get(w)), None);
        }
        let IdValues::Str { offsets, data } = &ids else {
            unreachable!()
        };
        let tagged = ix.str_slots(offsets, data).expect("short ids");
        for n in [0usize, 1, 50, 3000] {
            let keys: Vec<Vec<u8>> = (0..n)
                .map(|i| match i % 4 {
                    0 => format!("nobody-{i}").into_bytes(),
                    1 => Vec::new(),
                    _ => format!("user-{}", (i * 37) % 5000).into_bytes(),
                })
                .collect();
            let key = |i: usize| Some(IdRef::Str(&keys[i]));
            let mut out = vec![0u32; n];
            let slice = ids.as_slice();
            ix.get_many(
                n,
                key,
                |v| ids.get(v),
                |v| slice.prefetch(v as usize),
                slice.bytes_prefetcher(),
                &mut out,
            );
            let mut via_tags = vec![0u32; n];
            tagged.get_many(n, |i| Some(&keys[i][..]), data, &mut via_tags);
            assert_eq!(via_tags, out);
            for (i, &got) in out.iter().enumerate() {
                let want = ix.get(IdRef::Str(&keys[i]), |w| ids.get(w));
                assert_eq!(got, want.unwrap_or(NO_USER), "key {i}");
            }
            assert!(n < 2 || out[1] == 17, "the empty id");
        }
    }

    #[test]
    fn integer_batch_lookups_match_single_lookups() {
        // Sparse ids (hash index, and its keyed copy) and dense ones (direct
        // table), with keys present, absent and repeated, across the
        // pipeline's warm-up and drain (fewer and more keys than it keeps in
        // flight).
        for (ids, range) in [
            (
                (0..5000i64).map(|i| i * 7919 - 40_000).collect::<Vec<_>>(),
                None,
            ),
            ((0..5000i64).collect(), Some((0, 4999))),
        ] {
            let vals = ints(&ids);
            let key_of = |v: u32| vals.get(v);
            let mut ix = IdIndex::for_ids(IdKind::Int, ids.len(), range);
            for v in 0..ids.len() as u32 {
                assert_eq!(ix.insert(vals.get(v), v, key_of), None);
            }
            let keyed = ix.keyed(&ids);
            assert_eq!(
                keyed.is_some(),
                range.is_none(),
                "keyed copy of hash tables only"
            );
            for n in [0usize, 1, 50, 3000] {
                let keys: Vec<i64> = (0..n)
                    .map(|i| match i % 3 {
                        0 => 1_000_000 + i as i64, // absent
                        _ => ids[(i * 37) % ids.len()],
                    })
                    .collect();
                let mut out = vec![0u32; n];
                ix.get_many_int(&keys, &ids, &mut out);
                if let Some(k) = &keyed {
                    let mut via_keyed = vec![0u32; n];
                    k.get_many(&keys, &mut via_keyed);
                    assert_eq!(via_keyed, out);
                }
                for (k, &got) in keys.iter().zip(&out) {
                    assert_eq!(
                        got,
                        ix.get(IdRef::Int(*k), key_of).unwrap_or(NO_USER),
                        "key {k}"
                    );
                }
                assert_eq!(
                    out.iter().filter(|&&v| v != NO_USER).count(),
                    n - n.div_ceil(3)
                );
            }
        }
    }

    #[test]
    fn dense_index_turns_into_hash_on_out_of_range_key() {
        let ids = ints(&[0, 1, 2, 1 << 40]);
        let key_of = |v: u32| ids.get(v);
        let mut ix = IdIndex::for_ids(IdKind::Int, 3, Some((0, 2)));
        assert!(matches!(ix, IdIndex::Dense { .. }));
        for v in 0..3u32 {
            ix.insert(ids.get(v), v, key_of);
        }
        assert_eq!(ix.insert(IdRef::Int(1 << 40), 3, key_of), None);
        assert!(matches!(ix, IdIndex::Hash(_)));
        for v in 0..4u32 {
            assert_eq!(ix.get(ids.get(v), key_of), Some(v));
        }
    }

    #[test]
    fn string_ids_and_growth() {
        let mut ids = IdValues::new(IdKind::Str);
        let n = 5000u32;
        for i in 0..n {
            ids.push(IdRef::Str(format!("user-{i}").as_bytes()));
        }
        let mut ix = IdIndex::Hash(HashIndex::with_capacity(1));
        for v in 0..n {
            let key_of = |s: u32| ids.get(s);
            assert_eq!(ix.insert(ids.get(v), v, key_of), None);
        }
        for v in 0..n {
            assert_eq!(ix.get(ids.get(v), |s| ids.get(s)), Some(v));
        }
        assert_eq!(ix.get(IdRef::Str(b"nobody"), |s| ids.get(s)), None);
    }

    #[test]
    fn id_order_is_numeric_then_bytewise() {
        assert!(IdRef::Int(-3) < IdRef::Int(2));
        assert!(IdRef::Str(b"a") < IdRef::Str(b"b"));
        assert_eq!(IdRef::Str(b"x").to_string(), "\"x\"");
    }
}
