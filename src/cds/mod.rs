//! The CDS Hooks 2.0 protocol: discovery, hook invocation, prefetch, JWT trust, cards, feedback.
//!
//! This layer parses what the EHR sends into typed requests, checks who sent it, and turns the
//! pipeline's decision into cards. It never touches pixels or tensors.

pub mod auth;
pub mod card;
pub mod discovery;
pub mod hook;
pub mod outcome;
pub mod prefetch;

use actix_web::web;

pub fn routes(_cfg: &mut web::ServiceConfig) {}
