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
        self.0.reserve(v.len() * 4);
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
    }
    fn i64s(&mut self, v: &[i64]) {
        self.u64(v.len() as u64);
        self.0.reserve(v.len() * 8);
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
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

pub fn load(path: &Path) -> Result<Forest> {
    let bytes = std::fs::read(path)?;
    from_bytes(&bytes)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| Error::Corrupt(format!("truncated at byte {}", self.at)))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn len(&mut self, width: usize) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n.checked_mul(width).is_some_and(|b| b <= self.b.len()))
            .ok_or_else(|| Error::Corrupt(format!("array of {n} items exceeds the file")))
    }
    fn u32s(&mut self) -> Result<Vec<u32>> {
        let n = self.len(4)?;
        Ok(self
            .take(n * 4)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }
    fn i64s(&mut self) -> Result<Vec<i64>> {
        let n = self.len(8)?;
        Ok(self
            .take(n * 8)?
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.len(1)?;
        self.take(n)
    }
}

/// Parses bytes written by `to_bytes`; anything else is `Error::Corrupt`.
pub fn from_bytes(bytes: &[u8]) -> Result<Forest> {
    if bytes.len() < MAGIC.len() + 4 + 4 + 8 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Error::Corrupt("not a referralgraph file".into()));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    let want = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
    if xxhash_rust::xxh3::xxh3_64(body) != want {
        return Err(Error::Corrupt(
            "checksum mismatch (truncated or damaged)".into(),
        ));
    }
    let mut r = Reader {
        b: body,
        at: MAGIC.len(),
    };
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
            TAG_IDS_INT => ids = Some(IdValues::Int(r.i64s()?)),
            TAG_IDS_STR => {
                let offsets = r.i64s()?;
                let data = r.bytes()?.to_vec();
                ids = Some(IdValues::Str { offsets, data });
            }
            TAG_PARENT => parent = Some(r.u32s()?),
            TAG_JOINED => joined = Some(r.i64s()?),
            TAG_CHANNELS => {
                let codes = r.u32s()?;
                let k = r.len(8)?;
                let mut names = Vec::with_capacity(k);
                for _ in 0..k {
                    let s = std::str::from_utf8(r.bytes()?)
                        .map_err(|_| Error::Corrupt("channel name is not UTF-8".into()))?;
                    names.push(s.to_string());
                }
                channels = Some(Channels { codes, names });
            }
            TAG_INDEX_DENSE => {
                let min = *r
                    .i64s()?
                    .first()
                    .ok_or_else(|| Error::Corrupt("dense index without a minimum".into()))?;
                index = Some(IdIndex::Dense {
                    min,
                    table: r.u32s()?,
                });
            }
            TAG_INDEX_HASH => {
                let _len = r.u64()?; // recounted from the slots
                let slots = r.u32s()?;
                index = Some(IdIndex::Hash(
                    HashIndex::from_parts(slots)
                        .ok_or_else(|| Error::Corrupt("hash index is malformed".into()))?,
                ));
            }
            TAG_JOINED_TZ => {
                let s = std::str::from_utf8(r.bytes()?)
                    .map_err(|_| Error::Corrupt("time zone is not UTF-8".into()))?;
                tz = Some(s.to_string());
            }
            TAG_END => break,
            tag => return Err(Error::Corrupt(format!("unknown section {tag}"))),
        }
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
