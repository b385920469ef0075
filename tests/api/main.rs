//! Black-box tests of the running service: each spawns neurocds on a random port against its own
//! PostgreSQL database and the real peers. Tests covering a CDS Hooks 2.0 requirement name its
//! row (`rNN`) from `cds-hooks-2.0-requirements.tsv`; docs/cds-hooks-conformance.md maps them.

mod arrivals;
mod audit;
mod compliance;
mod deploy;
mod discovery;
mod e2e;
mod egress;
mod failover;
mod feedback;
mod fhir_examples;
mod health;
mod helpers;
mod hooks;
mod hostile_peers;
mod metrics;
mod monitoring;
mod openapi;
mod pacs_requests;
mod pages;
mod processes;
mod queue;
mod replicas;
mod smart;
mod sso;
mod traces;
mod workers;
