//! Times the attribution pass on a synthetic program (for profiling).
use referralgraph_core::attribution::{attribute, EventInput, Policy, Qualify};
use referralgraph_core::synthetic::{as_strings, program, Params};
use referralgraph_core::{Forest, IdSlice, OnInvalid};
use std::time::Instant;

#[global_allocator]
static ALLOC: referralgraph_core::alloc::HugePageAlloc = referralgraph_core::alloc::HugePageAlloc;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    // RG_EVENTS=k: k events per user on average (the Python bench's 5).
    let mut params = Params::new(n, 0);
    if let Some(k) = std::env::var("RG_EVENTS").ok().and_then(|s| s.parse().ok()) {
        params.events_per_user = k;
    }
    let (r, e) = program(&params);
    // RG_STR=1: the same program with string ids ("u" + the number).
    let strings = std::env::var_os("RG_STR").is_some();
    let sids = r.string_ids();
    let (eo, ed) = as_strings(&e.user_id, None);
    let input = if strings {
        r.input_str(&sids)
    } else {
        r.input()
    };
    let f = Forest::build(&input, OnInvalid::Raise).unwrap().forest;
    // RG_RELEASE=1: the calls start with no kept blocks (as after
    // `release_memory()`), not with those the generation and build freed.
    if std::env::var_os("RG_RELEASE").is_some() {
        referralgraph_core::alloc::release_cached();
    }
    let ev = EventInput {
        buyer: if strings {
            IdSlice::Str {
                offsets: &eo,
                data: &ed,
            }
        } else {
            IdSlice::Int(&e.user_id)
        },
        buyer_valid: None,
        amount: &e.amount,
        amount_valid: None,
        ts: Some((&e.ts, None)),
        event_id_valid: None,
        event_id: None,
        keep_rows: false,
        buyer_col: "user_id",
        amount_col: "amount",
        ts_col: "ts",
        event_id_col: "event_id",
    };
    // Plain RG_REPS times (default 3): the first call pays the page faults
    // of fresh memory, the later ones show the warm cost (their median is
    // printed last).
    let reps: usize = std::env::var("RG_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut runs = vec![("plain", Qualify::Always, None); reps];
    runs.push(("full", Qualify::Purchased, Some(50_000i64)));
    let mut lk: Vec<_> = (0..if strings { 0 } else { 7 })
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f.lookup_ints(&e.user_id, |_| true));
            t.elapsed()
        })
        .collect();
    lk.sort();
    if let Some(m) = lk.get(3) {
        eprintln!("lookup median {m:?}");
    }
    let mut warm = Vec::new();
    for (i, (name, q, cap)) in runs.into_iter().enumerate() {
        let p = Policy::new(
            &[0.1, 0.05, 0.02],
            if cap.is_some() {
                Some(365 * 86_400 * 1_000_000_000)
            } else {
                None
            },
            None,
            q,
            false,
            cap,
        )
        .unwrap();
        let t = Instant::now();
        let a = attribute(&f, &ev, &p, OnInvalid::Raise).unwrap();
        if i > 0 && i < reps {
            warm.push(t.elapsed());
        }
        eprintln!(
            "{name}: {:?} for {} events, {} rows",
            t.elapsed(),
            e.amount.len(),
            a.ledger.len()
        );
    }
    warm.sort();
    if let Some(m) = warm.get(warm.len() / 2) {
        eprintln!("plain, warm median of {}: {m:?}", warm.len());
    }
}
