//! Errors at the CDS Hooks edge, answered as FHIR `OperationOutcome` JSON with the right status.
//!
//! | error | status |
//! |---|---|
//! | malformed request, wrong hook, missing field | 400 |
//! | missing or untrusted JWT | 401 (no detail: an attacker learns nothing) |
//! | unknown service id | 404 |
//! | required data neither prefetched nor fetchable | 412 |
//! | too many analyses in flight | 503 |
//! | audit trail unavailable (nothing is answered that is not recorded) | 503 |
//!
//! Never a stack trace, never a token: the message is the error's `Display`, written for people.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};

use super::hook::RequestError;

#[derive(Debug, thiserror::Error)]
pub enum CdsError {
    #[error(transparent)]
    BadRequest(#[from] RequestError),
    #[error("unauthorized")]
    Unauthorized,
    #[error("no CDS service `{0}` here; GET /cds-services lists them")]
    UnknownService(String),
    /// Feedback on a card this service never gave the caller: unknown, or another client's
    /// (the two are answered alike, so the answer says nothing about other clients' cards).
    #[error("card {0} is not one this service gave you")]
    UnknownCard(uuid::Uuid),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Overloaded(String),
    #[error("the audit trail is unavailable: {0}")]
    AuditUnavailable(String),
}

impl CdsError {
    fn issue_code(&self) -> &'static str {
        match self {
            CdsError::BadRequest(_) => "invalid",
            CdsError::Unauthorized => "security",
            CdsError::UnknownService(_) | CdsError::UnknownCard(_) => "not-found",
            CdsError::PreconditionFailed(_) => "incomplete",
            CdsError::Overloaded(_) | CdsError::AuditUnavailable(_) => "transient",
        }
    }

    /// The `outcome` label of `neurocds_hooks_total` for a hook refused with this error (a
    /// closed set, like every label).
    pub fn metric_outcome(&self) -> &'static str {
        match self {
            CdsError::BadRequest(_) => "bad-request",
            CdsError::Unauthorized => "unauthorized",
            CdsError::UnknownService(_) | CdsError::UnknownCard(_) => "not-found",
            CdsError::PreconditionFailed(_) => "prefetch-unavailable",
            CdsError::Overloaded(_) => "overloaded",
            CdsError::AuditUnavailable(_) => "audit-unavailable",
        }
    }
}

/// A FHIR OperationOutcome: every refusal's body.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationOutcome {
    /// Always `OperationOutcome`.
    #[schema(example = "OperationOutcome")]
    pub resource_type: &'static str,
    pub issue: Vec<Issue>,
}

/// One issue of an [`OperationOutcome`].
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Issue {
    /// Always `error`.
    pub severity: &'static str,
    /// The FHIR issue type: `invalid`, `security`, `not-found`, `incomplete` or `transient`.
    pub code: String,
    /// What was wrong, for people (never a token or a stack trace).
    pub diagnostics: String,
}

/// An OperationOutcome with one error issue.
pub fn operation_outcome(code: &str, diagnostics: &str) -> OperationOutcome {
    OperationOutcome { resource_type: "OperationOutcome", issue: vec![Issue { severity: "error", code: code.to_owned(), diagnostics: diagnostics.to_owned() }] }
}

impl ResponseError for CdsError {
    fn status_code(&self) -> StatusCode {
        match self {
            CdsError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CdsError::Unauthorized => StatusCode::UNAUTHORIZED,
            CdsError::UnknownService(_) | CdsError::UnknownCard(_) => StatusCode::NOT_FOUND,
            CdsError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            CdsError::Overloaded(_) | CdsError::AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status_code());
        if matches!(self, CdsError::Unauthorized) {
            r.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if matches!(self, CdsError::Overloaded(_) | CdsError::AuditUnavailable(_)) {
            r.insert_header(("Retry-After", "5"));
        }
        r.content_type("application/json").json(operation_outcome(self.issue_code(), &self.to_string()))
    }
}
