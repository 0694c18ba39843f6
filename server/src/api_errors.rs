//! The HTTP status of a server function's error. Leptos answers every error a server function
//! returns with 500; this layer reads the error's JSON (`{"error": kind, "message": …}`) and answers
//! with the status its kind means ([`AppError::status`]), so the status follows from the error itself,
//! never from a call site remembering to set it.

use app::error::AppError;
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// An error's JSON is a kind and a sentence or two; anything longer is not one of ours.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub async fn error_status(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    if !api || response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_ERROR_BODY).await else {
        tracing::error!("a server function's error could not be read");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(AppError::internal()),
        )
            .into_response();
    };
    if let Ok(error) = serde_json::from_slice::<AppError>(&bytes) {
        parts.status = StatusCode::from_u16(error.status()).unwrap_or(parts.status);
        parts.headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = error.retry_after {
            parts
                .headers
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}
