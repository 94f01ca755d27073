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
/// The container's version (both formats: this one and the social graph's).
const VERSION: u32 = 1;

const TAG_IDS_INT: u32 = 1;
const TAG_IDS_STR: u32 = 2;
const TAG_PARENT: u32 = 3;
const TAG_JOINED: u32 = 4;
const TAG_CHANNELS: u32 = 5;
const TAG_INDEX_DENSE: u32 = 6;
const TAG_INDEX_HASH: u32 = 7;
const TAG_JOINED_TZ: u32 = 8;
/// The last section's tag, in every format of this container.
pub(crate) const TAG_END: u32 = 0xFFFF_FFFF;

/// Plain old data stored as little-endian arrays, readable from any bytes
/// (no invalid bit patterns).
pub(crate) trait Pod: Copy + Default {
    const SIZE: usize;
    fn put_le(&self, out: &mut Vec<u8>);
    fn swap_from_le(&mut self);
}

macro_rules! pod {
    ($t:ty, $size:expr, $bits:ty, $to:expr, $from:expr) => {
        impl Pod for $t {
            const SIZE: usize = $size;
            fn put_le(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&$to(*self).to_le_bytes());
            }
            fn swap_from_le(&mut self) {
                *self = $from(<$bits>::from_le($to(*self)));
            }
        }
    };
}
pod!(u32, 4, u32, |x: u32| x, |x: u32| x);
pod!(u64, 8, u64, |x: u64| x, |x: u64| x);
pod!(i64, 8, i64, |x: i64| x, |x: i64| x);
pod!(f32, 4, u32, f32::to_bits, f32::from_bits);

/// Writes a container: a magic, the version, tagged sections, an end tag
/// and an xxh3-64 of everything before it.
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub(crate) fn new(magic: &[u8; 8], capacity: usize) -> Self {
        let mut w = Writer(Vec::with_capacity(capacity + 64));
        w.0.extend_from_slice(magic);
        w.u32(VERSION);
        w
    }
    pub(crate) fn u32(&mut self, x: u32) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, x: u64) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    /// An array: its length, then its items (one copy on little-endian
    /// targets).
    pub(crate) fn array<T: Pod>(&mut self, v: &[T]) {
        self.u64(v.len() as u64);
        if cfg!(target_endian = "little") {
            // SAFETY: the Pod types have no padding, so their memory is
            // initialised bytes; on a little-endian target those bytes are
            // the format's.
            let bytes = unsafe {
                std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v))
            };
            self.0.extend_from_slice(bytes);
        } else {
            for x in v {
                x.put_le(&mut self.0);
            }
        }
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    /// The ids and their index, sections both formats share.
    pub(crate) fn ids(&mut self, ids: &IdValues, index: &IdIndex) {
        match ids {
            IdValues::Int(v) => {
                self.u32(TAG_IDS_INT);
                self.array(v);
            }
            IdValues::Str { offsets, data } => {
                self.u32(TAG_IDS_STR);
                self.array(offsets);
                self.bytes(data);
            }
        }
        match index {
            IdIndex::Dense { min, table } => {
                self.u32(TAG_INDEX_DENSE);
                self.array(&[*min]);
                self.array(table);
            }
            IdIndex::Hash(h) => {
                self.u32(TAG_INDEX_HASH);
                self.u64(h.len() as u64);
                self.array(h.slots());
            }
        }
    }
    /// The end tag and the checksum.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.u32(TAG_END);
        let sum = xxhash_rust::xxh3::xxh3_64(&self.0);
        self.u64(sum);
        self.0
    }
}

/// Serialises a forest to bytes (the pickle payload and the file body).
pub fn to_bytes(f: &Forest) -> Vec<u8> {
    let mut w = Writer::new(MAGIC, f.heap_bytes());
    w.ids(&f.ids, &f.index);
    w.u32(TAG_PARENT);
    w.array(&f.parent);
    if let Some(j) = &f.joined_at {
        w.u32(TAG_JOINED);
        w.array(j);
    }
    if let Some(c) = &f.channels {
        w.u32(TAG_CHANNELS);
        w.array(&c.codes);
        w.u64(c.names.len() as u64);
        for name in &c.names {
            w.bytes(name.as_bytes());
        }
    }
    if let Some(tz) = &f.joined_tz {
        w.u32(TAG_JOINED_TZ);
        w.bytes(tz.as_bytes());
    }
    w.finish()
}

/// Writes a forest atomically (see [`write_atomically`]).
pub fn save(f: &Forest, path: &Path) -> Result<()> {
    write_atomically(&to_bytes(f), path)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it.
pub(crate) fn write_atomically(bytes: &[u8], path: &Path) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
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

/// Streams a container out of `r` (`len` bytes in all), hashing as it goes.
pub(crate) struct Reader<R> {
    r: R,
    hasher: xxhash_rust::xxh3::Xxh3,
    /// Bytes left before the trailing checksum.
    left: u64,
}

impl<R: std::io::Read> Reader<R> {
    /// Checks the magic (`what` names the format in the error) and the
    /// version.
    pub(crate) fn open(r: R, len: u64, magic: &[u8; 8], what: &str) -> Result<Self> {
        if len < (magic.len() + 4 + 4 + 8) as u64 {
            return Err(Error::Corrupt(format!("not a {what} file")));
        }
        let mut r = Reader {
            r,
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            left: len - 8,
        };
        let mut m = [0u8; 8];
        r.fill(&mut m)?;
        if &m != magic {
            return Err(Error::Corrupt(format!("not a {what} file")));
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(Error::Corrupt(format!(
                "format version {version}, this build reads version {VERSION}"
            )));
        }
        Ok(r)
    }
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
    pub(crate) fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.fill(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
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
    pub(crate) fn array<T: Pod>(&mut self) -> Result<Vec<T>> {
        let n = self.len(T::SIZE)?;
        let mut v = vec![T::default(); n];
        // SAFETY: `v` owns n * SIZE initialised bytes; u8 has alignment 1;
        // every bit pattern is a valid Pod value, so any file bytes are fine.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, n * T::SIZE) };
        self.fill(bytes)?;
        if cfg!(target_endian = "big") {
            v.iter_mut().for_each(T::swap_from_le);
        }
        Ok(v)
    }
    /// [`array`](Self::array) for a table a graph keeps and reads at
    /// random (on huge pages: see `alloc::huge_tables`).
    pub(crate) fn table<T: Pod>(&mut self) -> Result<Vec<T>> {
        crate::alloc::huge_tables(|| self.array())
    }
    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.len(1)?;
        let mut v = vec![0u8; n];
        self.fill(&mut v)?;
        Ok(v)
    }
    pub(crate) fn string(&mut self, what: &str) -> Result<String> {
        String::from_utf8(self.bytes()?).map_err(|_| Error::Corrupt(format!("{what} is not UTF-8")))
    }
    /// After the end tag: no bytes left but the checksum, and it matches.
    pub(crate) fn finish(mut self) -> Result<()> {
        if self.left != 0 {
            return Err(Error::Corrupt("bytes after the last section".into()));
        }
        let mut sum = [0u8; 8];
        self.r
            .read_exact(&mut sum)
            .map_err(|_| Error::Corrupt("truncated".into()))?;
        if self.hasher.digest() != u64::from_le_bytes(sum) {
            return Err(Error::Corrupt(
                "checksum mismatch (truncated or damaged)".into(),
            ));
        }
        Ok(())
    }
}

/// The sections both formats share: ids and their index.
#[derive(Default)]
pub(crate) struct IdSections {
    ids: Option<IdValues>,
    index: Option<IdIndex>,
}

impl IdSections {
    /// Reads the section `tag` if it is one of these; false otherwise.
    pub(crate) fn read<R: std::io::Read>(&mut self, tag: u32, r: &mut Reader<R>) -> Result<bool> {
        match tag {
            TAG_IDS_INT => self.ids = Some(IdValues::Int(r.table()?)),
            TAG_IDS_STR => {
                let offsets = r.table()?;
                let data = crate::alloc::huge_tables(|| r.bytes())?;
                self.ids = Some(IdValues::Str { offsets, data });
            }
            TAG_INDEX_DENSE => {
                let min = *r
                    .array::<i64>()?
                    .first()
                    .ok_or_else(|| Error::Corrupt("dense index without a minimum".into()))?;
                self.index = Some(IdIndex::Dense {
                    min,
                    table: r.table()?,
                });
            }
            TAG_INDEX_HASH => {
                let _len = r.u64()?; // recounted from the slots
                let slots = r.table()?;
                self.index = Some(IdIndex::Hash(
                    HashIndex::from_parts(slots)
                        .ok_or_else(|| Error::Corrupt("hash index is malformed".into()))?,
                ));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
    pub(crate) fn take(self) -> Result<(IdValues, IdIndex)> {
        Ok((
            self.ids.ok_or_else(|| missing("ids"))?,
            self.index.ok_or_else(|| missing("index"))?,
        ))
    }
}

pub(crate) fn missing(what: &str) -> Error {
    Error::Corrupt(format!("missing section: {what}"))
}

fn read_from<R: std::io::Read>(r: R, len: u64) -> Result<Forest> {
    let mut r = Reader::open(r, len, MAGIC, "referralgraph")?;
    let mut id_sections = IdSections::default();
    let (mut parent, mut joined, mut channels, mut tz) = (None, None, None, None);
    loop {
        let tag = r.u32()?;
        if id_sections.read(tag, &mut r)? {
            continue;
        }
        match tag {
            TAG_PARENT => parent = Some(r.array()?),
            TAG_JOINED => joined = Some(r.array()?),
            TAG_CHANNELS => {
                let codes = r.array()?;
                let k = r.len(8)?;
                let mut names = Vec::with_capacity(k);
                for _ in 0..k {
                    names.push(r.string("channel name")?);
                }
                channels = Some(Channels { codes, names });
            }
            TAG_JOINED_TZ => tz = Some(r.string("time zone")?),
            TAG_END => break,
            tag => return Err(Error::Corrupt(format!("unknown section {tag}"))),
        }
    }
    r.finish()?;
    let (ids, index) = id_sections.take()?;
    Forest::from_parts(
        ids,
        index,
        parent.ok_or_else(|| missing("parent"))?,
        joined,
        channels,
        tz,
    )
    .map_err(Error::Corrupt)
}

/// Asserts that `parse` refuses every prefix of `bytes` and every copy
/// with one byte flipped, as `Error::Corrupt`.
#[cfg(test)]
pub(crate) fn every_damage_is_corrupt<T>(bytes: &[u8], parse: impl Fn(&[u8]) -> Result<T>) {
    for cut in 0..bytes.len() {
        assert!(
            matches!(parse(&bytes[..cut]), Err(Error::Corrupt(_))),
            "cut {cut}"
        );
    }
    for i in 0..bytes.len() {
        let mut b = bytes.to_vec();
        b[i] ^= 0x41;
        assert!(matches!(parse(&b), Err(Error::Corrupt(_))), "byte {i}");
    }
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
        every_damage_is_corrupt(&to_bytes(&sample()), from_bytes);
    }
}
