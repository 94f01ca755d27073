//! Parallel scans and gathers over index ranges in fixed blocks.
//!
//! Rayon's per-item `all`, `any` and `position_first` check a shared
//! "found" flag after every item, which keeps the loop from vectorising:
//! a scan of 5M timestamps took 17 ms that way. Here each block is a plain
//! loop and only blocks are checked. Gathers fetch the reads a few items
//! ahead, so random reads overlap instead of waiting one by one.

use rayon::prelude::*;

use crate::ids::prefetch;

const BLOCK: usize = 1 << 14;

fn block(b: usize, n: usize) -> std::ops::Range<usize> {
    b * BLOCK..((b + 1) * BLOCK).min(n)
}

/// Whether `pred(i)` holds for every i in 0..n.
pub fn all(n: usize, pred: impl Fn(usize) -> bool + Sync) -> bool {
    (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .all(|b| block(b, n).fold(true, |ok, i| ok & pred(i)))
}

/// The first i in 0..n for which `pred(i)` holds.
pub fn position_first(n: usize, pred: impl Fn(usize) -> bool + Sync) -> Option<usize> {
    let b = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .find_first(|&b| block(b, n).fold(false, |hit, i| hit | pred(i)))?;
    block(b, n).find(|&i| pred(i))
}

/// How far ahead a gather fetches: enough misses in flight to cover the
/// memory latency, few enough to stay in the fill buffers.
const AHEAD: usize = 32;

/// `f(idx[i])` for every i, in parallel blocks; `touch(idx[i + AHEAD])`
/// (a prefetch of what `f` will read) runs first.
pub fn gather<T: Send>(
    idx: &[u32],
    touch: impl Fn(usize) + Sync,
    f: impl Fn(usize) -> T + Sync,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(idx.len());
    gather_into(idx, touch, f, &mut out);
    out
}

/// [`gather`] into `out` (cleared first), reusing its memory: a loop of
/// gathers of different lengths then faults no fresh pages in.
pub fn gather_into<T: Send>(
    idx: &[u32],
    touch: impl Fn(usize) + Sync,
    f: impl Fn(usize) -> T + Sync,
    out: &mut Vec<T>,
) {
    gather_in_two(idx, |_| {}, touch, f, out);
}

/// [`gather`] for reads reached through an earlier read (a string's bytes
/// through its offsets): `far(idx[i + 2 * AHEAD])` fetches the first,
/// `near(idx[i + AHEAD])` (with it in cache) the second.
pub fn gather_two<T: Send>(
    idx: &[u32],
    far: impl Fn(usize) + Sync,
    near: impl Fn(usize) + Sync,
    f: impl Fn(usize) -> T + Sync,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(idx.len());
    gather_in_two(idx, far, near, f, &mut out);
    out
}

fn gather_in_two<T: Send>(
    idx: &[u32],
    far: impl Fn(usize) + Sync,
    near: impl Fn(usize) + Sync,
    f: impl Fn(usize) -> T + Sync,
    out: &mut Vec<T>,
) {
    out.clear();
    out.reserve(idx.len());
    out.spare_capacity_mut()[..idx.len()]
        .par_chunks_mut(BLOCK)
        .zip(idx.par_chunks(BLOCK))
        .for_each(|(o, ix)| {
            for (j, slot) in o.iter_mut().enumerate() {
                if let Some(&a) = ix.get(j + 2 * AHEAD) {
                    far(a as usize);
                }
                if let Some(&a) = ix.get(j + AHEAD) {
                    near(a as usize);
                }
                slot.write(f(ix[j] as usize));
            }
        });
    // SAFETY: the chunks cover all idx.len() slots and each was written.
    unsafe { out.set_len(idx.len()) };
}

/// Records of `width` values: `src[idx[i] * width..][..width]` for every
/// i, side by side (see [`gather`]).
pub fn gather_records<T: Copy + Send + Sync>(idx: &[u32], src: &[T], width: usize) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(idx.len() * width);
    out.spare_capacity_mut()[..idx.len() * width]
        .par_chunks_mut(BLOCK * width)
        .zip(idx.par_chunks(BLOCK))
        .for_each(|(o, ix)| {
            for (j, rec) in o.chunks_exact_mut(width).enumerate() {
                if let Some(&a) = ix.get(j + AHEAD) {
                    prefetch(&src[a as usize * width]);
                }
                let from = &src[ix[j] as usize * width..][..width];
                for (slot, &x) in rec.iter_mut().zip(from) {
                    slot.write(x);
                }
            }
        });
    // SAFETY: the chunks cover all idx.len() records and each was written.
    unsafe { out.set_len(idx.len() * width) };
    out
}

/// `src[idx[i]]` for every i (see [`gather`]).
pub fn gather_from<T: Copy + Send + Sync>(idx: &[u32], src: &[T]) -> Vec<T> {
    gather(idx, |a| prefetch(&src[a]), |a| src[a])
}

/// Bits `offset .. offset + len` of an LSB-first bitmap (Arrow's validity
/// layout) as one bool each, in parallel blocks: a shift and a mask per
/// bit, where a bit iterator took a few ns per bit on one thread.
pub fn unpack_bits(bytes: &[u8], offset: usize, len: usize) -> Vec<bool> {
    assert!(
        (offset + len).div_ceil(8) <= bytes.len(),
        "bitmap too short"
    );
    let mut out = vec![false; len];
    out.par_chunks_mut(BLOCK * 8)
        .enumerate()
        .for_each(|(c, o)| {
            let first = offset + c * BLOCK * 8;
            for (i, x) in o.iter_mut().enumerate() {
                let b = first + i;
                *x = (bytes[b >> 3] >> (b & 7)) & 1 == 1;
            }
        });
    out
}

/// `payload(j)` for j in 0..len grouped by `key(j)` (in 0..keys; `None`:
/// left out) — key k's items are `items[offsets[k]..offsets[k + 1]]`, in j
/// order — by a parallel stable counting sort over fixed parts (the result
/// does not depend on the thread count).
pub fn scatter_by_key<P: Copy + Send + Sync>(
    len: usize,
    keys: usize,
    key: impl Fn(usize) -> Option<usize> + Sync,
    payload: impl Fn(usize) -> P + Sync,
) -> (Vec<usize>, Vec<P>) {
    const PART: usize = 1 << 16;
    let parts = len.div_ceil(PART);
    let part = |c: usize| c * PART..((c + 1) * PART).min(len);
    let hist: Vec<Vec<usize>> = (0..parts)
        .into_par_iter()
        .map(|c| {
            let mut h = vec![0usize; keys];
            for k in part(c).filter_map(&key) {
                h[k] += 1;
            }
            h
        })
        .collect();
    let mut starts = vec![vec![0usize; keys]; parts];
    let mut offsets = vec![0usize; keys + 1];
    let mut at = 0;
    for k in 0..keys {
        offsets[k] = at;
        for c in 0..parts {
            starts[c][k] = at;
            at += hist[c][k];
        }
    }
    offsets[keys] = at;
    let mut items: Vec<P> = Vec::with_capacity(at);
    let out = crate::attribution::ranges::SharedMut(items.as_mut_ptr());
    starts
        .into_par_iter()
        .enumerate()
        .for_each(|(c, mut next)| {
            for j in part(c) {
                let Some(k) = key(j) else { continue };
                // SAFETY: part c writes key k's items into
                // starts[c][k] .. starts[c][k] + hist[c][k], a slice of `items`'
                // capacity that no other (part, key) pair owns.
                unsafe { out.ptr().add(next[k]).write(payload(j)) };
                next[k] += 1;
            }
        });
    // SAFETY: the (part, key) slices cover 0..at, each written once (the
    // second pass counts exactly as the histogram did).
    unsafe { items.set_len(at) };
    (offsets, items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_unpack_at_any_offset_and_length() {
        let bytes: Vec<u8> = (0..40_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let bit = |b: usize| bytes[b / 8] & (1 << (b % 8)) != 0;
        for (offset, len) in [
            (0, 0),
            (0, 1),
            (3, 13),
            (7, 8 * BLOCK + 9),
            (5, 8 * 40_000 - 5),
        ] {
            let want: Vec<bool> = (offset..offset + len).map(bit).collect();
            assert_eq!(
                unpack_bits(&bytes, offset, len),
                want,
                "offset {offset}, len {len}"
            );
        }
    }

    #[test]
    fn scans_agree_with_sequential_ones() {
        for n in [0, 1, BLOCK - 1, BLOCK, 3 * BLOCK + 5] {
            let v: Vec<u32> = (0..n as u32)
                .map(|i| i.wrapping_mul(2_654_435_761) >> 20)
                .collect();
            for t in [0u32, 7, 4000, u32::MAX] {
                assert_eq!(
                    position_first(n, |i| v[i] == t),
                    v.iter().position(|&x| x == t)
                );
                assert_eq!(all(n, |i| v[i] != t), v.iter().all(|&x| x != t));
            }
            assert!(all(n, |i| i < n));
            assert_eq!(position_first(n, |i| i + 1 == n), n.checked_sub(1));
            let idx: Vec<u32> = v.iter().map(|&x| x % (n as u32).max(1)).collect();
            let want: Vec<u32> = idx.iter().map(|&i| v[i as usize]).collect();
            assert_eq!(gather_from(&idx, &v), want);
        }
    }
}
