//! The identity providers: where a sign-in starts (the authorize URL) and how it ends (code
//! exchange, ID-token verification, profile). OpenID Connect through `openidconnect`, GitHub through
//! `oauth2` and its REST API. Both use the authorization-code flow with PKCE (S256) and `state`;
//! OpenID Connect adds a `nonce`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::error::chain;
use domain::users::Identity;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndSessionUrl, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken,
    IdTokenFields, IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl,
    RequestTokenError, Scope, StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use url::Url;

use super::settings::{AuthSettings, ProviderKind, ProviderSettings};

/// Claims beyond the standard ones (group or role claims, whatever their name).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    pub extra: HashMap<String, serde_json::Value>,
}
impl AdditionalClaims for ExtraClaims {}

type TokenFields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type OidcTokenResponse = StandardTokenResponse<TokenFields, CoreTokenType>;
type OidcIdToken = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type OidcClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    OidcTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;
type GitHubClient = oauth2::basic::BasicClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// What a GitHub organisation's name is prefixed with as a group (`github:acme`).
pub const GITHUB_ORG_PREFIX: &str = "github:";

/// Discovery documents and signing keys are fetched again after this long, so that key rotation
/// at the provider is picked up.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Timeout for each request to a provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a sign-in failed. `code()` goes into the login page's URL, which explains it to the person;
/// `Display` is the detail for the log.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("no such provider")]
    UnknownProvider,
    #[error("the sign-in request is unknown, expired or was tampered with (state)")]
    State,
    #[error("the person declined at the provider: {0}")]
    Denied(String),
    #[error("the provider answered with an error: {0}")]
    ProviderError(String),
    #[error("cannot reach the provider: {0}")]
    Unreachable(String),
    #[error("the provider refused the code: {0}")]
    Exchange(String),
    #[error("the ID token failed verification: {0}")]
    IdToken(String),
    #[error("the provider gave no verified e-mail address")]
    NoVerifiedEmail,
    #[error("the person is not on the provider's allow-list")]
    NotAllowed,
    #[error("the person waits for an administrator's approval")]
    AwaitingApproval,
    #[error("the person's account is deactivated")]
    Deactivated,
}

impl SignInError {
    /// The short code the login page turns into a message.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownProvider => "unknown_provider",
            Self::State => "state",
            Self::Denied(_) => "denied",
            Self::ProviderError(_) => "provider_error",
            Self::Unreachable(_) => "unreachable",
            Self::Exchange(_) => "exchange",
            Self::IdToken(_) => "id_token",
            Self::NoVerifiedEmail => "no_verified_email",
            Self::NotAllowed => "not_allowed",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Deactivated => "deactivated",
        }
    }
}

/// A sign-in under way, kept in the person's session between the redirect and the callback.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingSignIn {
    pub provider: String,
    pub state: String,
    pub nonce: Option<String>,
    pub pkce_verifier: String,
    /// Where to go after signing in (a path on this site).
    pub next: String,
    /// Unix seconds.
    pub started_at: i64,
}

/// The result of a successful sign-in.
pub struct SignedIn {
    pub identity: Identity,
    /// Kept for RP-initiated logout (`id_token_hint`).
    pub id_token: Option<String>,
}

struct Discovered {
    client: OidcClient,
    end_session: Option<EndSessionUrl>,
    fetched: Instant,
}

/// The configured providers, with OpenID discovery done on first use and cached.
pub struct Providers {
    settings: Arc<AuthSettings>,
    http: reqwest::Client,
    discovered: Mutex<HashMap<String, Arc<Discovered>>>,
}

impl Providers {
    pub fn new(settings: Arc<AuthSettings>) -> Self {
        let http = reqwest::Client::builder()
            // A provider must not be able to bounce our requests elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .user_agent(concat!("Switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client's settings are valid");
        Self {
            settings,
            http,
            discovered: Mutex::new(HashMap::new()),
        }
    }

    fn provider(&self, id: &str) -> Result<&ProviderSettings, SignInError> {
        self.settings
            .provider(id)
            .ok_or(SignInError::UnknownProvider)
    }

    async fn oidc(
        &self,
        provider: &ProviderSettings,
        issuer: &Url,
    ) -> Result<Arc<Discovered>, SignInError> {
        // The lock is held across the fetch on purpose: a burst of sign-ins discovers once.
        let mut cache = self.discovered.lock().await;
        if let Some(found) = cache.get(&provider.id)
            && found.fetched.elapsed() < DISCOVERY_TTL
        {
            return Ok(found.clone());
        }
        // The issuer must match the discovery document's exactly, and `Url` adds a '/' to a bare
        // host ("https://accounts.google.com" is not "https://accounts.google.com/").
        let issuer_url = IssuerUrl::new(issuer.as_str().trim_end_matches('/').to_owned())
            .map_err(|e| SignInError::ProviderError(e.to_string()))?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer_url, &self.http)
            .await
            .map_err(|e| {
                SignInError::Unreachable(format!("discovery at {issuer}: {}", chain(&e)))
            })?;
        let end_session = metadata.additional_metadata().end_session_endpoint.clone();
        let redirect = RedirectUrl::from_url(self.settings.redirect_url(&provider.id));
        let client = OidcClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.client_id.clone()),
            Some(ClientSecret::new(provider.client_secret.clone())),
        )
        .set_redirect_uri(redirect);
        let discovered = Arc::new(Discovered {
            client,
            end_session,
            fetched: Instant::now(),
        });
        cache.insert(provider.id.clone(), discovered.clone());
        Ok(discovered)
    }

    fn github(
        &self,
        provider: &ProviderSettings,
        web_url: &Url,
    ) -> Result<GitHubClient, SignInError> {
        let endpoint = |path: &str| {
            web_url
                .join(path)
                .map_err(|e| SignInError::ProviderError(e.to_string()))
        };
        Ok(
            oauth2::basic::BasicClient::new(ClientId::new(provider.client_id.clone()))
                .set_client_secret(ClientSecret::new(provider.client_secret.clone()))
                .set_auth_uri(oauth2::AuthUrl::from_url(endpoint(
                    "login/oauth/authorize",
                )?))
                .set_token_uri(oauth2::TokenUrl::from_url(endpoint(
                    "login/oauth/access_token",
                )?))
                .set_redirect_uri(RedirectUrl::from_url(
                    self.settings.redirect_url(&provider.id),
                )),
        )
    }

    /// Starts a sign-in: the provider's authorize URL, and what to keep until the callback.
    pub async fn begin(&self, id: &str, next: String) -> Result<(Url, PendingSignIn), SignInError> {
        let provider = self.provider(id)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let scopes = provider.scopes.iter().map(|s| Scope::new(s.clone()));
        let (url, state, nonce) = match &provider.kind {
            ProviderKind::Oidc { issuer } => {
                let discovered = self.oidc(provider, issuer).await?;
                let (url, state, nonce) = discovered
                    .client
                    .authorize_url(
                        CoreAuthenticationFlow::AuthorizationCode,
                        CsrfToken::new_random,
                        Nonce::new_random,
                    )
                    .add_scopes(scopes)
                    .set_pkce_challenge(challenge)
                    .url();
                (url, state, Some(nonce.secret().clone()))
            }
            ProviderKind::GitHub { web_url, .. } => {
                let (url, state) = self
                    .github(provider, web_url)?
                    .authorize_url(CsrfToken::new_random)
                    .add_scopes(scopes)
                    .set_pkce_challenge(challenge)
                    .url();
                (url, state, None)
            }
        };
        Ok((
            url,
            PendingSignIn {
                provider: provider.id.clone(),
                state: state.secret().clone(),
                nonce,
                pkce_verifier: verifier.secret().clone(),
                next,
                started_at: chrono::Utc::now().timestamp(),
            },
        ))
    }

    /// Finishes a sign-in with the code from the callback: exchanges it, verifies what comes back,
    /// and returns who signed in.
    pub async fn finish(
        &self,
        pending: PendingSignIn,
        code: String,
    ) -> Result<SignedIn, SignInError> {
        let provider = self.provider(&pending.provider)?;
        let verifier = PkceCodeVerifier::new(pending.pkce_verifier);
        match &provider.kind {
            ProviderKind::Oidc { issuer } => {
                let discovered = self.oidc(provider, issuer).await?;
                let client = &discovered.client;
                let tokens = client
                    .exchange_code(AuthorizationCode::new(code))
                    .map_err(|e| SignInError::ProviderError(e.to_string()))?
                    .set_pkce_verifier(verifier)
                    .request_async(&self.http)
                    .await
                    .map_err(token_error)?;
                let id_token = tokens.id_token().ok_or_else(|| {
                    SignInError::IdToken("the token response has no ID token".into())
                })?;
                let nonce = Nonce::new(pending.nonce.unwrap_or_default());
                let claims = id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .map_err(|e| SignInError::IdToken(e.to_string()))?;
                let mut identity = Identity {
                    issuer: claims.issuer().to_string(),
                    subject: claims.subject().to_string(),
                    name: claims
                        .name()
                        .and_then(|n| n.get(None))
                        .map(|n| n.to_string())
                        .or_else(|| claims.preferred_username().map(|u| u.to_string()))
                        .unwrap_or_default(),
                    email: claims.email().map(|e| e.to_string()),
                    email_verified: claims.email_verified().unwrap_or(false),
                    avatar_url: claims
                        .picture()
                        .and_then(|p| p.get(None))
                        .map(|p| p.to_string()),
                    groups: groups(
                        &claims.additional_claims().extra,
                        &self.settings.groups_claim,
                    ),
                };
                // Many providers (panva's oidc-provider at its defaults among them) put the
                // profile in the UserInfo endpoint's answer, not in the ID token.
                if identity.email.is_none() || identity.name.is_empty() {
                    self.user_info(client, tokens.access_token().clone(), &mut identity)
                        .await?;
                }
                if identity.name.is_empty() {
                    identity.name = identity
                        .email
                        .clone()
                        .unwrap_or_else(|| identity.subject.clone());
                }
                Ok(SignedIn {
                    identity,
                    id_token: Some(id_token.to_string()),
                })
            }
            ProviderKind::GitHub { web_url, api_url } => {
                let client = self.github(provider, web_url)?;
                let tokens = client
                    .exchange_code(AuthorizationCode::new(code))
                    .set_pkce_verifier(verifier)
                    .request_async(&self.http)
                    .await
                    .map_err(github_token_error)?;
                let token = oauth2::TokenResponse::access_token(&tokens).secret();
                let mut identity = self.github_identity(web_url, api_url, token).await?;
                if self.wants_groups(provider) {
                    identity.groups = self.github_orgs(api_url, token).await?;
                }
                Ok(SignedIn {
                    identity,
                    id_token: None,
                })
            }
        }
    }

    /// Fills in from the provider's UserInfo endpoint what the ID token did not say: name,
    /// e-mail (and whether it is verified), picture and groups. The endpoint vouches for the same
    /// subject, or its answer is refused.
    async fn user_info(
        &self,
        client: &OidcClient,
        access_token: openidconnect::AccessToken,
        identity: &mut Identity,
    ) -> Result<(), SignInError> {
        let subject = openidconnect::SubjectIdentifier::new(identity.subject.clone());
        let request = match client.user_info(access_token, Some(subject)) {
            Ok(request) => request,
            // The provider has no UserInfo endpoint: the ID token is all there is.
            Err(_) => return Ok(()),
        };
        let info: openidconnect::UserInfoClaims<ExtraClaims, CoreGenderClaim> = request
            .request_async(&self.http)
            .await
            .map_err(|e| SignInError::ProviderError(format!("UserInfo: {}", chain(&e))))?;
        if identity.name.is_empty() {
            identity.name = info
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string())
                .or_else(|| info.preferred_username().map(|u| u.to_string()))
                .unwrap_or_default();
        }
        if identity.email.is_none() {
            identity.email = info.email().map(|e| e.to_string());
            identity.email_verified = info.email_verified().unwrap_or(false);
        }
        if identity.avatar_url.is_none() {
            identity.avatar_url = info
                .picture()
                .and_then(|p| p.get(None))
                .map(|p| p.to_string());
        }
        if identity.groups.is_empty() {
            identity.groups = groups(&info.additional_claims().extra, &self.settings.groups_claim);
        }
        Ok(())
    }

    /// Whether a GitHub sign-in needs the person's organisations (for who may sign in, or who is
    /// an admin).
    fn wants_groups(&self, provider: &ProviderSettings) -> bool {
        !provider.allowed.groups.is_empty()
            || self
                .settings
                .admins
                .groups
                .iter()
                .any(|g| g.starts_with(GITHUB_ORG_PREFIX))
    }

    /// The GitHub organisations the person belongs to, as groups named `github:<org>` (private
    /// memberships need `read:org`). Anyone can make an organisation of any free name, so they
    /// never match an identity provider's group of the same name.
    async fn github_orgs(&self, api_url: &Url, token: &str) -> Result<Vec<String>, SignInError> {
        #[derive(Deserialize)]
        struct Org {
            login: String,
        }
        let orgs: Vec<Org> = self
            .github_get(api_url, token, "user/orgs?per_page=100")
            .await?
            .json()
            .await
            .map_err(|e| SignInError::ProviderError(format!("GitHub's /user/orgs: {e}")))?;
        Ok(orgs
            .into_iter()
            .map(|o| format!("{GITHUB_ORG_PREFIX}{}", o.login))
            .collect())
    }

    async fn github_identity(
        &self,
        web_url: &Url,
        api_url: &Url,
        token: &str,
    ) -> Result<Identity, SignInError> {
        #[derive(Deserialize)]
        struct GitHubUser {
            id: u64,
            login: String,
            name: Option<String>,
            avatar_url: Option<String>,
        }
        #[derive(Deserialize)]
        struct GitHubEmail {
            email: String,
            primary: bool,
            verified: bool,
        }
        let user: GitHubUser = self
            .github_get(api_url, token, "user")
            .await?
            .json()
            .await
            .map_err(|e| SignInError::ProviderError(format!("GitHub's /user: {e}")))?;
        let emails: Vec<GitHubEmail> = self
            .github_get(api_url, token, "user/emails")
            .await?
            .json()
            .await
            .map_err(|e| SignInError::ProviderError(format!("GitHub's /user/emails: {e}")))?;
        let email = emails
            .into_iter()
            .filter(|e| e.verified)
            .max_by_key(|e| e.primary)
            .ok_or(SignInError::NoVerifiedEmail)?;
        Ok(Identity {
            issuer: web_url.as_str().trim_end_matches('/').to_owned(),
            subject: user.id.to_string(),
            name: user
                .name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or(user.login),
            email: Some(email.email),
            email_verified: true,
            avatar_url: user.avatar_url,
            groups: Vec::new(),
        })
    }

    async fn github_get(
        &self,
        api_url: &Url,
        token: &str,
        path: &str,
    ) -> Result<reqwest::Response, SignInError> {
        let url = api_url
            .join(path)
            .map_err(|e| SignInError::ProviderError(e.to_string()))?;
        let response = self
            .http
            .get(url)
            .bearer_auth(token)
            .header("accept", "application/vnd.github+json")
            .send()
            .await
            .map_err(|e| SignInError::Unreachable(chain(&e)))?;
        if !response.status().is_success() {
            return Err(SignInError::ProviderError(format!(
                "GitHub's API answered {} to {path}",
                response.status()
            )));
        }
        Ok(response)
    }

    /// Where to send a person after sign-out so the provider ends its session too, when it
    /// supports RP-initiated logout.
    pub async fn end_session_url(&self, id: &str, id_token: &str) -> Option<Url> {
        let provider = self.provider(id).ok()?;
        let ProviderKind::Oidc { issuer } = &provider.kind else {
            return None;
        };
        let discovered = self.oidc(provider, issuer).await.ok()?;
        let end_session = discovered.end_session.clone()?;
        let hint: OidcIdToken = id_token.parse().ok()?;
        let mut back = self.settings.public_url.clone();
        back.set_path("/auth/signed-out");
        Some(
            LogoutRequest::from(end_session)
                .set_id_token_hint(&hint)
                .set_client_id(ClientId::new(provider.client_id.clone()))
                .set_post_logout_redirect_uri(PostLogoutRedirectUrl::from_url(back))
                .http_get_url(),
        )
    }
}

/// Group names from the claim `path` (dots reach into objects); a string or a list of strings.
fn groups(claims: &HashMap<String, serde_json::Value>, path: &str) -> Vec<String> {
    let mut parts = path.split('.');
    let Some(mut value) = parts.next().and_then(|first| claims.get(first)) else {
        return Vec::new();
    };
    for part in parts {
        match value.get(part) {
            Some(v) => value = v,
            None => return Vec::new(),
        }
    }
    match value {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn token_error<RE: std::error::Error + 'static>(
    error: RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> SignInError {
    match error {
        RequestTokenError::ServerResponse(e) => SignInError::Exchange(e.to_string()),
        RequestTokenError::Request(e) => SignInError::Unreachable(chain(&e)),
        other => SignInError::ProviderError(chain(&other)),
    }
}

fn github_token_error<RE: std::error::Error + 'static>(
    error: RequestTokenError<RE, StandardErrorResponse<oauth2::basic::BasicErrorResponseType>>,
) -> SignInError {
    match error {
        RequestTokenError::ServerResponse(e) => SignInError::Exchange(e.to_string()),
        RequestTokenError::Request(e) => SignInError::Unreachable(chain(&e)),
        // GitHub reports a bad or used code as HTTP 200 with an `error` field.
        RequestTokenError::Parse(_, body) => {
            SignInError::Exchange(String::from_utf8_lossy(&body).chars().take(300).collect())
        }
        RequestTokenError::Other(e) => SignInError::ProviderError(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_from_a_list_a_string_or_a_nested_claim() {
        let claims: HashMap<String, serde_json::Value> =
            serde_json::from_value(serde_json::json!({
                "groups": ["admins", "dev", 3],
                "role": "ops",
                "realm_access": { "roles": ["switchboard-admin"] }
            }))
            .unwrap();
        assert_eq!(groups(&claims, "groups"), ["admins", "dev"]);
        assert_eq!(groups(&claims, "role"), ["ops"]);
        assert_eq!(groups(&claims, "realm_access.roles"), ["switchboard-admin"]);
        assert!(groups(&claims, "missing.path").is_empty());
    }
}
