//! Core errors are data: each variant says which Python exception it becomes
//! (the binding crate's `errors.rs` is the one place that maps them).

use std::fmt;

/// The result type of every fallible core function.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in the core, with enough context to name the
/// column, row and id in the message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Missing column, wrong column type, id types that differ between tables.
    #[error("{0}")]
    Schema(String),
    /// A bad value in a row (null id, self-referral, null/NaN amount, ...).
    #[error("{}", fmt_located(.column, *.row, .id.as_deref(), .reason))]
    Invalid {
        column: String,
        row: Option<u64>,
        id: Option<String>,
        reason: String,
    },
    /// The same user id on two rows of the referrals table.
    #[error("column {column}, row {row}: duplicate user id {id} ({})", match .first_row {
        Some(r) => format!("first seen on row {r}"),
        None => "already in the graph".to_string(),
    })]
    DuplicateUser {
        column: String,
        row: u64,
        id: String,
        /// None: the id is already in the graph being extended.
        first_row: Option<u64>,
    },
    /// A referral cycle; the ids in referral order (each referred by the next).
    #[error("referral cycle: {}", fmt_cycle(.0))]
    Cycle(Vec<String>),
    /// A bad policy, or one that needs a column the input lacks.
    #[error("{0}")]
    Policy(String),
    /// A saved graph that is truncated, corrupt or of an unknown version.
    #[error("corrupt graph file: {0}")]
    Corrupt(String),
    /// An arithmetic result that does not fit its type.
    #[error("overflow: {0}")]
    Overflow(String),
    /// The operation was interrupted (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
    /// The work would need more memory than the process has available.
    #[error("{0}")]
    Memory(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn fmt_located(column: &str, row: Option<u64>, id: Option<&str>, reason: &str) -> String {
    let mut s = format!("column {column}");
    if let Some(r) = row {
        s.push_str(&format!(", row {r}"));
    }
    if let Some(id) = id {
        s.push_str(&format!(" (id {id})"));
    }
    s.push_str(": ");
    s.push_str(reason);
    s
}

fn fmt_cycle(ids: &[String]) -> String {
    let mut s = String::new();
    for id in ids {
        s.push_str(id);
        s.push_str(" -> ");
    }
    if let Some(first) = ids.first() {
        s.push_str(first);
    }
    s.push_str(&format!(
        " ({} users; each is referred by the next)",
        ids.len()
    ));
    s
}

/// Why a row was left out (or a referral dropped) in lenient mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueKind {
    NullId,
    DuplicateUser,
    SelfReferral,
    Cycle,
    NullEventId,
    NullAmount,
    InvalidAmount,
    NullTs,
    NullProbability,
    InvalidProbability,
}

impl IssueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueKind::NullId => "null_id",
            IssueKind::DuplicateUser => "duplicate_user",
            IssueKind::SelfReferral => "self_referral",
            IssueKind::Cycle => "cycle",
            IssueKind::NullEventId => "null_event_id",
            IssueKind::NullAmount => "null_amount",
            IssueKind::InvalidAmount => "invalid_amount",
            IssueKind::NullTs => "null_ts",
            IssueKind::NullProbability => "null_p",
            IssueKind::InvalidProbability => "invalid_p",
        }
    }
}

impl fmt::Display for IssueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in lenient mode: the row, the id (if any), the column,
/// and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub row: u64,
    pub id: Option<String>,
    pub column: String,
    pub kind: IssueKind,
    pub message: String,
}

/// Strict (`Raise`) or lenient (`Drop`) handling of bad input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInvalid {
    Raise,
    Drop,
}
