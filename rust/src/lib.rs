//! referralgraph-core: the pure-Rust engine behind the `referralgraph`
//! Python package. It knows nothing of Python or Arrow: inputs are slices,
//! outputs are vectors, errors are data (`error::Error`).

// Loops over row indices that address several parallel columns read better
// as index loops than as zipped iterators.
#![allow(clippy::needless_range_loop)]

pub mod alloc;
pub mod attribution;
pub mod bfs;
pub mod error;
pub mod forest;
pub mod ids;
pub mod once;
pub mod par;
pub mod persist;
pub mod pool;
pub mod program;
pub mod progress;
pub mod reach;
pub mod rng;
pub mod scores;
pub mod social;
pub mod synthetic;
pub mod sysmem;

pub use error::{Error, Issue, IssueKind, OnInvalid, Result};
pub use forest::{Built, Channels, Forest, ReferralInput, StrColumn, NO_CHANNEL, NULL_TS};
pub use ids::{IdKind, IdRef, IdSlice, IdValues, UserIx, NO_USER};
