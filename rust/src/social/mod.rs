//! Social graphs: k-hop reach (exact and HyperLogLog), Monte Carlo
//! cascades, and IMM seed selection (DESIGN.md "Social graph").

pub mod bfs;
pub mod cascade;
pub mod generate;
pub mod graph;
pub mod hll;
pub mod imm;
pub mod persist;

pub use cascade::{spread, Model, Spread};
pub use graph::{BuiltSocial, EdgeInput, Prob, SocialGraph};
pub use imm::{imm, ImmParams, ImmResult};
