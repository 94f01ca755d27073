//! The social graph's file format: the container of [`crate::persist`]
//! (magic, version, tagged little-endian sections, xxh3-64 checksum) with
//! the ids, their index and the out-edges; the in-edges are rebuilt on
//! load (one transpose), so the file holds each edge once.

use std::path::Path;

use crate::error::{Error, Result};
use crate::persist::{missing, write_atomically, IdSections, Reader, Writer, TAG_END};
use crate::social::SocialGraph;

const MAGIC: &[u8; 8] = b"RGSOCL\0\x1a";

const TAG_OUT_OFF: u32 = 20;
const TAG_OUT_DST: u32 = 21;
const TAG_OUT_P: u32 = 22;
/// Rows merged into an earlier edge, and self-loops dropped.
const TAG_COUNTS: u32 = 23;

/// The graph as bytes (the pickle payload and the file body).
pub fn to_bytes(g: &SocialGraph) -> Vec<u8> {
    let mut w = Writer::new(MAGIC, g.heap_bytes());
    w.ids(&g.ids, &g.index);
    w.u32(TAG_OUT_OFF);
    w.array(&g.out_off);
    w.u32(TAG_OUT_DST);
    w.array(&g.out_dst);
    w.u32(TAG_OUT_P);
    w.array(&g.out_p);
    w.u32(TAG_COUNTS);
    w.array(&[g.duplicate_edges, g.self_loops]);
    w.finish()
}

/// Writes atomically (a temporary file beside `path`, then a rename).
pub fn save(g: &SocialGraph, path: &Path) -> Result<()> {
    write_atomically(&to_bytes(g), path)
}

/// Reads a file written by `save`; `Error::Corrupt` unless it checks out.
pub fn load(path: &Path) -> Result<SocialGraph> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    read_from(file, len)
}

/// Parses bytes written by `to_bytes`; anything else is `Error::Corrupt`.
pub fn from_bytes(bytes: &[u8]) -> Result<SocialGraph> {
    read_from(bytes, bytes.len() as u64)
}

fn read_from<R: std::io::Read>(r: R, len: u64) -> Result<SocialGraph> {
    let mut r = Reader::open(r, len, MAGIC, "referralgraph social graph")?;
    let mut id_sections = IdSections::default();
    let (mut off, mut dst, mut p, mut counts) = (None, None, None, None);
    loop {
        let tag = r.u32()?;
        if id_sections.read(tag, &mut r)? {
            continue;
        }
        match tag {
            TAG_OUT_OFF => off = Some(r.table::<u64>()?),
            TAG_OUT_DST => dst = Some(r.table::<u32>()?),
            TAG_OUT_P => p = Some(r.table::<f32>()?),
            TAG_COUNTS => counts = Some(r.array::<u64>()?),
            TAG_END => break,
            tag => return Err(Error::Corrupt(format!("unknown section {tag}"))),
        }
    }
    r.finish()?;
    let (ids, index) = id_sections.take()?;
    let counts = counts.ok_or_else(|| missing("counts"))?;
    let &[duplicates, loops] = counts.as_slice() else {
        return Err(Error::Corrupt("counts section of the wrong size".into()));
    };
    SocialGraph::from_parts(
        ids,
        index,
        off.ok_or_else(|| missing("edge offsets"))?,
        dst.ok_or_else(|| missing("edges"))?,
        p.ok_or_else(|| missing("probabilities"))?,
        duplicates,
        loops,
    )
    .map_err(Error::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::OnInvalid;
    use crate::ids::IdSlice;
    use crate::social::{EdgeInput, Prob};

    fn sample(strings: bool) -> SocialGraph {
        // 0 -> 1 twice (merged), 1 -> 1 (dropped), 1 -> 2, 2 -> 0, 3 -> 0.
        let (src, dst) = ([0i64, 0, 1, 1, 2, 3], [1i64, 1, 1, 2, 0, 0]);
        let p = [0.5, 0.25, 1.0, 0.125, 0.0, 1.0];
        let offsets: Vec<i64> = (0..=6).collect();
        let (sdata, ddata) = (b"aabbcd", b"bbbcaa");
        let (s, d) = if strings {
            (
                IdSlice::Str {
                    offsets: &offsets,
                    data: sdata,
                },
                IdSlice::Str {
                    offsets: &offsets,
                    data: ddata,
                },
            )
        } else {
            (IdSlice::Int(&src), IdSlice::Int(&dst))
        };
        let input = EdgeInput {
            src: s,
            src_valid: None,
            dst: d,
            dst_valid: None,
            p: Prob::Column(&p, None),
            src_col: "src",
            dst_col: "dst",
            p_col: "p",
        };
        SocialGraph::build(&input, OnInvalid::Raise).unwrap().graph
    }

    fn same(a: &SocialGraph, b: &SocialGraph) {
        assert_eq!(a.num_nodes(), b.num_nodes());
        assert_eq!(a.ids(), b.ids());
        assert_eq!(
            (a.duplicate_edges, a.self_loops),
            (b.duplicate_edges, b.self_loops)
        );
        for u in 0..a.num_nodes() as u32 {
            assert_eq!(a.out(u), b.out(u));
            assert_eq!(a.inn(u), b.inn(u));
            assert_eq!(a.in_uniform(u), b.in_uniform(u));
            assert_eq!(a.out_uniform(u), b.out_uniform(u));
            assert_eq!(b.lookup(a.ids().get(u)), Some(u));
        }
    }

    #[test]
    fn round_trip_is_exact_for_int_and_string_ids() {
        for strings in [false, true] {
            let g = sample(strings);
            assert_eq!((g.duplicate_edges, g.self_loops), (1, 1));
            same(&g, &from_bytes(&to_bytes(&g)).unwrap());
        }
        let dir = std::env::temp_dir().join(format!("rg-social-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.rgs");
        save(&sample(false), &path).unwrap();
        same(&sample(false), &load(&path).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error() {
        crate::persist::every_damage_is_corrupt(&to_bytes(&sample(true)), from_bytes);
    }

    #[test]
    fn a_referral_graph_file_is_not_a_social_graph() {
        let f = crate::forest::test_forest(&[1, 2], &[None, Some(1)]);
        let e = from_bytes(&crate::persist::to_bytes(&f)).unwrap_err();
        assert!(
            e.to_string()
                .contains("not a referralgraph social graph file"),
            "{e}"
        );
        let e = crate::persist::from_bytes(&to_bytes(&sample(false))).unwrap_err();
        assert!(e.to_string().contains("not a referralgraph file"), "{e}");
    }

    #[test]
    fn crafted_parts_are_refused() {
        let g = sample(false);
        let build = |off: Vec<u64>, dst: Vec<u32>, p: Vec<f32>| {
            SocialGraph::from_parts(g.ids.clone(), g.index.clone(), off, dst, p, 0, 0)
        };
        let (off, dst, p) = (g.out_off.clone(), g.out_dst.clone(), g.out_p.clone());
        assert!(build(off.clone(), dst.clone(), p.clone()).is_ok());
        let mut bad = dst.clone();
        bad[0] = 99;
        assert!(
            build(off.clone(), bad, p.clone()).is_err(),
            "end past the users"
        );
        let mut bad = p.clone();
        bad[0] = 1.5;
        assert!(build(off.clone(), dst.clone(), bad).is_err(), "p above 1");
        let mut bad = off.clone();
        bad[1] = 9;
        assert!(build(bad, dst.clone(), p.clone()).is_err(), "offsets");
        let looped: Vec<u32> = (0..dst.len()).map(|_| 0).collect();
        assert!(build(off, looped, p).is_err(), "loops and repeats");
    }
}
