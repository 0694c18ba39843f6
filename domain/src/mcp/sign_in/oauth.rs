//! Talking to a tool server's authorization server: an HTTP client that follows the server's
//! network policy, finding where to sign in (discovery), and revoking tokens.

use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::auth::{
    AuthorizationManager, AuthorizationMetadata, OAuthHttpClient, OAuthHttpClientFuture,
    OAuthHttpRedirectPolicy, OAuthHttpRequest,
};

use super::store::Stored;
use super::{http_url, words};
use crate::mcp::{AddressPolicy, ServerSpec, Source, limits, remote};
use crate::{Error, Result};

/// The most an authorization server's answer may hold.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// How long one request to an authorization server may take.
const REQUEST_WITHIN: Duration = Duration::from_secs(15);

/// An authorization manager for a server whose resource (RFC 8707) is `resource`, its requests
/// following the server's network policy.
pub(super) async fn manager(
    resource: &str,
    spec: &ServerSpec,
    addresses: &AddressPolicy,
) -> Result<AuthorizationManager> {
    let http: Arc<dyn OAuthHttpClient> = Arc::new(OAuthHttp::for_server(spec, addresses));
    AuthorizationManager::new_with_oauth_http_client(resource, http)
        .await
        .map_err(|e| {
            Error::Invalid(format!(
                "Cannot sign in to '{}': its address {resource} is not usable ({}).",
                spec.name,
                words(&e)
            ))
        })
}

/// Where to sign in to the server: its authorization server's metadata, found from its 401's
/// challenge (or the well-known places), or why it cannot be.
pub(super) async fn discover(
    manager: &AuthorizationManager,
    spec: &ServerSpec,
    challenge: Option<&str>,
) -> Result<AuthorizationMetadata> {
    let found = manager
        .resolve_metadata_from_challenge(challenge)
        .await
        .map_err(|e| {
            Error::Unavailable(format!(
                "{} asks you to sign in, but where cannot be found: {}. Try again later, or tell the server's administrator.",
                spec.name,
                words(&e)
            ))
        })?;
    if !found.source.is_discovered() {
        return Err(Error::Unavailable(format!(
            "{} asks for credentials but does not say where to sign in (it publishes no OAuth metadata): set a token or headers for it instead.",
            spec.name
        )));
    }
    Ok(found.metadata)
}

/// Whether a server's 401 at connect leads to a sign-in service (then the person is asked to
/// sign in); else why it cannot be signed in to.
pub(crate) async fn asks_for_sign_in(
    spec: &ServerSpec,
    addresses: &AddressPolicy,
    challenge: &str,
) -> std::result::Result<(), String> {
    let url = http_url(spec).map_err(|e| e.to_string())?;
    let manager = manager(url, spec, addresses)
        .await
        .map_err(|e| e.to_string())?;
    discover(&manager, spec, Some(challenge))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Tells the authorization server to revoke the refresh token (and so the grant) where its
/// metadata names a revocation endpoint (RFC 7009); a failure is only logged: the tokens are
/// forgotten here either way.
pub(super) async fn revoke(spec: &ServerSpec, addresses: &AddressPolicy, stored: &Stored) {
    use oauth2::TokenResponse;
    let Some(endpoint) = stored
        .grant
        .metadata
        .additional_fields
        .get("revocation_endpoint")
        .and_then(|v| v.as_str())
    else {
        return;
    };
    let Some(tokens) = &stored.credentials.token_response else {
        return;
    };
    let (token, hint) = match tokens.refresh_token() {
        Some(refresh) => (refresh.secret().clone(), "refresh_token"),
        None => (tokens.access_token().secret().clone(), "access_token"),
    };
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", &token)
            .append_pair("token_type_hint", hint)
            .append_pair("client_id", &stored.grant.client.id);
        if let Some(secret) = &stored.grant.client.secret {
            form.append_pair("client_secret", secret);
        }
        form.finish()
    };
    let Ok(request) = http::Request::builder()
        .method("POST")
        .uri(endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.into_bytes())
    else {
        return;
    };
    let http = OAuthHttp::for_server(spec, addresses);
    match http.send(request, false).await {
        Ok(answer) if answer.status().is_success() => {}
        Ok(answer) => tracing::warn!(
            server = %spec.id,
            "the sign-in service did not revoke a token: HTTP {}",
            answer.status()
        ),
        Err(e) => {
            tracing::warn!(server = %spec.id, "cannot reach the sign-in service to revoke a token: {e}")
        }
    }
}

/// The HTTP client of the OAuth requests for one server: a registry server's go where its
/// metadata says (administrators chose the server), a personal server's only to addresses the
/// policy allows, each pinned to the addresses checked. Answers are cut at [`MAX_ANSWER_BYTES`].
struct OAuthHttp {
    policy: Option<AddressPolicy>,
}

impl OAuthHttp {
    fn for_server(spec: &ServerSpec, addresses: &AddressPolicy) -> Self {
        Self {
            policy: (spec.source == Source::Personal).then(|| addresses.clone()),
        }
    }

    async fn send(
        &self,
        request: http::Request<Vec<u8>>,
        follow: bool,
    ) -> std::result::Result<http::Response<Vec<u8>>, String> {
        let url = request.uri().to_string();
        let client = remote::oauth_client(self.policy.as_ref(), &url, follow).await?;
        let (parts, body) = request.into_parts();
        let mut builder = client
            .request(parts.method, &url)
            .headers(parts.headers)
            .timeout(REQUEST_WITHIN);
        if !body.is_empty() {
            builder = builder.body(body);
        }
        let mut answer = builder.send().await.map_err(|e| crate::error::chain(&e))?;
        let mut response = http::Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            response = response.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = answer.chunk().await.map_err(|e| crate::error::chain(&e))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(format!(
                    "the answer of {url} is larger than {}",
                    limits::size(MAX_ANSWER_BYTES)
                ));
            }
            body.extend_from_slice(&chunk);
        }
        response.body(body).map_err(|e| e.to_string())
    }
}

impl OAuthHttpClient for OAuthHttp {
    fn execute(&self, request: OAuthHttpRequest) -> OAuthHttpClientFuture<'_> {
        let follow = request.redirect_policy == OAuthHttpRedirectPolicy::Follow;
        let request = request.request;
        Box::pin(async move { self.send(request, follow).await.map_err(Into::into) })
    }
}
