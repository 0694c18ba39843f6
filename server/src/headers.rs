//! Security headers on every response: a Content-Security-Policy whose scripts need this
//! response's nonce (Leptos puts it on the hydration and resource scripts it writes), no framing,
//! no MIME sniffing, no referrer to other sites, and HSTS when Switchboard is served over https.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderName, HeaderValue, header};

use crate::AppState;

/// The nonce of the page being rendered, from the request's extensions to Leptos's context.
#[derive(Clone, Debug)]
pub struct CspNonce(Arc<str>);

/// Gives the page being rendered this request's nonce; called in the Leptos context of every
/// render (pages and the not-found fallback), so that its scripts carry the nonce the header names.
pub fn provide_nonce() {
    use leptos::prelude::{provide_context, use_context};
    let nonce = use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<CspNonce>().cloned());
    if let Some(CspNonce(nonce)) = nonce {
        provide_context(leptos::nonce::Nonce::from_value(nonce));
    }
}

/// The policy for a response whose scripts carry `nonce`. Scripts: only Switchboard's own files
/// and inline ones with the nonce, plus compiling its WebAssembly. Everything else from
/// Switchboard itself, but for avatars (an identity provider's images) and `data:` images. No
/// `form-action`: sign-out is a form whose answer redirects to the identity provider, wherever
/// its end-session endpoint is.
fn policy(nonce: &str, dev_reload: Option<u16>) -> String {
    let reload = dev_reload
        .map(|port| format!(" ws://localhost:{port} ws://127.0.0.1:{port}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data: https:; media-src 'self' data:; font-src 'self'; \
         connect-src 'self'{reload}; object-src 'none'; base-uri 'none'; \
         frame-ancestors 'none'"
    )
}

/// What every response carries, decided once.
#[derive(Clone, Debug)]
pub struct SecurityHeaders {
    /// Over https: browsers keep to https for a year.
    hsts: bool,
    /// The live-reload port `cargo leptos watch` opens a websocket on (development only).
    dev_reload: Option<u16>,
}

impl SecurityHeaders {
    pub fn new(https: bool, dev_reload: Option<u16>) -> Self {
        Self {
            hsts: https,
            dev_reload,
        }
    }
}

/// Makes a nonce for the request and puts the headers on its response.
pub async fn security_headers(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let nonce = leptos::nonce::Nonce::new();
    request
        .extensions_mut()
        .insert(CspNonce(nonce.as_inner().clone()));
    let mut response = next.run(request).await;
    let settings = &state.security_headers;
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&policy(&nonce, settings.dev_reload)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    let fixed: [(HeaderName, &'static str); 4] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if settings.hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_only_switchboards_own_and_nonced_scripts() {
        let csp = policy("abc123", None);
        assert!(csp.contains("script-src 'self' 'nonce-abc123' 'wasm-unsafe-eval';"));
        assert!(!csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(csp.contains("object-src 'none'") && csp.contains("base-uri 'none'"));
        assert!(!csp.contains("ws://"));
        assert!(policy("n", Some(3001)).contains("connect-src 'self' ws://localhost:3001"));
    }
}
