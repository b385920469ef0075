//! The handlebars templates, compiled into the binary (a missing or broken template fails the
//! tests, never a hook in production).
//!
//! Two registries, because they escape differently: card text is Markdown (no HTML escaping;
//! values are cleaned by the card builder), pages and FHIR narratives are HTML (escaped).

use handlebars::Handlebars;

const MARKDOWN: &[(&str, &str)] = &[("card-detail", include_str!("../templates/card-detail.md.hbs"))];

const HTML: &[(&str, &str)] = &[
    ("report-narrative", include_str!("../templates/report-narrative.html.hbs")),
    ("layout-head", include_str!("../templates/pages/layout-head.html.hbs")),
    ("layout-foot", include_str!("../templates/pages/layout-foot.html.hbs")),
    ("report", include_str!("../templates/pages/report.html.hbs")),
    ("audit", include_str!("../templates/pages/audit.html.hbs")),
    ("models", include_str!("../templates/pages/models.html.hbs")),
    ("queue", include_str!("../templates/pages/queue.html.hbs")),
    ("monitoring", include_str!("../templates/pages/monitoring.html.hbs")),
    ("login", include_str!("../templates/pages/login.html.hbs")),
    ("forbidden", include_str!("../templates/pages/forbidden.html.hbs")),
    ("signin-failed", include_str!("../templates/pages/signin-failed.html.hbs")),
    ("signed-out", include_str!("../templates/pages/signed-out.html.hbs")),
];

#[derive(Debug, thiserror::Error)]
#[error("template {name}: {reason}")]
pub struct TemplateError {
    pub name: &'static str,
    pub reason: String,
}

fn registry(templates: &[(&'static str, &'static str)], escape: bool) -> Result<Handlebars<'static>, TemplateError> {
    let mut h = Handlebars::new();
    // Card Markdown is strict (every field must be there); pages tolerate absent optional data.
    h.set_strict_mode(!escape);
    if !escape {
        h.register_escape_fn(handlebars::no_escape);
    }
    for (name, text) in templates {
        h.register_template_string(name, *text).map_err(|e| TemplateError { name, reason: e.to_string() })?;
    }
    Ok(h)
}

/// Card detail (Markdown).
pub fn markdown() -> Result<Handlebars<'static>, TemplateError> {
    registry(MARKDOWN, false)
}

/// Pages and FHIR narrative (HTML, escaped).
pub fn html() -> Result<Handlebars<'static>, TemplateError> {
    registry(HTML, true)
}
