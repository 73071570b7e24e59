//! Errors as HTML pages. A page that needs a session and has none (or one no longer valid)
//! sends the browser to `/login` with the reason; everything else is a small page with the
//! status, a title and a detail that names what is wrong, never the value sent.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::auth::Denied;
use crate::http::error::{ApiError, InternalCause};

#[derive(Debug)]
pub enum PageError {
    /// No valid session: 303 to `/login?reason=…` (a fixed code, shown as a fixed sentence).
    SignIn(&'static str),
    Page {
        status: StatusCode,
        detail: String,
        /// Field-level problems (names and messages, never values).
        problems: Vec<String>,
        /// Operator-facing cause of a 5xx; logged, never shown.
        internal: Option<String>,
        retry_after_secs: Option<u64>,
    },
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    detail: &'a str,
    problems: &'a [String],
}

impl PageError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        PageError::Page {
            status,
            detail: detail.into(),
            problems: Vec::new(),
            internal: None,
            retry_after_secs: None,
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        PageError::Page {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            detail: "Something went wrong on the server; its log has the details.".into(),
            problems: Vec::new(),
            internal: Some(cause.to_string()),
            retry_after_secs: None,
        }
    }

    /// The page's status (303 for a sign-in redirect).
    pub fn status(&self) -> StatusCode {
        match self {
            PageError::SignIn(_) => StatusCode::SEE_OTHER,
            PageError::Page { status, .. } => *status,
        }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::Page {
            status: e.status,
            detail: e.detail,
            problems: e.errors.iter().map(|f| f.to_string()).collect(),
            internal: e.internal,
            retry_after_secs: e.retry_after_secs,
        }
    }
}

impl From<Denied> for PageError {
    fn from(d: Denied) -> Self {
        ApiError::from(d).into()
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        PageError::internal(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn(reason) => {
                Redirect::to(&format!("/login?reason={reason}")).into_response()
            }
            PageError::Page {
                status,
                detail,
                problems,
                internal,
                retry_after_secs,
            } => {
                let page = ErrorPage {
                    status: status.as_u16(),
                    title: status.canonical_reason().unwrap_or("Error"),
                    detail: &detail,
                    problems: &problems,
                };
                let html = page.render().unwrap_or_else(|_| "error".into());
                let mut resp = (status, Html(html)).into_response();
                resp.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                if let Some(secs) = retry_after_secs {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                if let Some(cause) = internal {
                    resp.extensions_mut().insert(InternalCause(cause));
                }
                resp
            }
        }
    }
}

/// Renders a page template, or the error page if rendering fails.
pub fn render(t: &impl Template) -> Result<Response, PageError> {
    let html = t.render().map_err(PageError::internal)?;
    let mut resp = Html(html).into_response();
    // Pages hold tenant data: never kept by a shared cache or the browser's history cache.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
