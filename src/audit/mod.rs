//! The audit trail: the decision log and clinicians' feedback, in PostgreSQL.
//!
//! Append-only and hash-chained (see `migrations/` and [`chain`]): every row stores the SHA-256 of
//! its canonical content and of the row before it, the database refuses UPDATE and DELETE, and
//! `neurocds audit verify` names the first row that does not match; signed [`checkpoint`]s
//! kept outside the database pin the chains' heads, so cutting rows off the end or rebuilding
//! the chain is caught too. The service connects as a role that may only append to and read
//! the logs (migration `service_role`). What the decisions on one analysis share is stored
//! once and named by its hash from each row ([`content`]). The same database also holds,
//! when configured, the token ids that let every replica refuse a replayed token
//! ([`seen_tokens`]); the analysis queue lives in it too, but is its own module (`queue`).
//!
//! This module knows SQL and hashing; it does not know HTTP, FHIR servers or tensors.

mod append;
pub mod chain;
pub mod checkpoint;
pub mod content;
pub mod db;
pub mod error;
pub mod log;
pub mod monitoring;
pub mod query;
pub mod records;
pub mod schema;
pub mod seen_tokens;
pub mod writer;

pub use db::Database;
pub use content::DecisionContent;
pub use error::AuditError;
pub use records::{DecisionRecord, FeedbackRecord, StoredDecision, StoredFeedback};
