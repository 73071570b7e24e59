//! Who is looking: sign in with an API key, the session cookie, the header bar's project
//! picker, sign out.
//!
//! Every request re-reads its session and its key: a revoked, expired or rotated key, or a
//! signed-out session, is refused on the next click, whatever the cookie says.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;

use super::error::{PageError, render};
use crate::auth::permission::{Permission, valid_project_id};
use crate::auth::session::{self, COOKIE, SESSION_TTL, SessionRefused};
use crate::auth::{AuthError, Principal, presented_token};
use crate::event::format_time;
use crate::http::AppState;
use crate::http::principal::{header as header_text, source_ip};
use crate::store::sessions::{self, SessionRow};

/// A signed-in dashboard user: the key's principal (with the session's project), the session
/// and its CSRF token.
pub struct Viewer {
    pub principal: Principal,
    pub id_hash: String,
    pub csrf: String,
}

/// What the header bar shows on every page.
pub struct Chrome {
    pub key_name: String,
    pub csrf: String,
    /// The project the pages show ("" when the key has none to pick).
    pub project: String,
    /// Projects to pick from (empty when there is no choice).
    pub projects: Vec<String>,
    /// The active tab.
    pub nav: &'static str,
    pub may_traces: bool,
    pub may_rules: bool,
    pub may_keys: bool,
    pub may_audit: bool,
    pub may_reports: bool,
    /// Where the project picker sends the browser back to.
    pub here: String,
}

fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == COOKIE).then_some(v)
        })
}

fn refused_code(r: SessionRefused) -> &'static str {
    match r {
        SessionRefused::Unknown => "none",
        SessionRefused::Ended => "signed_out",
        SessionRefused::Expired => "expired",
        SessionRefused::Rotated => "rotated",
    }
}

/// The sentence the sign-in page shows for a `reason` code (never the code's raw text).
fn reason_text(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "signed_out" => "You signed out.",
        "expired" => "Your session or key expired. Sign in again.",
        "rotated" => "This key was rotated. Sign in with the new key.",
        "revoked" => "This key was revoked.",
        "none" => "Sign in to continue.",
        _ => return None,
    })
}

impl Viewer {
    /// Reads and checks the session of a request.
    pub async fn from_parts(parts: &Parts, state: &AppState) -> Result<Viewer, PageError> {
        let cookie = cookie_value(&parts.headers).ok_or(PageError::SignIn("none"))?;
        let id_hash = state
            .sessions
            .verify(cookie)
            .ok_or(PageError::SignIn("none"))?;
        let row = sessions::find(&state.store, &id_hash)
            .await
            .map_err(unavailable)?
            .ok_or(PageError::SignIn("none"))?;
        let key = match state.auth.current(&row.key_id).await {
            Ok(k) => k,
            Err(AuthError::Unavailable) => return Err(unavailable(AuthError::Unavailable)),
            Err(AuthError::Revoked) => return Err(PageError::SignIn("revoked")),
            Err(AuthError::Expired) => return Err(PageError::SignIn("expired")),
            Err(_) => return Err(PageError::SignIn("none")),
        };
        let now = format_time(&Utc::now());
        session::check(
            row.ended_at.as_deref(),
            &row.expires_at,
            row.key_rotated_at.as_deref(),
            &key,
            &now,
        )
        .map_err(|r| PageError::SignIn(refused_code(r)))?;
        // A key with one project needs no pick; with several, the first until one is picked.
        let requested_project = row
            .project
            .clone()
            .or_else(|| match key.projects.as_slice() {
                [first, _, ..] if first != "*" => Some(first.clone()),
                _ => None,
            });
        let csrf = state.sessions.csrf_token(&id_hash);
        Ok(Viewer {
            principal: Principal {
                key,
                source_ip: source_ip(state, parts),
                correlation_id: header_text(parts, "x-request-id").map(str::to_owned),
                requested_project,
                audit: state.auth.audit().clone(),
            },
            id_hash,
            csrf,
        })
    }

    /// The project a page shows, if the key may do `permission` there.
    pub fn project(&self, permission: Permission, operation: &str) -> Result<String, PageError> {
        Ok(self.principal.authorize(permission, operation)?)
    }

    pub fn may(&self, p: Permission) -> bool {
        self.principal.may(p)
    }

    /// Refuses a form without this session's CSRF token.
    pub fn check_csrf(&self, state: &AppState, token: &str) -> Result<(), PageError> {
        if state.sessions.csrf_ok(&self.id_hash, token) {
            Ok(())
        } else {
            Err(PageError::forbidden(
                "The form's security token is missing or stale. Reload the page and try again.",
            ))
        }
    }

    /// The header bar for a page under tab `nav`, at `here` (a path of this site).
    pub async fn chrome(&self, state: &AppState, nav: &'static str, here: &str) -> Chrome {
        let key = &self.principal.key;
        let project = self
            .principal
            .authorize(Permission::TracesRead, "dashboard.chrome")
            .or_else(|_| {
                self.principal
                    .authorize(Permission::RulesRead, "dashboard.chrome")
            })
            .unwrap_or_default();
        let projects = if key.projects.iter().any(|p| p == "*") {
            let mut known = crate::store::query::project_ids(&state.store, 200)
                .await
                .unwrap_or_default();
            if !project.is_empty() && !known.contains(&project) {
                known.insert(0, project.clone());
            }
            known
        } else {
            key.projects.clone()
        };
        Chrome {
            key_name: key.name.clone(),
            csrf: self.csrf.clone(),
            projects: if projects.len() > 1 {
                projects
            } else {
                Vec::new()
            },
            project,
            nav,
            may_traces: self.may(Permission::TracesRead),
            may_rules: self.may(Permission::RulesRead),
            may_keys: self.may(Permission::KeysAdmin),
            may_audit: self.may(Permission::AdminAll),
            may_reports: self.may(Permission::ReportsRead),
            here: here.to_owned(),
        }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        Viewer::from_parts(parts, state).await
    }
}

fn unavailable(e: impl std::fmt::Display) -> PageError {
    tracing::warn!(error = %e, "dashboard: session or key could not be checked");
    PageError::Page {
        status: StatusCode::SERVICE_UNAVAILABLE,
        detail: "Your session could not be checked right now; try again in a moment.".into(),
        problems: Vec::new(),
        internal: None,
        retry_after_secs: Some(2),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    message: Option<&'a str>,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    reason: Option<String>,
}

pub async fn login_page(
    State(state): State<AppState>,
    parts: Parts,
    Query(q): Query<LoginQuery>,
) -> Response {
    if Viewer::from_parts(&parts, &state).await.is_ok() {
        return Redirect::to("/").into_response();
    }
    let page = LoginPage {
        message: reason_text(q.reason.as_deref()),
        error: None,
    };
    render(&page).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    key: String,
}

/// Whether the request reached nginx over TLS (the cookie is then `Secure`).
fn tls(state: &AppState, parts: &Parts) -> bool {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    crate::http::via_tls(state, peer, &parts.headers)
}

fn set_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("cookie values are hex")
}

fn login_refused(status: StatusCode, error: &str) -> Response {
    let page = LoginPage {
        message: None,
        error: Some(error),
    };
    match render(&page) {
        Ok(mut r) => {
            *r.status_mut() = status;
            r
        }
        Err(e) => e.into_response(),
    }
}

pub async fn login(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<LoginForm>,
) -> Response {
    let token = form.key.trim();
    let Some(token) =
        presented_token(Some(&format!("Bearer {token}"))).filter(|_| !token.is_empty())
    else {
        return login_refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "key: paste an API key (sk-at-…).",
        );
    };
    let key = match state.auth.verify(&token).await {
        Ok(k) => k,
        Err(AuthError::Unavailable) => return unavailable(AuthError::Unavailable).into_response(),
        Err(e) => {
            crate::http::principal::auth_failure(&state, &parts, e);
            return login_refused(StatusCode::UNAUTHORIZED, "That key was not accepted.");
        }
    };
    let principal = Principal {
        key,
        source_ip: source_ip(&state, &parts),
        correlation_id: header_text(&parts, "x-request-id").map(str::to_owned),
        requested_project: None,
        audit: state.auth.audit().clone(),
    };
    let readable = [
        Permission::TracesRead,
        Permission::RulesRead,
        Permission::KeysAdmin,
        Permission::ReportsRead,
    ];
    if !readable.iter().any(|p| principal.may(*p)) {
        let mut e = principal.entry("authentication", "dashboard.login", "denied");
        e.metadata = serde_json::json!({ "reason": "key has no permission the dashboard shows" });
        principal.record(e);
        return login_refused(
            StatusCode::FORBIDDEN,
            "This key cannot read traces, rules, keys or reports, so the dashboard has nothing to show it.",
        );
    }
    let opened = match state.sessions.open() {
        Ok(s) => s,
        Err(e) => return PageError::internal(e).into_response(),
    };
    let now = Utc::now();
    let mut expires = now + SESSION_TTL;
    // A session never outlives its key.
    if let Some(key_expiry) = principal
        .key
        .expires_at
        .as_deref()
        .and_then(|t| crate::event::parse_time(t).ok())
    {
        expires = expires.min(key_expiry);
    }
    let row = SessionRow {
        key_id: principal.key.id.clone(),
        key_rotated_at: principal.key.rotated_at.clone(),
        project: None,
        created_at: format_time(&now),
        expires_at: format_time(&expires),
        ended_at: None,
    };
    if let Err(e) = sessions::open(&state.store, &opened.id_hash, &row).await {
        return unavailable(e).into_response();
    }
    // Expired sessions go when new ones come; no timer needed.
    let _ = sessions::sweep(&state.store, &format_time(&now)).await;
    principal.record(principal.entry("authentication", "dashboard.login", "success"));
    let max_age = (expires - now).num_seconds().max(0) as u64;
    let mut resp = Redirect::to("/").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&opened.cookie, max_age, tls(&state, &parts)),
    );
    resp
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    parts: Parts,
    viewer: Viewer,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&state, &form.csrf)?;
    sessions::end(&state.store, &viewer.id_hash, &format_time(&Utc::now()))
        .await
        .map_err(unavailable)?;
    viewer.principal.record(viewer.principal.entry(
        "authentication",
        "dashboard.logout",
        "success",
    ));
    let mut resp = Redirect::to("/login?reason=signed_out").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0, tls(&state, &parts)));
    Ok(resp)
}

#[derive(Deserialize)]
pub struct ProjectForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    next: String,
}

/// Only paths of this site (`/…`, never `//host`) are followed after a form.
pub fn local_path(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

pub async fn pick_project(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<ProjectForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&state, &form.csrf)?;
    let project = form.project.trim();
    if !valid_project_id(project) {
        return Err(PageError::bad_request(
            "project: 1-64 letters, digits, `-`, `_` or `.`",
        ));
    }
    if !viewer.principal.in_scope(project) {
        return Err(PageError::not_found("No such project."));
    }
    sessions::set_project(&state.store, &viewer.id_hash, project)
        .await
        .map_err(unavailable)?;
    Ok(Redirect::to(local_path(&form.next)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; audittrail_session=abc.def".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h), Some("abc.def"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "x=audittrail_session=evil".parse().unwrap());
        assert_eq!(cookie_value(&h), None);
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path("/traces?agent=a"), "/traces?agent=a");
        assert_eq!(local_path("//evil.example/"), "/");
        assert_eq!(local_path("https://evil.example/"), "/");
        assert_eq!(local_path("/\\evil.example"), "/");
    }

    #[test]
    fn reasons_are_fixed_sentences() {
        assert_eq!(reason_text(Some("<script>")), None);
        assert!(reason_text(Some("revoked")).is_some());
    }
}
