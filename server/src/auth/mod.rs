//! Who is making a request: single sign-on through the configured identity providers, browser
//! sessions in PostgreSQL, personal API tokens, and the local user of an instance without a
//! provider.
//!
//! Every request passes through [`middleware::authenticate`]: everything is private unless it is on
//! the short public list there, so a new page or server function cannot be left open by mistake.

pub mod middleware;
pub mod pending;
pub mod providers;
pub mod routes;
pub mod session_store;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use domain::Database;
use domain::secrets::SecretKey;
use domain::users::{self, Identity, Role, RoleDecision, User};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use self::pending::PendingCookie;
use self::providers::Providers;
use self::session_store::PgSessionStore;
use self::settings::AuthSettings;

/// The session cookie's name over http; over https it is `__Host-sb_session` (Secure, for this
/// host only, whole site), which no subdomain or plain-http page can set.
pub const SESSION_COOKIE: &str = "sb_session";
pub const SECURE_SESSION_COOKIE: &str = "__Host-sb_session";

/// Keys in the session.
pub(crate) mod keys {
    pub const USER_ID: &str = "user_id";
    /// Unix seconds of the sign-in, for the absolute expiry.
    pub const SIGNED_IN_AT: &str = "signed_in_at";
    pub const PROVIDER: &str = "provider";
    pub const ID_TOKEN: &str = "id_token";
}

/// Sign-in state shared by every request: the settings, the providers, the local user.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    settings: Arc<AuthSettings>,
    providers: Providers,
    /// Sign-ins under way.
    pending: PendingCookie,
    /// Set in local mode: the one user everyone is.
    local_user: Option<User>,
}

impl Auth {
    /// Prepares sign-in (`key` seals the sign-ins under way); in local mode, creates (or
    /// refreshes) the local admin user.
    pub async fn new(
        settings: AuthSettings,
        db: &Database,
        key: SecretKey,
    ) -> Result<Self, domain::Error> {
        let local_user = if settings.is_local() {
            Some(users::sign_in(db, &Identity::local(), RoleDecision::Fixed(Role::Admin)).await?)
        } else {
            None
        };
        let settings = Arc::new(settings);
        Ok(Self {
            inner: Arc::new(AuthInner {
                providers: Providers::new(settings.clone()),
                pending: PendingCookie::new(key, settings.secure_cookies()),
                settings,
                local_user,
            }),
        })
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.inner.settings
    }

    pub fn providers(&self) -> &Providers {
        &self.inner.providers
    }

    pub fn pending(&self) -> &PendingCookie {
        &self.inner.pending
    }

    /// The session cookie's name: `__Host-` prefixed over https.
    pub fn session_cookie(&self) -> &'static str {
        if self.settings().secure_cookies() {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    pub fn local_user(&self) -> Option<&User> {
        self.inner.local_user.as_ref()
    }

    /// The session layer: cookie `sb_session` (`__Host-sb_session` over https), HttpOnly,
    /// SameSite=Lax (the provider's redirect back is a top-level navigation from another site,
    /// which Strict would strip), Secure over https, ending after the idle timeout.
    pub fn session_layer(&self, db: &Database) -> SessionManagerLayer<PgSessionStore> {
        let settings = self.settings();
        SessionManagerLayer::new(PgSessionStore::new(db.clone()))
            .with_name(self.session_cookie())
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(settings.secure_cookies())
            .with_path("/")
            .with_expiry(Expiry::OnInactivity(idle(settings.session_idle)))
    }
}

/// The session idle timeout as tower-sessions counts it (7 days if it is too long to count).
fn idle(duration: Duration) -> time::Duration {
    time::Duration::try_from(duration).unwrap_or(time::Duration::days(7))
}
