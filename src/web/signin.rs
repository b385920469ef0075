//! Signing staff in and out of the pages, in the browser: `GET /login` (to the identity
//! provider, or the token form on a site without one), `GET /auth/callback` (back from it), and
//! `POST /logout`.
//!
//! The session is an encrypted, signed cookie (`actix-session`'s cookie store; HttpOnly,
//! SameSite=Lax so that the provider's redirect back carries it, Secure on HTTPS) that every
//! replica holding `staff.sso.session_key` can read. It holds the sign-in under way
//! ([`PendingSignIn`]: state, nonce, PKCE verifier, where to return) and then the signed-in
//! member of staff ([`SessionUser`]) with an expiry of our own and a CSRF token for the
//! sign-out form.

use actix_session::{Session, SessionExt, SessionMiddleware, config::{BrowserSession, CookieContentSecurity}, storage::CookieSessionStore};
use actix_web::{
    HttpRequest, HttpResponse,
    cookie::{Cookie, Key, SameSite},
    http::header,
    web,
};
use serde::Deserialize;
use serde_json::json;

use super::{
    render::page,
    sso::{PENDING_LIFETIME_S, PendingSignIn},
    staff::{COOKIE, SESSION_USER, SessionUser},
};
use crate::state::AppState;

const SESSION_COOKIE: &str = "neurocds_session";
const PENDING: &str = "signin";
/// Where a sign-in without a (usable) return path lands.
const HOME: &str = "/audit";

/// The session middleware: cookie store, private (encrypted) content, a browser-session cookie
/// (our own expiry is in [`SessionUser`]).
pub fn sessions(key: Key, secure: bool) -> SessionMiddleware<CookieSessionStore> {
    SessionMiddleware::builder(CookieSessionStore::default(), key)
        .cookie_name(SESSION_COOKIE.into())
        .cookie_path("/".into())
        .cookie_http_only(true)
        .cookie_secure(secure)
        .cookie_same_site(SameSite::Lax)
        .cookie_content_security(CookieContentSecurity::Private)
        .session_lifecycle(BrowserSession::default())
        .build()
}

/// Unix seconds.
pub(super) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `return_to` if it is a path on this service; the decision log otherwise. Anything that a
/// browser could read as another origin (`//host`, `/\host`, a scheme, control characters) is
/// refused: the sign-in is never an open redirect.
pub fn safe_return_to(candidate: Option<&str>) -> String {
    match candidate {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.starts_with("/\\") && p.len() <= 2048 && !p.chars().any(|c| c.is_control() || c == '\\') => p.to_owned(),
        _ => HOME.to_owned(),
    }
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

/// A page that says why a sign-in did not happen, with a way to try again.
fn failed(state: &AppState, status: actix_web::http::StatusCode, why: &str) -> HttpResponse {
    let mut r = page(state, "signin-failed", None, json!({ "why": why }));
    *r.status_mut() = status;
    r
}

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
}

/// `GET /login`: to the identity provider (or the token form when there is none).
pub async fn login(req: HttpRequest, q: web::Query<LoginQuery>, state: web::Data<AppState>) -> HttpResponse {
    let return_to = safe_return_to(q.return_to.as_deref());
    let Some(sso) = state.staff.sso() else {
        return page(&state, "login", None, json!({ "error": null }));
    };
    let session = req.get_session();
    let (url, pending) = match sso.begin(return_to, now()).await {
        Ok(begun) => begun,
        Err(e) => {
            tracing::error!(error = %e, "staff sign-in cannot start");
            return failed(&state, actix_web::http::StatusCode::SERVICE_UNAVAILABLE, "The hospital's sign-in service cannot be reached just now. Try again in a minute; if it persists, call the service desk.");
        }
    };
    if session.insert(PENDING, &pending).is_err() {
        return failed(&state, actix_web::http::StatusCode::INTERNAL_SERVER_ERROR, "The sign-in could not be started.");
    }
    see_other(url.as_str())
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    /// RFC 9207: which provider answered (when it says), against mix-up attacks.
    iss: Option<String>,
}

/// `GET /auth/callback`: the identity provider's answer. The begun sign-in is taken out of the
/// session first, so a code or state comes back at most once.
pub async fn callback(req: HttpRequest, q: web::Query<CallbackQuery>, state: web::Data<AppState>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Some(sso) = state.staff.sso() else {
        return HttpResponse::NotFound().content_type("text/plain").body("single sign-on is not configured");
    };
    let session = req.get_session();
    let pending = session.remove_as::<PendingSignIn>(PENDING).and_then(Result::ok);
    if let Some(error) = &q.error {
        // The provider's error code (OAuth 2.0 names a short ASCII code; anything else is cut).
        let code: String = error.chars().filter(char::is_ascii_graphic).take(64).collect();
        tracing::warn!(error = %code, "the identity provider did not sign a member of staff in");
        return failed(&state, StatusCode::UNAUTHORIZED, "The hospital's sign-in service did not sign you in.");
    }
    let (Some(pending), Some(code), Some(returned_state)) = (pending, q.code.clone(), q.state.as_deref()) else {
        tracing::warn!("refused a sign-in callback this browser did not start (or one already used)");
        return failed(&state, StatusCode::BAD_REQUEST, "This sign-in was not started in this browser, or it was already used. Sign in again.");
    };
    if !constant_time_eq(pending.state.as_bytes(), returned_state.as_bytes()) {
        tracing::warn!("refused a sign-in callback whose state does not match");
        return failed(&state, StatusCode::BAD_REQUEST, "This sign-in was not started in this browser, or it was already used. Sign in again.");
    }
    if q.iss.as_deref().is_some_and(|iss| iss != sso.issuer()) {
        tracing::warn!("refused a sign-in callback from another issuer");
        return failed(&state, StatusCode::BAD_REQUEST, "This sign-in came back from another identity provider. Sign in again.");
    }
    if now() - pending.started_at > PENDING_LIFETIME_S {
        return failed(&state, StatusCode::BAD_REQUEST, "The sign-in took too long. Sign in again.");
    }
    let signed_in = match sso.finish(&pending, code).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(reason = %e, "refused a staff sign-in");
            return failed(&state, StatusCode::UNAUTHORIZED, "The sign-in could not be verified. Sign in again.");
        }
    };
    // A new session for the signed-in user: nothing set before the sign-in carries over.
    session.renew();
    let user = SessionUser {
        subject: signed_in.subject,
        name: signed_in.name,
        role: signed_in.role,
        expires_at: now() + sso.session_lifetime().as_secs() as i64,
        csrf: random_token(),
    };
    if session.insert(SESSION_USER, &user).is_err() {
        return failed(&state, StatusCode::INTERNAL_SERVER_ERROR, "The sign-in could not be kept.");
    }
    tracing::info!(role = ?user.role, "a member of staff signed in");
    see_other(&pending.return_to)
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

/// `POST /logout`: ends the session (and drops a pasted-token cookie) when the form's CSRF token
/// is the session's.
pub async fn logout(req: HttpRequest, form: web::Form<LogoutForm>, state: web::Data<AppState>) -> HttpResponse {
    let session: Session = req.get_session();
    let user = session.get::<SessionUser>(SESSION_USER).ok().flatten();
    let legacy = req.cookie(COOKIE).is_some();
    match user {
        Some(u) if constant_time_eq(u.csrf.as_bytes(), form.csrf.as_bytes()) => session.purge(),
        Some(_) => return failed(&state, actix_web::http::StatusCode::FORBIDDEN, "That sign-out form is out of date. Reload the page and sign out again."),
        None if legacy => {}
        None => return see_other("/login"),
    }
    let mut r = page(&state, "signed-out", None, json!({}));
    if legacy {
        let mut gone = Cookie::build(COOKIE, "").path("/").finish();
        gone.make_removal();
        let _ = r.add_cookie(&gone);
    }
    r
}

/// 32 random bytes, hex.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Compares secrets (state, CSRF tokens) in time that does not depend on where they differ.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_return_path_must_be_a_path_on_this_service() {
        assert_eq!(safe_return_to(Some("/reports/0b9e?x=1")), "/reports/0b9e?x=1");
        for hostile in ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "evil", "/a\r\nSet-Cookie: x", "/a\\b"] {
            assert_eq!(safe_return_to(Some(hostile)), HOME, "{hostile:?}");
        }
        assert_eq!(safe_return_to(None), HOME);
    }

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
