//! Signing a person in to a tool server that asks for it (MCP authorization: OAuth 2.1, the
//! authorization code flow with PKCE and resource indicators), and keeping them signed in.
//!
//! A Streamable HTTP server that answers 401 and publishes where to sign in (protected resource
//! metadata, then its authorization server's metadata) leaves the person's connection waiting for
//! a sign-in ([`super::Status::SignInNeeded`]). [`Mcp::begin_sign_in`] finds the authorization
//! server again, gets a client there (one an administrator registered, Switchboard's client
//! metadata document where the server takes one, else dynamic registration), and gives the
//! authorize URL the person's browser goes to; the flow waits in the database, sealed, for ten
//! minutes. [`Mcp::finish_sign_in`] takes the callback (on any instance, for the person who began
//! it only, once), exchanges the code and keeps the tokens sealed per person and server, for the
//! server's URL only. Connections then carry the token (rmcp's auth client refreshes it before it
//! expires, and once after a 401); [`Mcp::sign_out`] forgets it and tells the authorization
//! server where it can be told. The discovery and token requests of a personal server go only to
//! addresses [`super::AddressPolicy`] allows, like the server itself.
//!
//! The heavy lifting (discovery, registration, PKCE, the token exchange and refresh) is rmcp's
//! `auth` module, the SDK's own; this module gives it storage, a network policy and the person.

mod oauth;
mod store;

use rmcp::transport::auth::{
    AuthError, AuthorizationManager, AuthorizationMetadata, InMemoryStateStore, OAuthClientConfig,
    StateStore, StoredAuthorizationState,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub(crate) use oauth::asks_for_sign_in;
pub(crate) use store::SignIns;
use store::{Client, Grant};

use super::{Mcp, ServerSpec, Transport, limits};
use crate::{Error, Result};

/// How long a sign-in may take between the redirect and the callback.
pub const FLOW_MINUTES: i32 = 10;
/// The most sign-ins one person may have under way (older ones are dropped).
const MAX_FLOWS: i64 = 5;
/// The name Switchboard registers under.
const CLIENT_NAME: &str = "Switchboard";

/// A sign-in under way, as sealed.
#[derive(Serialize, Deserialize)]
struct Flow {
    state: StoredAuthorizationState,
    grant: Grant,
}

/// A finished sign-in: the server, and where the person goes back to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub server_id: String,
    pub return_to: String,
}

fn state_hash(state: &str) -> Vec<u8> {
    Sha256::digest(state.as_bytes()).to_vec()
}

fn flow_context(hash: &[u8]) -> Vec<u8> {
    [b"mcp-sign-in-flow:".as_slice(), hash].concat()
}

/// Words for what went wrong at an authorization server (rmcp's, cut).
fn words(error: &AuthError) -> String {
    limits::cut(&crate::error::chain(error), 300)
}

/// A server's URL, when it is reached over HTTP (the only servers one signs in to).
fn http_url(spec: &ServerSpec) -> Result<&str> {
    match &spec.transport {
        Transport::Http { url, .. } => Ok(url),
        Transport::Stdio { .. } => Err(Error::Invalid(format!(
            "{} runs on Switchboard's machine and has no sign-in.",
            spec.name
        ))),
    }
}

impl Mcp {
    pub(crate) fn sign_ins(&self) -> SignIns {
        SignIns {
            db: self.inner.db.clone(),
            key: self.inner.key.clone(),
        }
    }

    /// Starts the person's sign-in to a server: the URL their browser goes to. `return_to` is
    /// where the callback sends them back (the server's routes keep it to paths of
    /// Switchboard's, here and again at the callback).
    pub async fn begin_sign_in(
        &self,
        user_id: Uuid,
        server_id: &str,
        return_to: &str,
    ) -> Result<String> {
        let spec = self.spec(user_id, server_id).await?.ok_or_else(|| {
            Error::NotFound(format!("There is no tool server '{server_id}' for you."))
        })?;
        let url = http_url(&spec)?.to_owned();
        let redirect_uri = self.inner.settings.sign_in_redirect.clone().ok_or_else(|| {
            Error::Unavailable(
                "Signing in to tool servers needs Switchboard's public URL: ask an administrator to set SWITCHBOARD_PUBLIC_URL."
                    .into(),
            )
        })?;
        let challenge = self
            .live(user_id, server_id)
            .and_then(|shared| shared.challenge());
        let mut manager = oauth::manager(&url, &spec, &self.inner.settings.addresses).await?;
        let metadata = oauth::discover(&manager, &spec, challenge.as_deref()).await?;
        manager.set_metadata(metadata.clone());
        let scopes = manager.select_scopes(None, &[]);
        let client = self
            .client(
                &mut manager,
                user_id,
                &spec,
                &metadata,
                &redirect_uri,
                scopes,
            )
            .await?;
        let states = InMemoryStateStore::new();
        manager.set_state_store(states.clone());
        let cannot = |e: AuthError| {
            Error::Unavailable(format!(
                "Cannot sign in to {}: {}. Try again later, or tell the server's administrator.",
                spec.name,
                words(&e)
            ))
        };
        manager.configure_client(client.config()).map_err(cannot)?;
        let scopes: Vec<&str> = client.scopes.iter().map(String::as_str).collect();
        let authorize = manager
            .get_authorization_url(&scopes)
            .await
            .map_err(cannot)?;
        // The browser goes there: nothing but a web address (a `javascript:` one would run on
        // Switchboard's page).
        let parsed = url::Url::parse(&authorize)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .ok_or_else(|| {
                Error::Unavailable(format!(
                    "The sign-in page {} names is not a web address, so Switchboard does not send you there. Tell the server's administrator.",
                    spec.name
                ))
            })?;
        let param = |name: &str| {
            parsed
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        // What rmcp made the sign-in with: its state (kept in memory until now), and the
        // resource it names (the server's, as its metadata says), asked for again later.
        let unprepared = || {
            Error::Unavailable(format!(
                "The sign-in to {} could not be prepared. Try again.",
                spec.name
            ))
        };
        let csrf = param("state").ok_or_else(unprepared)?;
        let state = states
            .load(&csrf)
            .await
            .ok()
            .flatten()
            .ok_or_else(unprepared)?;
        let flow = Flow {
            state,
            grant: Grant {
                client,
                metadata,
                resource: param("resource").unwrap_or_else(|| url.clone()),
            },
        };
        let hash = state_hash(&csrf);
        let sealed = self.inner.key.seal(
            &flow_context(&hash),
            &serde_json::to_vec(&flow).expect("a flow serialises"),
        );
        let mut tx = self.inner.db.pool().begin().await?;
        sqlx::query!(
            "INSERT INTO mcp_sign_in_flows (state_hash, user_id, server_id, url, return_to, sealed)
             VALUES ($1, $2, $3, $4, $5, $6)",
            hash,
            user_id,
            server_id,
            url,
            return_to,
            sealed
        )
        .execute(&mut *tx)
        .await?;
        // A person has a few sign-ins under way at most; the oldest give way, as do stale ones.
        sqlx::query!(
            "DELETE FROM mcp_sign_in_flows WHERE created_at < now() - make_interval(mins => $1)
                OR state_hash IN (SELECT state_hash FROM mcp_sign_in_flows WHERE user_id = $2
                                  ORDER BY created_at DESC OFFSET $3)",
            FLOW_MINUTES,
            user_id,
            MAX_FLOWS
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(authorize)
    }

    /// The client to sign in with: the one kept from the person's last sign-in to this server at
    /// the same authorization server, else one an administrator registered, Switchboard's client
    /// metadata document, or a new registration.
    async fn client(
        &self,
        manager: &mut AuthorizationManager,
        user_id: Uuid,
        spec: &ServerSpec,
        metadata: &AuthorizationMetadata,
        redirect_uri: &str,
        scopes: Vec<String>,
    ) -> Result<Client> {
        let url = http_url(spec)?;
        if let Some(stored) = self.sign_ins().stored(user_id, &spec.id, url).await?
            && stored.grant.metadata.issuer == metadata.issuer
            && stored.grant.client.redirect_uri == redirect_uri
        {
            return Ok(Client {
                scopes,
                ..stored.grant.client
            });
        }
        if let Transport::Http {
            oauth_client_id: Some(id),
            oauth_client_secret,
            ..
        } = &spec.transport
        {
            return Ok(Client {
                id: id.clone(),
                secret: oauth_client_secret.clone().filter(|s| !s.is_empty()),
                redirect_uri: redirect_uri.to_owned(),
                scopes,
            });
        }
        let takes_documents = metadata
            .additional_fields
            .get("client_id_metadata_document_supported")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if takes_documents && let Some(document) = &self.inner.settings.client_document {
            return Ok(Client {
                id: document.clone(),
                secret: None,
                redirect_uri: redirect_uri.to_owned(),
                scopes,
            });
        }
        if metadata.registration_endpoint.is_none() {
            return Err(Error::Unavailable(format!(
                "{} asks you to sign in, but its sign-in service takes no new clients: an administrator must register Switchboard there and set the client id on the server.",
                spec.name
            )));
        }
        // Registered as a web application (Switchboard is one), with the manager's own request.
        manager
            .configure_client(
                OAuthClientConfig::new("unregistered", redirect_uri).with_application_type("web"),
            )
            .map_err(|e| Error::Unavailable(words(&e)))?;
        let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let registered = manager
            .register_client(CLIENT_NAME, redirect_uri, &refs)
            .await
            .map_err(|e| {
                Error::Unavailable(format!(
                    "Cannot register Switchboard with the sign-in service of {}: {}. Try again later, or ask an administrator to register Switchboard there and set the client id on the server.",
                    spec.name,
                    words(&e)
                ))
            })?;
        Ok(Client {
            id: registered.client_id,
            secret: registered.client_secret,
            redirect_uri: redirect_uri.to_owned(),
            scopes,
        })
    }

    /// Finishes a sign-in with the authorization server's callback: only the person who began it,
    /// only once, within [`FLOW_MINUTES`]. The tokens are kept, and the person's connection to the
    /// server is (re)started with them.
    pub async fn finish_sign_in(
        &self,
        user_id: Uuid,
        state: &str,
        code: &str,
        issuer: Option<&str>,
    ) -> Result<Finished> {
        let hash = state_hash(state);
        let expired = || {
            Error::NotFound(
                "This sign-in is not one you started, or it is over (it may take ten minutes at most, and works once). Start it again from the Servers page."
                    .into(),
            )
        };
        // Used up whatever happens next: a replayed callback finds nothing.
        let row = sqlx::query!(
            "DELETE FROM mcp_sign_in_flows WHERE state_hash = $1 AND user_id = $2
             RETURNING server_id, url, return_to, sealed,
                       created_at > now() - make_interval(mins => $3) AS \"fresh!\"",
            hash,
            user_id,
            FLOW_MINUTES
        )
        .fetch_optional(self.inner.db.pool())
        .await?
        .filter(|row| row.fresh)
        .ok_or_else(expired)?;
        let flow: Flow =
            serde_json::from_slice(&self.inner.key.open(&flow_context(&hash), &row.sealed)?)
                .map_err(|_| expired())?;
        let spec = self
            .spec(user_id, &row.server_id)
            .await?
            .filter(|spec| http_url(spec).ok() == Some(row.url.as_str()))
            .ok_or_else(|| {
                Error::Conflict(
                    "The tool server changed or was removed while you signed in: start again from the Servers page."
                        .into(),
                )
            })?;
        let grant = flow.grant;
        let mut manager =
            oauth::manager(&grant.resource, &spec, &self.inner.settings.addresses).await?;
        manager.set_metadata(grant.metadata.clone());
        let failed = |e: AuthError| {
            Error::Unavailable(format!(
                "The sign-in service of {} did not complete your sign-in: {}. Start it again from the Servers page.",
                spec.name,
                words(&e)
            ))
        };
        let states = InMemoryStateStore::new();
        states.save(state, flow.state).await.map_err(failed)?;
        manager.set_state_store(states);
        manager
            .configure_client(grant.client.config())
            .map_err(failed)?;
        manager.set_credential_store(self.sign_ins().tokens(
            user_id,
            &row.server_id,
            &row.url,
            grant,
            true,
        ));
        manager
            .exchange_code_for_token_with_issuer(code, state, issuer)
            .await
            .map_err(failed)?;
        // Signing in is wanting the server: its connection starts again, with the token.
        self.want(user_id, &row.server_id).await?;
        self.restart_for(user_id, spec).await;
        Ok(Finished {
            server_id: row.server_id,
            return_to: row.return_to,
        })
    }

    /// Drops a sign-in the authorization server sent the person back from without a code
    /// (declined, failed): it cannot be finished any more. True when it was theirs and under way.
    pub async fn abandon_sign_in(&self, user_id: Uuid, state: &str) -> bool {
        let dropped = sqlx::query!(
            "DELETE FROM mcp_sign_in_flows WHERE state_hash = $1 AND user_id = $2",
            state_hash(state),
            user_id
        )
        .execute(self.inner.db.pool())
        .await;
        match dropped {
            Ok(done) => done.rows_affected() > 0,
            Err(e) => {
                tracing::warn!("cannot drop a sign-in that did not finish: {e}");
                false
            }
        }
    }

    /// Forgets the person's sign-in to a server (its connection then asks for one again), and
    /// tells the authorization server to revoke the token where it says how. False when there
    /// was none.
    pub async fn sign_out(&self, user_id: Uuid, server_id: &str) -> Result<bool> {
        let Some(spec) = self.spec(user_id, server_id).await? else {
            return Ok(false);
        };
        let url = http_url(&spec)?.to_owned();
        let sign_ins = self.sign_ins();
        let stored = sign_ins
            .stored(user_id, server_id, &url)
            .await
            .ok()
            .flatten();
        let gone = sign_ins.forget(user_id, server_id).await;
        if let Some(stored) = stored {
            oauth::revoke(&spec, &self.inner.settings.addresses, &stored).await;
        }
        if gone {
            self.restart_for(user_id, spec).await;
        }
        Ok(gone)
    }

    /// Closes the person's connection to a server on this instance and starts it again if they
    /// want it (with or without a sign-in now).
    async fn restart_for(&self, user_id: Uuid, spec: ServerSpec) {
        let old = self.take(Some(user_id), &spec.id);
        super::supervisor::close_all(old).await;
        if let Err(e) = self.resume(user_id, &spec.id).await {
            tracing::warn!(server = %spec.id, "cannot connect again after a sign-in change: {e}");
        }
    }
}
