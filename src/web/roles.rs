//! Who may see what: the two staff roles and the per-route rule table ([`View::allows`]); the
//! README's "Who may see what" shows the same table.

use serde::{Deserialize, Serialize};

/// A staff member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Compliance,
    NeuroOncology,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Compliance => "compliance",
            Role::NeuroOncology => "neuro-oncology",
        }
    }
}

/// What a staff route shows. Every staff route names one, and [`View::allows`] is the whole
/// rule table (the README's "Who may see what" shows the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `/reports/{id}`: one decision with its images, members and feedback.
    CaseReport,
    /// `/audit` and `GET /audit/decisions` (JSON pages), `GET /audit/summary`.
    DecisionLog,
    /// `GET /audit/decisions?format=csv|fhir`: the log in bulk, leaving the system.
    DecisionExport,
    /// `/models`: the model card.
    ModelCard,
    /// `/queue` and `GET /audit/queue`: the analysis queue's depth and its dead letters.
    Queue,
    /// `/monitoring` and `GET /audit/monitoring`: model drift and override rates.
    Monitoring,
}

impl View {
    pub fn allows(self, role: Role) -> bool {
        match self {
            View::CaseReport | View::DecisionLog | View::ModelCard | View::Queue | View::Monitoring => true,
            View::DecisionExport => role == Role::Compliance,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            View::CaseReport => "the case report",
            View::DecisionLog => "the decision log",
            View::DecisionExport => "the decision log export",
            View::ModelCard => "the model card",
            View::Queue => "the analysis queue",
            View::Monitoring => "model monitoring",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_compliance_exports_the_log_and_both_roles_open_the_rest() {
        for view in [View::CaseReport, View::DecisionLog, View::ModelCard, View::Queue, View::Monitoring] {
            assert!(view.allows(Role::Compliance) && view.allows(Role::NeuroOncology), "{view:?}");
        }
        assert!(View::DecisionExport.allows(Role::Compliance));
        assert!(!View::DecisionExport.allows(Role::NeuroOncology));
    }
}
