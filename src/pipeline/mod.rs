//! The decision, in two halves that meet at the queue:
//!
//! - [`run`]: a hook's side. It asks for the study's analysis (queued once per key, across
//!   replicas and workers) and, for order-sign, waits for it within the budget.
//! - [`analyse`]: a worker's side. One analysis — study → series → volumes → preprocessing →
//!   scope gate → ensemble → policy — each stage timed, every failure a clinician-safe result.
//!
//! [`analysis`] is the result both sides share; [`cache`] keeps the final ones in memory;
//! [`discover`] is the analysis's first stage: which series, fetched how.

pub mod analyse;
pub mod analysis;
pub mod cache;
pub mod discover;
pub mod run;

pub use run::{Pipeline, PipelineError, Ticket};
