//! Multi-level attribution: every purchase pays credit up the chain of
//! referrers, per DESIGN.md "Attribution" (chain, creditable events,
//! windows, first-N, qualification, compression, ppm credit, caps).
//!
//! `engine` is the batch pass, `limits` the order-dependent passes (first-N
//! per buyer, caps per beneficiary), `session` the one-event-at-a-time
//! service path with the same semantics.

pub mod engine;
pub mod limits;
pub mod money;
pub mod policy;
pub(crate) mod ranges;
pub mod session;
pub mod totals;

pub use engine::{
    attribute, attribute_global, Attribution, EventInput, Global, Ledger, Qualification, Stats,
    Wide,
};
pub use limits::cap_sorted;
pub use money::Money;
pub use policy::{Policy, Qualify};
pub use session::Session;
pub use totals::Totals;
