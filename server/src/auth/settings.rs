//! Sign-in settings: the identity providers, who is an admin, the public URL and session lifetimes.
//!
//! Providers are listed by id in `SWITCHBOARD_AUTH_PROVIDERS` (`company,github`); each has its own
//! variables `SWITCHBOARD_AUTH_<ID>_...` (the id upper-cased, `-` as `_`). They are read from the
//! environment rather than from flags because their names depend on the ids.

use std::net::SocketAddr;
use std::time::Duration;

use domain::users::{AdminRule, Admission, SignInRule};
use url::Url;

use super::providers::GITHUB_ORG_PREFIX;
use crate::config::{Config, ConfigError, ProviderVars, list, provider_ids};

/// Everything sign-in needs from configuration.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// The address people use to reach Switchboard; redirect URIs and cookie security follow it.
    pub public_url: Url,
    /// In the order of their buttons. Empty: local mode (one local admin, loopback only).
    pub providers: Vec<ProviderSettings>,
    pub admins: AdminRule,
    /// Whether new people wait for an administrator's approval.
    pub admission: Admission,
    /// The ID-token claim with a person's groups or roles; dots reach into objects
    /// (`realm_access.roles` for Keycloak).
    pub groups_claim: String,
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// ... and this long after sign-in, whatever happens.
    pub session_max_age: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderSettings {
    /// Lower-case letters, digits and `-`; part of the callback URL `/auth/callback/<id>`.
    pub id: String,
    /// The button's text: "Sign in with <label>".
    pub label: String,
    pub kind: ProviderKind,
    pub client_id: String,
    pub client_secret: String,
    /// Beyond `openid` (which OpenID Connect always asks for).
    pub scopes: Vec<String>,
    /// Who may sign in through it.
    pub allowed: SignInRule,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// Any OpenID Connect provider, found by discovery at `<issuer>/.well-known/openid-configuration`.
    Oidc { issuer: Url },
    /// GitHub's OAuth apps (GitHub Enterprise Server too): profile and verified e-mail from its API.
    GitHub { web_url: Url, api_url: Url },
}

impl ProviderSettings {
    /// A public service (Google, github.com) with no allow-list: anyone with an account there
    /// can sign in.
    pub fn admits_anyone(&self) -> bool {
        let public = match &self.kind {
            ProviderKind::Oidc { issuer } => issuer.host_str() == Some("accounts.google.com"),
            ProviderKind::GitHub { web_url, .. } => web_url.host_str() == Some("github.com"),
        };
        public && self.allowed.is_open()
    }
}

impl AuthSettings {
    /// Reads the settings from `config` and, for the providers, from `env`.
    pub fn from_config(
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let ids = provider_ids(
            "SWITCHBOARD_AUTH_PROVIDERS",
            config.auth_providers.as_deref(),
        )
        .map_err(ConfigError::Auth)?;
        let providers = ids
            .iter()
            .map(|id| provider(id, env))
            .collect::<Result<Vec<_>, _>>()?;
        if providers.is_empty() && !config.listen.ip().is_loopback() {
            return Err(ConfigError::Auth(format!(
                "Switchboard listens on {}, which other machines can reach, but no sign-in provider is configured, so anyone could use it as the local admin. Configure one (for example SWITCHBOARD_AUTH_PROVIDERS=company with SWITCHBOARD_AUTH_COMPANY_ISSUER, SWITCHBOARD_AUTH_COMPANY_CLIENT_ID and SWITCHBOARD_AUTH_COMPANY_CLIENT_SECRET; see docs/sign-in.md), or listen on 127.0.0.1.",
                config.listen
            )));
        }
        let public_url = public_url(config.public_url.as_deref(), config.listen, &providers)?;
        let session_idle = config.session_idle_timeout.into();
        let session_max_age: Duration = config.session_max_age.into();
        if session_max_age < Duration::from_secs(60) || session_idle < Duration::from_secs(60) {
            return Err(ConfigError::Auth(
                "SWITCHBOARD_SESSION_IDLE_TIMEOUT and SWITCHBOARD_SESSION_MAX_AGE must be at least 1 minute.".into(),
            ));
        }
        Ok(Self {
            public_url,
            providers,
            admins: AdminRule {
                emails: list(config.admin_emails.as_deref()),
                groups: list(config.admin_groups.as_deref()),
            },
            admission: if config.approve_new_users {
                Admission::Approval
            } else {
                Admission::Open
            },
            groups_claim: config.groups_claim.clone(),
            session_idle,
            session_max_age,
        })
    }

    /// Local mode: nobody signs in; everyone on this (loopback) address is the local admin.
    pub fn is_local(&self) -> bool {
        self.providers.is_empty()
    }

    /// Cookies get `Secure` when people reach Switchboard over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// Where a provider sends people back to: `<public URL>/auth/callback/<id>`.
    pub fn redirect_url(&self, provider_id: &str) -> Url {
        let mut url = self.public_url.clone();
        url.set_path(&format!("/auth/callback/{provider_id}"));
        url
    }

    pub fn provider(&self, id: &str) -> Option<&ProviderSettings> {
        self.providers.iter().find(|p| p.id == id)
    }
}

fn public_url(
    configured: Option<&str>,
    listen: SocketAddr,
    providers: &[ProviderSettings],
) -> Result<Url, ConfigError> {
    let bad = |why: String| ConfigError::Auth(format!("SWITCHBOARD_PUBLIC_URL {why}"));
    match configured.map(str::trim).filter(|s| !s.is_empty()) {
        Some(raw) => {
            let url = Url::parse(raw).map_err(|e| bad(format!("is not a URL ({e}): set it to the address people open, like https://chat.example.com.")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(bad(
                    "must be an http:// or https:// address, like https://chat.example.com.".into(),
                ));
            }
            if url.path() != "/" || url.query().is_some() {
                return Err(bad("must be the site's root (no path), like https://chat.example.com: Switchboard does not run under a sub-path.".into()));
            }
            Ok(url)
        }
        None if listen.ip().is_unspecified() && !providers.is_empty() => Err(bad(format!(
            "is needed: Switchboard listens on {listen}, so it cannot tell which address people use. Set it to that address, like https://chat.example.com; it is where identity providers send people back to."
        ))),
        None => {
            let host = if listen.ip().is_loopback() || listen.ip().is_unspecified() {
                "localhost".to_owned()
            } else {
                match listen {
                    SocketAddr::V4(a) => a.ip().to_string(),
                    SocketAddr::V6(a) => format!("[{}]", a.ip()),
                }
            };
            Ok(Url::parse(&format!("http://{host}:{}", listen.port())).expect("a valid URL"))
        }
    }
}

fn with_final_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

fn provider(
    id: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ProviderSettings, ConfigError> {
    let vars = ProviderVars::new("SWITCHBOARD_AUTH_PROVIDERS", "SWITCHBOARD_AUTH", id, env)
        .map_err(ConfigError::Auth)?;
    let prefix = &vars.prefix;
    let var = |name: &str| vars.get(name);
    let required = |name: &str| {
        var(name).ok_or_else(|| {
            ConfigError::Auth(format!(
                "sign-in provider '{id}' needs {prefix}{name} (see docs/sign-in.md)."
            ))
        })
    };
    let url = |name: &str, value: String| {
        Url::parse(&value).map_err(|e| {
            ConfigError::Auth(format!("{prefix}{name} is not a URL ({e}): '{value}'."))
        })
    };
    let kind_name = var("TYPE").unwrap_or_else(|| {
        match id {
            "google" => "google",
            "entra" | "microsoft" | "azure" => "entra",
            "github" => "github",
            _ => "oidc",
        }
        .to_owned()
    });
    let (kind, default_label) = match kind_name.as_str() {
        "oidc" => {
            let issuer = url("ISSUER", required("ISSUER")?)?;
            let label = var("NAME").unwrap_or_else(|| issuer.host_str().unwrap_or(id).to_owned());
            (ProviderKind::Oidc { issuer }, label)
        }
        "google" => (
            ProviderKind::Oidc {
                issuer: Url::parse("https://accounts.google.com").expect("a valid URL"),
            },
            "Google".to_owned(),
        ),
        "entra" => {
            let tenant = required("TENANT")?;
            if !tenant.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                return Err(ConfigError::Auth(format!(
                    "{prefix}TENANT must be your directory (tenant) id, a GUID like 3fa85f64-5717-4562-b3fc-2c963f66afa6, as shown on the app registration's overview page in Microsoft Entra."
                )));
            }
            let issuer = url(
                "TENANT",
                format!("https://login.microsoftonline.com/{tenant}/v2.0"),
            )?;
            (ProviderKind::Oidc { issuer }, "Microsoft".to_owned())
        }
        "github" => {
            let web_url = url(
                "GITHUB_URL",
                var("GITHUB_URL").unwrap_or_else(|| "https://github.com".into()),
            )?;
            let api_url = match var("GITHUB_API_URL") {
                Some(v) => url("GITHUB_API_URL", v)?,
                None if web_url.host_str() == Some("github.com") => {
                    Url::parse("https://api.github.com").expect("a valid URL")
                }
                // GitHub Enterprise Server serves its API under /api/v3.
                None => web_url
                    .join("api/v3/")
                    .map_err(|e| ConfigError::Auth(e.to_string()))?,
            };
            // Endpoints are joined onto these, which keeps their paths only with a final '/'.
            let (web_url, api_url) = (with_final_slash(web_url), with_final_slash(api_url));
            (
                ProviderKind::GitHub { web_url, api_url },
                "GitHub".to_owned(),
            )
        }
        other => {
            return Err(ConfigError::Auth(format!(
                "{prefix}TYPE is '{other}'; it must be oidc, google, entra or github."
            )));
        }
    };
    let github = matches!(kind, ProviderKind::GitHub { .. });
    let groups = match (github, var("ALLOWED_GROUPS"), var("ALLOWED_ORGS")) {
        (true, Some(_), _) => {
            return Err(ConfigError::Auth(format!(
                "{prefix}ALLOWED_GROUPS is for OpenID Connect providers; for GitHub, list organisations in {prefix}ALLOWED_ORGS."
            )));
        }
        (false, _, Some(_)) => {
            return Err(ConfigError::Auth(format!(
                "{prefix}ALLOWED_ORGS is for GitHub providers; use {prefix}ALLOWED_GROUPS (groups from SWITCHBOARD_GROUPS_CLAIM) or {prefix}ALLOWED_DOMAINS."
            )));
        }
        // Organisations are groups named `github:<org>`, never an identity provider's group.
        (true, None, orgs) => list(orgs.as_deref())
            .into_iter()
            .map(|org| format!("{GITHUB_ORG_PREFIX}{org}"))
            .collect(),
        (false, groups, None) => list(groups.as_deref()),
    };
    let allowed = SignInRule {
        domains: list(var("ALLOWED_DOMAINS").as_deref()),
        groups,
    };
    let default_scopes = if github {
        // Organisation memberships, private ones too, when they decide who gets in.
        if allowed.groups.is_empty() {
            "read:user user:email"
        } else {
            "read:user user:email read:org"
        }
    } else {
        "email profile"
    };
    Ok(ProviderSettings {
        id: id.to_owned(),
        label: var("NAME").unwrap_or(default_label),
        client_id: required("CLIENT_ID")?,
        client_secret: required("CLIENT_SECRET")?,
        scopes: list(Some(
            &var("SCOPES").unwrap_or_else(|| default_scopes.into()),
        ))
        .into_iter()
        .filter(|s| s != "openid")
        .collect(),
        kind,
        allowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str], vars: &[(&str, &str)]) -> Result<AuthSettings, ConfigError> {
        let (config, env) = crate::config::parse_with_vars(args, vars);
        AuthSettings::from_config(&config, &env)
    }

    #[test]
    fn no_provider_on_loopback_is_local_mode() {
        let s = settings(&[], &[]).unwrap();
        assert!(s.is_local());
        assert_eq!(s.public_url.as_str(), "http://localhost:3000/");
        assert!(!s.secure_cookies());
    }

    #[test]
    fn no_provider_on_a_public_address_stops_start_up_with_the_fix() {
        let message = settings(&["--listen", "0.0.0.0:3000"], &[])
            .unwrap_err()
            .to_string();
        assert!(message.contains("SWITCHBOARD_AUTH_PROVIDERS"), "{message}");
        assert!(message.contains("listen on 127.0.0.1"), "{message}");
    }

    #[test]
    fn an_oidc_provider_by_issuer() {
        let s = settings(
            &[
                "--auth-providers",
                "company",
                "--public-url",
                "https://chat.example.com",
            ],
            &[
                (
                    "SWITCHBOARD_AUTH_COMPANY_ISSUER",
                    "https://id.example.com/realms/main",
                ),
                ("SWITCHBOARD_AUTH_COMPANY_CLIENT_ID", "switchboard"),
                ("SWITCHBOARD_AUTH_COMPANY_CLIENT_SECRET", "s3cret"),
                ("SWITCHBOARD_AUTH_COMPANY_NAME", "Example SSO"),
            ],
        )
        .unwrap();
        let p = &s.providers[0];
        assert_eq!(p.label, "Example SSO");
        assert_eq!(
            p.kind,
            ProviderKind::Oidc {
                issuer: Url::parse("https://id.example.com/realms/main").unwrap()
            }
        );
        assert_eq!(p.scopes, ["email", "profile"]);
        assert!(s.secure_cookies());
        assert_eq!(
            s.redirect_url("company").as_str(),
            "https://chat.example.com/auth/callback/company"
        );
    }

    #[test]
    fn presets_need_only_client_credentials() {
        let s = settings(
            &["--auth-providers", "google,entra,github"],
            &[
                ("SWITCHBOARD_AUTH_GOOGLE_CLIENT_ID", "g"),
                ("SWITCHBOARD_AUTH_GOOGLE_CLIENT_SECRET", "gs"),
                ("SWITCHBOARD_AUTH_ENTRA_CLIENT_ID", "m"),
                ("SWITCHBOARD_AUTH_ENTRA_CLIENT_SECRET", "ms"),
                (
                    "SWITCHBOARD_AUTH_ENTRA_TENANT",
                    "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                ),
                ("SWITCHBOARD_AUTH_GITHUB_CLIENT_ID", "h"),
                ("SWITCHBOARD_AUTH_GITHUB_CLIENT_SECRET", "hs"),
            ],
        )
        .unwrap();
        let kinds: Vec<_> = s
            .providers
            .iter()
            .map(|p| (p.label.as_str(), &p.kind))
            .collect();
        assert!(
            matches!(kinds[0], ("Google", ProviderKind::Oidc { issuer }) if issuer.as_str() == "https://accounts.google.com/")
        );
        assert!(
            matches!(kinds[1], ("Microsoft", ProviderKind::Oidc { issuer }) if issuer.as_str() == "https://login.microsoftonline.com/3fa85f64-5717-4562-b3fc-2c963f66afa6/v2.0")
        );
        assert!(
            matches!(kinds[2], ("GitHub", ProviderKind::GitHub { api_url, .. }) if api_url.as_str() == "https://api.github.com/")
        );
    }

    #[test]
    fn a_missing_setting_is_named() {
        let message = settings(
            &["--auth-providers", "company"],
            &[("SWITCHBOARD_AUTH_COMPANY_ISSUER", "https://id.example.com")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("SWITCHBOARD_AUTH_COMPANY_CLIENT_ID"),
            "{message}"
        );
    }

    #[test]
    fn a_provider_on_an_unspecified_address_needs_the_public_url() {
        let message = settings(
            &["--auth-providers", "github", "--listen", "0.0.0.0:3000"],
            &[
                ("SWITCHBOARD_AUTH_GITHUB_CLIENT_ID", "h"),
                ("SWITCHBOARD_AUTH_GITHUB_CLIENT_SECRET", "hs"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("SWITCHBOARD_PUBLIC_URL is needed"),
            "{message}"
        );
    }
}
