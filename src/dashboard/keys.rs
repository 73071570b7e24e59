//! Keys (for `keys:admin`): list the keys this key may administer, create one (its secret is
//! shown once, in the answer to the form, never again), rotate, revoke — with the API's
//! limits, since the same functions do the work.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::error::{PageError, render};
use super::fmt;
use super::viewer::{Chrome, Viewer};
use crate::auth::keys::{IssuedKey, KeyRecord};
use crate::auth::permission::Permission;
use crate::http::AppState;

pub struct KeyLine {
    pub id: String,
    pub name: String,
    pub projects: String,
    pub permissions: String,
    pub created: String,
    pub expires: String,
    pub state: &'static str,
    pub active: bool,
    pub is_self: bool,
    pub rotate_url: String,
    pub revoke_url: String,
}

impl KeyLine {
    fn from(k: &KeyRecord, me: &str) -> KeyLine {
        let state = if k.revoked_at.is_some() {
            "revoked"
        } else if k
            .expires_at
            .as_deref()
            .is_some_and(|e| e <= crate::event::format_time(&chrono::Utc::now()).as_str())
        {
            "expired"
        } else {
            "active"
        };
        KeyLine {
            id: k.id.clone(),
            name: k.name.clone(),
            projects: k.projects.join(", "),
            permissions: k
                .permissions
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            created: fmt::time(&k.created_at),
            expires: k.expires_at.as_deref().map(fmt::time).unwrap_or_default(),
            state,
            active: state == "active",
            is_self: k.id == me,
            rotate_url: format!("/keys/{}/rotate", fmt::url(&k.id)),
            revoke_url: format!("/keys/{}/revoke", fmt::url(&k.id)),
        }
    }
}

/// A secret just issued: shown on this one page and nowhere else.
pub struct Issued {
    pub id: String,
    pub name: String,
    pub key: String,
    pub rotated: bool,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    chrome: Chrome,
    keys: Vec<KeyLine>,
    issued: Option<Issued>,
    error: String,
    permissions: Vec<&'static str>,
    default_projects: String,
}

async fn page(
    state: &AppState,
    viewer: &Viewer,
    issued: Option<Issued>,
    error: String,
) -> Result<Response, PageError> {
    let keys = crate::api::keys::visible_keys(state, &viewer.principal).await?;
    let me = viewer.principal.key.id.clone();
    let page = KeysPage {
        chrome: viewer.chrome(state, "keys", "/keys").await,
        keys: keys.iter().map(|k| KeyLine::from(k, &me)).collect(),
        issued,
        error,
        // Only what this key holds can be handed out.
        permissions: Permission::ALL
            .iter()
            .filter(|p| viewer.may(**p))
            .map(|p| p.as_str())
            .collect(),
        default_projects: viewer.principal.key.projects.join(", "),
    };
    render(&page)
}

pub async fn list(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PageError> {
    viewer.project(Permission::KeysAdmin, "dashboard.keys")?;
    page(&state, &viewer, None, String::new()).await
}

fn issued(i: IssuedKey, rotated: bool) -> Issued {
    Issued {
        id: i.record.id,
        name: i.record.name,
        key: i.key,
        rotated,
    }
}

/// The answer to a key form: the page with the error in it, with the error's status.
async fn refused(
    state: &AppState,
    viewer: &Viewer,
    e: crate::http::error::ApiError,
) -> Result<Response, PageError> {
    if e.status.is_server_error() {
        return Err(e.into());
    }
    let status = e.status;
    let mut text = e.detail.clone();
    for f in &e.errors {
        if f.to_string() != text {
            text.push_str("; ");
            text.push_str(&f.to_string());
        }
    }
    let mut resp = page(state, viewer, None, text).await?;
    *resp.status_mut() = status;
    Ok(resp)
}

pub async fn create(
    State(state): State<AppState>,
    viewer: Viewer,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    let mut csrf = String::new();
    let mut name = String::new();
    let mut projects = String::new();
    let mut expires_in = String::new();
    let mut permissions = Vec::new();
    for (k, v) in super::rules::form_pairs(&body) {
        match k.as_str() {
            "csrf" => csrf = v,
            "name" => name = v,
            "projects" => projects = v,
            "expires_in" => expires_in = v,
            "permissions" if permissions.len() < 32 => permissions.push(v),
            _ => {}
        }
    }
    viewer.check_csrf(&state, &csrf)?;
    let projects: Vec<String> = projects
        .split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let mut request = json!({
        "name": name.trim(),
        "projects": projects,
        "permissions": permissions,
    });
    if !expires_in.trim().is_empty() {
        request["expires_in"] = json!(expires_in.trim());
    }
    match crate::api::keys::create_key(&state, &viewer.principal, &request).await {
        Ok(i) => {
            let mut resp = page(&state, &viewer, Some(issued(i, false)), String::new()).await?;
            *resp.status_mut() = StatusCode::CREATED;
            Ok(resp)
        }
        Err(e) => refused(&state, &viewer, e).await,
    }
}

#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn rotate(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    axum::extract::Form(form): axum::extract::Form<CsrfForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&state, &form.csrf)?;
    match crate::api::keys::rotate_key(&state, &viewer.principal, &id).await {
        // Rotating your own key ends this session (its next click signs in again).
        Ok(i) => page(&state, &viewer, Some(issued(i, true)), String::new()).await,
        Err(e) => refused(&state, &viewer, e).await,
    }
}

pub async fn revoke(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    axum::extract::Form(form): axum::extract::Form<CsrfForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&state, &form.csrf)?;
    match crate::api::keys::revoke_key(&state, &viewer.principal, &id).await {
        Ok(_) => Ok(Redirect::to("/keys").into_response()),
        Err(e) => refused(&state, &viewer, e).await,
    }
}
