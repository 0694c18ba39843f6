//! `GET /admin/usage.csv?from=&to=` (administrators): everyone's usage by day, person and model
//! as a CSV file to download (see `domain::usage::csv`); the span as the Usage page takes it (by
//! default the last 30 days).

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::users::User;
use serde::Deserialize;

use crate::AppState;

#[derive(Deserialize)]
pub struct Span {
    from: Option<String>,
    to: Option<String>,
}

pub async fn csv(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Query(span): Query<Span>,
) -> Response {
    let rows = async {
        let (from, to) = app::usage::ssr::span(span.from.as_deref(), span.to.as_deref())?;
        let rows = domain::usage::rows(&state.db, &user, from, to).await?;
        Ok::<_, app::error::AppError>((from, to, rows))
    }
    .await;
    match rows {
        Ok((from, to, rows)) => {
            let name = format!("attachment; filename=\"switchboard-usage-{from}-{to}.csv\"");
            let mut response = domain::usage::csv(&rows).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(value) = HeaderValue::from_str(&name) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            crate::error_page(status, "No usage to download", &e.message)
        }
    }
}
