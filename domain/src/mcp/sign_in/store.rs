//! People's sign-ins to tool servers, kept: sealed with the instance key and bound to the person,
//! the server and its URL (so that a row pasted elsewhere does not open, and a server whose URL
//! changes asks again), read by rmcp's refresh through [`Tokens`].

use rmcp::transport::auth::{
    AuthError, AuthorizationManager, AuthorizationMetadata, CredentialRefreshGuard,
    CredentialStore, OAuthClientConfig, StoredCredentials,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{http_url, oauth, words};
use crate::mcp::{AddressPolicy, ServerSpec};
use crate::secrets::SecretKey;
use crate::{Database, Result};

/// The client Switchboard is at a server's authorization server.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Client {
    pub(super) id: String,
    pub(super) secret: Option<String>,
    pub(super) redirect_uri: String,
    pub(super) scopes: Vec<String>,
}

impl Client {
    pub(super) fn config(&self) -> OAuthClientConfig {
        let mut config = OAuthClientConfig::new(self.id.clone(), self.redirect_uri.clone())
            .with_scopes(self.scopes.clone())
            .with_application_type("web");
        if let Some(secret) = &self.secret {
            config = config.with_client_secret(secret.clone());
        }
        config
    }
}

/// What a person's tokens for a server go with: the client, the authorization server's metadata,
/// and the resource indicator (RFC 8707) the sign-in asked for (asked for again at every
/// refresh).
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Grant {
    pub(super) client: Client,
    pub(super) metadata: AuthorizationMetadata,
    pub(super) resource: String,
}

/// A person's sign-in to a server, as sealed.
#[derive(Serialize, Deserialize)]
pub(super) struct Stored {
    pub(super) credentials: StoredCredentials,
    #[serde(flatten)]
    pub(super) grant: Grant,
}

/// Where the sign-ins are kept: the database, and the key that seals them.
#[derive(Clone)]
pub(crate) struct SignIns {
    pub(super) db: Database,
    pub(super) key: SecretKey,
}

fn context(user_id: Uuid, server_id: &str, url: &str) -> Vec<u8> {
    format!("mcp-sign-in:{user_id}:{server_id}:{url}").into_bytes()
}

impl SignIns {
    /// The person's sign-in to the server at `url`. One that cannot be read (sealed with another
    /// key, or of another shape) is forgotten: it cannot be used, and the person is asked again.
    pub(super) async fn stored(
        &self,
        user_id: Uuid,
        server_id: &str,
        url: &str,
    ) -> Result<Option<Stored>> {
        let Some(sealed) = sqlx::query_scalar!(
            "SELECT sealed FROM mcp_sign_ins WHERE user_id = $1 AND server_id = $2 AND url = $3",
            user_id,
            server_id,
            url
        )
        .fetch_optional(self.db.pool())
        .await?
        else {
            return Ok(None);
        };
        let read = self
            .key
            .open(&context(user_id, server_id, url), &sealed)
            .ok()
            .and_then(|plain| serde_json::from_slice(&plain).ok());
        if read.is_none() {
            tracing::warn!(
                server = server_id,
                "a stored sign-in cannot be read; it is forgotten"
            );
            self.forget(user_id, server_id).await;
        }
        Ok(read)
    }

    /// Keeps a sign-in (sealed): a new one (`made`), in place of the one before; or the same one
    /// refreshed, only while it is still kept (a refresh that ends after the person signed out
    /// does not sign them in again).
    pub(super) async fn keep(
        &self,
        user_id: Uuid,
        server_id: &str,
        url: &str,
        stored: &Stored,
        made: bool,
    ) -> Result<()> {
        use oauth2::TokenResponse;
        let expires_at = stored
            .credentials
            .token_response
            .as_ref()
            .and_then(|t| t.expires_in())
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| chrono::Utc::now() + d);
        let sealed = self.key.seal(
            &context(user_id, server_id, url),
            &serde_json::to_vec(stored).expect("a sign-in serialises"),
        );
        if made {
            sqlx::query!(
                "INSERT INTO mcp_sign_ins (user_id, server_id, url, issuer, client_id, sealed, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (user_id, server_id) DO UPDATE
                 SET url = EXCLUDED.url, issuer = EXCLUDED.issuer, client_id = EXCLUDED.client_id,
                     sealed = EXCLUDED.sealed, expires_at = EXCLUDED.expires_at,
                     created_at = now(), updated_at = now()",
                user_id,
                server_id,
                url,
                stored.grant.metadata.issuer,
                stored.grant.client.id,
                sealed,
                expires_at
            )
            .execute(self.db.pool())
            .await?;
        } else {
            sqlx::query!(
                "UPDATE mcp_sign_ins SET sealed = $4, expires_at = $5, updated_at = now()
                 WHERE user_id = $1 AND server_id = $2 AND url = $3",
                user_id,
                server_id,
                url,
                sealed,
                expires_at
            )
            .execute(self.db.pool())
            .await?;
        }
        Ok(())
    }

    /// The authorization for a person's connection to a server they signed in to (none when
    /// they did not, or did for another URL than the server's now).
    pub(crate) async fn authorization(
        &self,
        user_id: Uuid,
        spec: &ServerSpec,
        addresses: &AddressPolicy,
    ) -> std::result::Result<Option<AuthorizationManager>, String> {
        let Ok(url) = http_url(spec) else {
            return Ok(None);
        };
        let stored = self
            .stored(user_id, &spec.id, url)
            .await
            .map_err(|e| e.to_string())?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let grant = stored.grant;
        let mut manager = oauth::manager(&grant.resource, spec, addresses)
            .await
            .map_err(|e| e.to_string())?;
        manager.set_metadata(grant.metadata.clone());
        manager
            .configure_client(grant.client.config())
            .map_err(|e| words(&e))?;
        manager.set_credential_store(self.tokens(user_id, &spec.id, url, grant, false));
        Ok(Some(manager))
    }

    /// rmcp's view of a sign-in, to load and save its tokens through; `signing_in` when they are
    /// a new sign-in's (else refreshes of one).
    pub(super) fn tokens(
        &self,
        user_id: Uuid,
        server_id: &str,
        url: &str,
        grant: Grant,
        signing_in: bool,
    ) -> Tokens {
        Tokens {
            sign_ins: self.clone(),
            user_id,
            server_id: server_id.to_owned(),
            url: url.to_owned(),
            grant,
            signing_in,
        }
    }

    /// Forgets a person's sign-in to a server. True when there was one.
    pub(crate) async fn forget(&self, user_id: Uuid, server_id: &str) -> bool {
        let forgotten = sqlx::query!(
            "DELETE FROM mcp_sign_ins WHERE user_id = $1 AND server_id = $2",
            user_id,
            server_id
        )
        .execute(self.db.pool())
        .await;
        match forgotten {
            Ok(done) => done.rows_affected() > 0,
            Err(e) => {
                tracing::warn!(server = server_id, "cannot forget a sign-in: {e}");
                false
            }
        }
    }

    /// Forgets a person's sign-in to a server that the server refused, unless the person signed in
    /// again since `tried` (on another instance, maybe: that one is tried next). Refreshes do not
    /// count: a refresh made while trying is part of the try.
    pub(crate) async fn forget_refused(
        &self,
        user_id: Uuid,
        server_id: &str,
        tried: chrono::DateTime<chrono::Utc>,
    ) {
        let forgotten = sqlx::query!(
            "DELETE FROM mcp_sign_ins WHERE user_id = $1 AND server_id = $2 AND created_at <= $3",
            user_id,
            server_id,
            tried
        )
        .execute(self.db.pool())
        .await;
        if let Err(e) = forgotten {
            tracing::warn!(server = server_id, "cannot forget a refused sign-in: {e}");
        }
    }

    /// Whether the person is signed in to the server at its URL now.
    pub(crate) async fn is_signed_in(&self, user_id: Uuid, spec: &ServerSpec) -> bool {
        let Ok(url) = http_url(spec) else {
            return false;
        };
        sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM mcp_sign_ins WHERE user_id = $1 AND server_id = $2 AND url = $3) AS "yes!""#,
            user_id,
            spec.id,
            url
        )
        .fetch_one(self.db.pool())
        .await
        .unwrap_or(false)
    }

    /// The servers the person is signed in to: (id, URL) pairs.
    pub(crate) async fn of(&self, user_id: Uuid) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query!(
            "SELECT server_id, url FROM mcp_sign_ins WHERE user_id = $1",
            user_id
        )
        .fetch_all(self.db.pool())
        .await?
        .into_iter()
        .map(|r| (r.server_id, r.url))
        .collect())
    }
}

/// A person's tokens for a server, as rmcp reads and saves them (at sign-in and every refresh).
pub(super) struct Tokens {
    sign_ins: SignIns,
    user_id: Uuid,
    server_id: String,
    url: String,
    grant: Grant,
    signing_in: bool,
}

/// The advisory lock of a person's refreshes for a server: the first 8 bytes of a digest of both.
fn refresh_lock_key(user_id: Uuid, server_id: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("mcp-refresh:{user_id}:{server_id}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

fn store_error(e: impl std::fmt::Display) -> AuthError {
    AuthError::CredentialStoreError(e.to_string())
}

#[async_trait::async_trait]
impl CredentialStore for Tokens {
    async fn load(&self) -> std::result::Result<Option<StoredCredentials>, AuthError> {
        Ok(self
            .sign_ins
            .stored(self.user_id, &self.server_id, &self.url)
            .await
            .map_err(store_error)?
            .map(|stored| stored.credentials))
    }

    async fn save(&self, credentials: StoredCredentials) -> std::result::Result<(), AuthError> {
        let stored = Stored {
            credentials,
            grant: self.grant.clone(),
        };
        self.sign_ins
            .keep(
                self.user_id,
                &self.server_id,
                &self.url,
                &stored,
                self.signing_in,
            )
            .await
            .map_err(store_error)
    }

    /// One refresh at a time per person and server, across instances: a transaction holds a
    /// PostgreSQL advisory lock until the refresh is saved (dropping it ends both), so that two
    /// instances never spend one rotating refresh token twice (the second would lose the grant).
    async fn acquire_refresh_guard(
        &self,
    ) -> std::result::Result<Option<CredentialRefreshGuard>, AuthError> {
        let key = refresh_lock_key(self.user_id, &self.server_id);
        let mut tx = self.sign_ins.db.pool().begin().await.map_err(store_error)?;
        sqlx::query!("SELECT pg_advisory_xact_lock($1)", key)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        Ok(Some(CredentialRefreshGuard::new(tx)))
    }

    async fn clear(&self) -> std::result::Result<(), AuthError> {
        self.sign_ins.forget(self.user_id, &self.server_id).await;
        Ok(())
    }
}
