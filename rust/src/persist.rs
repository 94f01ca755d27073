//! A versioned, checksummed binary format for a built forest, so services
//! restart without rebuilding: sections of little-endian arrays, then an
//! xxh3-64 of everything before it. Loading is a read, a checksum and a
//! few O(n) sequential passes (depth, children) — no hashing of ids, the id
//! index is stored as is (its hash functions are fixed).

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::forest::{Channels, Forest};
use crate::ids::{HashIndex, IdIndex, IdValues};

const MAGIC: &[u8; 8] = b"RGRAPH\0\x1a";
const VERSION: u32 = 1;

const TAG_IDS_INT: u32 = 1;
const TAG_IDS_STR: u32 = 2;
const TAG_PARENT: u32 = 3;
const TAG_JOINED: u32 = 4;
const TAG_CHANNELS: u32 = 5;
const TAG_INDEX_DENSE: u32 = 6;
const TAG_INDEX_HASH: u32 = 7;
const TAG_JOINED_TZ: u32 = 8;
const TAG_END: u32 = 0xFFFF_FFFF;

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, x: u32) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    fn u64(&mut self, x: u64) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    fn u32s(&mut self, v: &[u32]) {
        self.u64(v.len() as u64);
        self.pod(v, |x, out| out.extend_from_slice(&x.to_le_bytes()));
    }
    fn i64s(&mut self, v: &[i64]) {
        self.u64(v.len() as u64);
        self.pod(v, |x, out| out.extend_from_slice(&x.to_le_bytes()));
    }
    /// Appends an array's bytes: one copy on little-endian targets.
    fn pod<T: Copy>(&mut self, v: &[T], one: impl Fn(&T, &mut Vec<u8>)) {
        if cfg!(target_endian = "little") {
            // SAFETY: u32 / i64 have no padding, so their memory is
            // initialised bytes; on a little-endian target those bytes are
            // the format's.
            let bytes = unsafe {
                std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v))
            };
            self.0.extend_from_slice(bytes);
        } else {
            for x in v {
                one(x, &mut self.0);
            }
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

/// Serialises a forest to bytes (the pickle payload and the file body).
pub fn to_bytes(f: &Forest) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(f.heap_bytes() + 64));
    w.0.extend_from_slice(MAGIC);
    w.u32(VERSION);
    match &f.ids {
        IdValues::Int(v) => {
            w.u32(TAG_IDS_INT);
            w.i64s(v);
        }
        IdValues::Str { offsets, data } => {
            w.u32(TAG_IDS_STR);
            w.i64s(offsets);
            w.bytes(data);
        }
    }
    w.u32(TAG_PARENT);
    w.u32s(&f.parent);
    if let Some(j) = &f.joined_at {
        w.u32(TAG_JOINED);
        w.i64s(j);
    }
    if let Some(c) = &f.channels {
        w.u32(TAG_CHANNELS);
        w.u32s(&c.codes);
        w.u64(c.names.len() as u64);
        for name in &c.names {
            w.bytes(name.as_bytes());
        }
    }
    if let Some(tz) = &f.joined_tz {
        w.u32(TAG_JOINED_TZ);
        w.bytes(tz.as_bytes());
    }
    match &f.index {
        IdIndex::Dense { min, table } => {
            w.u32(TAG_INDEX_DENSE);
            w.i64s(&[*min]);
            w.u32s(table);
        }
        IdIndex::Hash(h) => {
            w.u32(TAG_INDEX_HASH);
            w.u64(h.len() as u64);
            w.u32s(h.slots());
        }
    }
    w.u32(TAG_END);
    let sum = xxhash_rust::xxh3::xxh3_64(&w.0);
    w.u64(sum);
    w.0
}

/// Writes atomically: a temporary file beside `path`, then a rename.
pub fn save(f: &Forest, path: &Path) -> Result<()> {
    let bytes = to_bytes(f);
    let tmp = path.with_extension(format!(
        "{}.tmp{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(result?)
}

/// Reads a file written by `save`, streaming each section straight into
/// its typed array (one copy) while hashing; `Error::Corrupt` unless the
/// whole file checks out.
pub fn load(path: &Path) -> Result<Forest> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    read_from(file, len)
}

/// Parses bytes written by `to_bytes`; anything else is `Error::Corrupt`.
pub fn from_bytes(bytes: &[u8]) -> Result<Forest> {
    read_from(bytes, bytes.len() as u64)
}

/// Streams the format out of `r` (`len` bytes in all), hashing as it goes.
struct Reader<R> {
    r: R,
    hasher: xxhash_rust::xxh3::Xxh3,
    /// Bytes left before the trailing checksum.
    left: u64,
}

/// Plain old data that may be read from any bytes (no invalid values).
trait Pod: Copy + Default {
    const SIZE: usize;
    fn swap_from_le(&mut self);
}

impl Pod for u32 {
    const SIZE: usize = 4;
    fn swap_from_le(&mut self) {
        *self = u32::from_le(*self);
    }
}

impl Pod for i64 {
    const SIZE: usize = 8;
    fn swap_from_le(&mut self) {
        *self = i64::from_le(*self);
    }
}

impl<R: std::io::Read> Reader<R> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        if buf.len() as u64 > self.left {
            return Err(Error::Corrupt("truncated".into()));
        }
        self.r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::Corrupt("truncated".into()),
            _ => Error::Io(e),
        })?;
        self.hasher.update(buf);
        self.left -= buf.len() as u64;
        Ok(())
    }
    fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.fill(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        self.fill(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn len(&mut self, width: usize) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n.checked_mul(width).is_some_and(|b| b as u64 <= self.left))
            .ok_or_else(|| Error::Corrupt(format!("array of {n} items exceeds the file")))
    }
    fn array<T: Pod>(&mut self) -> Result<Vec<T>> {
        let n = self.len(T::SIZE)?;
        let mut v = vec![T::default(); n];
        // SAFETY: `v` owns n * SIZE initialised bytes; u8 has alignment 1;
        // every bit pattern is a valid u32 / i64, so any file bytes are fine.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, n * T::SIZE) };
        self.fill(bytes)?;
        if cfg!(target_endian = "big") {
            v.iter_mut().for_each(T::swap_from_le);
        }
        Ok(v)
    }
    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.len(1)?;
        let mut v = vec![0u8; n];
        self.fill(&mut v)?;
        Ok(v)
    }
}

fn read_from<R: std::io::Read>(r: R, len: u64) -> Result<Forest> {
    if len < (MAGIC.len() + 4 + 4 + 8) as u64 {
        return Err(Error::Corrupt("not a referralgraph file".into()));
    }
    let mut r = Reader {
        r,
        hasher: xxhash_rust::xxh3::Xxh3::new(),
        left: len - 8,
    };
    let mut magic = [0u8; 8];
    r.fill(&mut magic)?;
    if &magic != MAGIC {
        return Err(Error::Corrupt("not a referralgraph file".into()));
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(Error::Corrupt(format!(
            "format version {version}, this build reads version {VERSION}"
        )));
    }
    let (mut ids, mut parent, mut joined, mut channels, mut index) = (None, None, None, None, None);
    let mut tz = None;
    loop {
        match r.u32()? {
            TAG_IDS_INT => ids = Some(IdValues::Int(r.array()?)),
            TAG_IDS_STR => {
                let offsets = r.array()?;
                let data = r.bytes()?;
                ids = Some(IdValues::Str { offsets, data });
            }
            TAG_PARENT => parent = Some(r.array()?),
            TAG_JOINED => joined = Some(r.array()?),
            TAG_CHANNELS => {
                let codes = r.array()?;
                let k = r.len(8)?;
                let mut names = Vec::with_capacity(k);
                for _ in 0..k {
                    let s = String::from_utf8(r.bytes()?)
                        .map_err(|_| Error::Corrupt("channel name is not UTF-8".into()))?;
                    names.push(s);
                }
                channels = Some(Channels { codes, names });
            }
            TAG_JOINED_TZ => {
                let s = String::from_utf8(r.bytes()?)
                    .map_err(|_| Error::Corrupt("time zone is not UTF-8".into()))?;
                tz = Some(s);
            }
            TAG_INDEX_DENSE => {
                let min = *r
                    .array::<i64>()?
                    .first()
                    .ok_or_else(|| Error::Corrupt("dense index without a minimum".into()))?;
                index = Some(IdIndex::Dense {
                    min,
                    table: r.array()?,
                });
            }
            TAG_INDEX_HASH => {
                let _len = r.u64()?; // recounted from the slots
                let slots = r.array()?;
                index = Some(IdIndex::Hash(
                    HashIndex::from_parts(slots)
                        .ok_or_else(|| Error::Corrupt("hash index is malformed".into()))?,
                ));
            }
            TAG_END => break,
            tag => return Err(Error::Corrupt(format!("unknown section {tag}"))),
        }
    }
    if r.left != 0 {
        return Err(Error::Corrupt("bytes after the last section".into()));
    }
    let mut sum = [0u8; 8];
    r.r.read_exact(&mut sum)
        .map_err(|_| Error::Corrupt("truncated".into()))?;
    if r.hasher.digest() != u64::from_le_bytes(sum) {
        return Err(Error::Corrupt(
            "checksum mismatch (truncated or damaged)".into(),
        ));
    }
    let missing = |what: &str| Error::Corrupt(format!("missing section: {what}"));
    Forest::from_parts(
        ids.ok_or_else(|| missing("ids"))?,
        index.ok_or_else(|| missing("index"))?,
        parent.ok_or_else(|| missing("parent"))?,
        joined,
        channels,
        tz,
    )
    .map_err(Error::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::OnInvalid;
    use crate::forest::{ReferralInput, StrColumn};
    use crate::ids::IdSlice;

    fn sample() -> Forest {
        let offsets = [0i64, 1, 2, 3];
        let data = b"abc";
        let refs = [0i64, 0, 1, 2];
        let rdata = b"xab";
        let joined = [5i64, 6, 7];
        let ch_off = [0i64, 3, 3, 3];
        let ch = b"ads";
        Forest::build(
            &ReferralInput {
                user: IdSlice::Str {
                    offsets: &offsets,
                    data,
                },
                user_valid: None,
                referrer: IdSlice::Str {
                    offsets: &refs,
                    data: rdata,
                },
                referrer_valid: Some(&[false, true, true]),
                joined_at: Some((&joined, None)),
                channel: Some(StrColumn {
                    offsets: &ch_off,
                    data: ch,
                    valid: Some(&[true, false, false]),
                }),
                joined_tz: Some("Asia/Shanghai"),
                user_col: "user_id",
                referrer_col: "referrer_id",
            },
            OnInvalid::Raise,
        )
        .unwrap()
        .forest
    }

    #[test]
    fn round_trip_is_exact() {
        let f = sample();
        let g = from_bytes(&to_bytes(&f)).unwrap();
        assert_eq!(f, g);
        assert_eq!(g.joined_tz(), Some("Asia/Shanghai"));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error() {
        let bytes = to_bytes(&sample());
        for cut in 0..bytes.len() {
            assert!(
                matches!(from_bytes(&bytes[..cut]), Err(Error::Corrupt(_))),
                "cut {cut}"
            );
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x41;
            assert!(matches!(from_bytes(&b), Err(Error::Corrupt(_))), "byte {i}");
        }
    }
}
