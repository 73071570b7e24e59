//! Key routes: `POST /api/v1/keys/bootstrap` (public, once), and for `keys:admin`:
//! `GET|POST /api/v1/keys`, `POST /api/v1/keys/{id}/rotate`, `DELETE /api/v1/keys/{id}`.

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::auth::audit::AuditEntry;
use crate::auth::keys::{self, IssuedKey, KeyError, KeySpec};
use crate::auth::permission::Permission;
use crate::auth::policy::{self, Denial};
use crate::http::AppState;
use crate::http::body::{parse_json, read_limited};
use crate::http::error::ApiError;
use crate::store::keys as store_keys;

/// Key-management bodies are small.
const MAX_BODY: usize = 16 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/keys/bootstrap", post(bootstrap))
        .route("/api/v1/keys", get(list).post(create))
        .route("/api/v1/keys/{id}/rotate", post(rotate))
        .route("/api/v1/keys/{id}", delete(revoke))
}

fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::AlreadyBootstrapped => ApiError::new(
            StatusCode::CONFLICT,
            "already_bootstrapped",
            "an owner key already exists; bootstrap works once",
        ),
        KeyError::NotFound => ApiError::not_found("no such key"),
        KeyError::LastAdmin => ApiError::new(
            StatusCode::CONFLICT,
            "last_admin_key",
            "this is the last active admin:all key; create another admin:all key before revoking it",
        ),
        KeyError::Invalid(msg) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", msg)
        }
        other => ApiError::internal(other),
    }
}

async fn bootstrap(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let source_ip = state
        .auth
        .client_ip(
            peer,
            req.headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok()),
        )
        .map(|i| i.to_string());
    let body = read_limited(req.into_body(), MAX_BODY).await?;
    let name = if body.is_empty() {
        "owner-key".to_owned()
    } else {
        match parse_json(&body)?.get("name") {
            None | Some(Value::Null) => "owner-key".to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "name: must be a string",
                ));
            }
        }
    };
    let name = state.pipeline.redaction.lookup_text("name", &name);
    let result = store_keys::bootstrap(&state.store, &name).await;
    let mut e = AuditEntry::new(
        "key_management",
        "keys.bootstrap",
        if result.is_ok() { "success" } else { "failure" },
    );
    e.source_ip = source_ip;
    if let Ok(issued) = &result {
        e.principal = Some(issued.record.id.clone());
        e.resource = Some(issued.record.id.clone());
    }
    state.auth.audit().record(e);
    let issued = result.map_err(key_error)?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let visible = visible_keys(&state, &principal).await?;
    Ok(Json(json!({ "keys": visible })))
}

/// The keys `principal` may administer (within its own projects and permissions).
pub async fn visible_keys(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<crate::auth::keys::KeyRecord>, ApiError> {
    principal.authorize(Permission::KeysAdmin, "keys.list")?;
    let all = store_keys::list(&state.store)
        .await
        .map_err(ApiError::internal)?;
    Ok(all
        .into_iter()
        .filter(|k| policy::may_administer(&principal.key, k).is_ok())
        .collect())
}

fn spec_from(body: &Value) -> Result<KeySpec, ApiError> {
    let invalid = |m: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            m.to_owned(),
        )
    };
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("name: is required"))?;
    let strings = |field: &str| -> Result<Vec<String>, ApiError> {
        body.get(field)
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(&format!("{field}: must be a list of strings")))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(&format!("{field}: must be a list of strings")))
            })
            .collect()
    };
    let projects = strings("projects")?;
    let mut permissions = Vec::new();
    for (i, p) in strings("permissions")?.iter().enumerate() {
        permissions.push(
            Permission::parse(p)
                .ok_or_else(|| invalid(&format!("permissions[{i}]: unknown permission")))?,
        );
    }
    let expires_at = match body.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(chrono::Utc::now() + keys::parse_expires_in(s).map_err(key_error)?)
        }
        Some(_) => return Err(invalid("expires_in: must be a string such as \"90d\"")),
    };
    Ok(KeySpec {
        name: name.to_owned(),
        projects,
        permissions,
        expires_at,
    })
}

/// The API answer to a refused key operation: 404 outside the caller's projects (tenancy),
/// otherwise 403 naming what is missing, audited as `denied`.
fn refuse(
    principal: &Principal,
    operation: &str,
    target: Option<&str>,
    denial: Denial,
) -> ApiError {
    if denial == Denial::OutOfScope {
        return match target {
            Some(_) => ApiError::not_found("no such key"),
            None => ApiError::not_found("no such project"),
        };
    }
    let mut e = principal.entry("authorization", operation, "denied");
    e.resource = target.map(str::to_owned);
    e.metadata = json!({ "reason": denial.to_string() });
    principal.record(e);
    metrics::counter!("audittrail_authz_denials_total").increment(1);
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", denial.to_string())
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> Result<Response, ApiError> {
    principal.authorize(Permission::KeysAdmin, "keys.create")?;
    let body = parse_json(&read_limited(req.into_body(), MAX_BODY).await?)?;
    let issued = create_key(&state, &principal, &body).await?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

/// Creates a key from a request body (`name`, `projects`, `permissions`, `expires_in`), within
/// what `principal` itself holds; audited.
pub async fn create_key(
    state: &AppState,
    principal: &Principal,
    body: &Value,
) -> Result<IssuedKey, ApiError> {
    principal.authorize(Permission::KeysAdmin, "keys.create")?;
    let mut spec = spec_from(body)?;
    // A key's name is stored, listed and audited: personal data in it is redacted like any.
    spec.name = state.pipeline.redaction.lookup_text("name", &spec.name);
    // Nobody hands out more than they have: projects, permissions or lifetime.
    let expires_at = spec.expires_at.as_ref().map(crate::event::format_time);
    policy::may_create(
        &principal.key,
        &spec.projects,
        &spec.permissions,
        expires_at.as_deref(),
    )
    .map_err(|d| refuse(principal, "keys.create", None, d))?;
    let issued = store_keys::create(&state.store, &spec)
        .await
        .map_err(key_error)?;
    let mut e = principal.entry("key_management", "keys.create", "success");
    e.resource = Some(issued.record.id.clone());
    e.metadata = json!({ "name": issued.record.name, "projects": issued.record.projects, "permissions": issued.record.permissions });
    principal.record(e);
    Ok(issued)
}

/// A key the caller may administer; outside its projects it is 404 like a missing one.
async fn administered_key(
    state: &AppState,
    principal: &Principal,
    id: &str,
    operation: &str,
) -> Result<(), ApiError> {
    let found = store_keys::find(&state.store, id)
        .await
        .map_err(ApiError::internal)?;
    let Some((target, _)) = found else {
        return Err(ApiError::not_found("no such key"));
    };
    policy::may_administer(&principal.key, &target)
        .map_err(|d| refuse(principal, operation, Some(id), d))
}

async fn rotate(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(rotate_key(&state, &principal, &id).await?).into_response())
}

/// Gives key `id` a new secret (the old one stops working at once); audited.
pub async fn rotate_key(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<IssuedKey, ApiError> {
    principal.authorize(Permission::KeysAdmin, "keys.rotate")?;
    administered_key(state, principal, id, "keys.rotate").await?;
    let issued = store_keys::rotate(&state.store, id)
        .await
        .map_err(key_error)?;
    state.auth.evict(id);
    let mut e = principal.entry("key_management", "keys.rotate", "success");
    e.resource = Some(id.to_owned());
    principal.record(e);
    Ok(issued)
}

async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(revoke_key(&state, &principal, &id).await?).into_response())
}

/// Revokes key `id` (never the last admin key); audited.
pub async fn revoke_key(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<crate::auth::keys::KeyRecord, ApiError> {
    principal.authorize(Permission::KeysAdmin, "keys.revoke")?;
    administered_key(state, principal, id, "keys.revoke").await?;
    let rec = store_keys::revoke(&state.store, id)
        .await
        .map_err(key_error)?;
    state.auth.evict(id);
    let mut e = principal.entry("key_management", "keys.revoke", "success");
    e.resource = Some(id.to_owned());
    principal.record(e);
    Ok(rec)
}
