//! Sign-ins under way, between the redirect to the provider and the callback: kept in a
//! short-lived cookie, encrypted and authenticated with the instance's secret key, so that starting
//! a sign-in writes nothing to the database (anyone may start one, as often as they like).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::secrets::SecretKey;
use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};
use tower_sessions::cookie::{Cookie, SameSite};

use super::providers::PendingSignIn;

/// How long a person has to finish signing in at the provider.
pub const TTL_SECS: i64 = 15 * 60;
/// Sign-ins kept at once (several tabs); the oldest go first.
const MAX_PENDING: usize = 5;
/// Binds the sealed value to this use of the key.
const CONTEXT: &[u8] = b"switchboard pending sign-ins v1";
/// A larger cookie than this is not ours (five sign-ins seal to about 2 KB).
const MAX_COOKIE_LEN: usize = 4096;

/// The cookie's name, and how to seal what it holds.
#[derive(Clone, Debug)]
pub struct PendingCookie {
    name: &'static str,
    secure: bool,
    key: SecretKey,
}

impl PendingCookie {
    /// Over https the cookie is `__Host-` prefixed (Secure, host-only, path `/`).
    pub fn new(key: SecretKey, secure: bool) -> Self {
        Self {
            name: if secure {
                "__Host-sb_signin"
            } else {
                "sb_signin"
            },
            secure,
            key,
        }
    }

    /// The sign-ins under way that the request's cookie holds, expired ones left out; none when
    /// it has no such cookie, or one that was not sealed with this key.
    pub fn read(&self, headers: &HeaderMap) -> Vec<PendingSignIn> {
        let now = chrono::Utc::now().timestamp();
        let value = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| Cookie::parse(c.trim()).ok())
            .find(|c| c.name() == self.name)
            .map(|c| c.value().to_owned());
        let Some(value) = value.filter(|v| v.len() <= MAX_COOKIE_LEN) else {
            return Vec::new();
        };
        let opened = URL_SAFE_NO_PAD
            .decode(value)
            .ok()
            .and_then(|sealed| self.key.open(CONTEXT, &sealed).ok())
            .and_then(|plain| serde_json::from_slice::<Vec<PendingSignIn>>(&plain).ok())
            .unwrap_or_default();
        opened
            .into_iter()
            .filter(|p| (0..TTL_SECS).contains(&(now - p.started_at)))
            .collect()
    }

    /// A `Set-Cookie` that holds `pending` (the newest [`MAX_PENDING`]), or removes the cookie
    /// when there are none.
    pub fn write(&self, mut pending: Vec<PendingSignIn>) -> HeaderValue {
        let excess = pending.len().saturating_sub(MAX_PENDING);
        pending.drain(..excess);
        let (value, max_age) = if pending.is_empty() {
            (String::new(), time::Duration::ZERO)
        } else {
            let plain = serde_json::to_vec(&pending).expect("pending sign-ins serialise");
            (
                URL_SAFE_NO_PAD.encode(self.key.seal(CONTEXT, &plain)),
                time::Duration::seconds(TTL_SECS),
            )
        };
        let cookie = Cookie::build((self.name, value))
            .http_only(true)
            // The provider's redirect back is a top-level navigation from another site.
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .path("/")
            .max_age(max_age)
            .build();
        HeaderValue::from_str(&cookie.to_string()).expect("a cookie is a valid header value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(state: &str, started_at: i64) -> PendingSignIn {
        PendingSignIn {
            provider: "idp".into(),
            state: state.into(),
            nonce: Some("n".into()),
            pkce_verifier: "v".into(),
            next: "/".into(),
            started_at,
        }
    }

    fn key() -> SecretKey {
        SecretKey::from_base64(&SecretKey::generate()).unwrap()
    }

    fn request_with(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(pair).unwrap());
        headers
    }

    #[test]
    fn sign_ins_come_back_only_sealed_with_this_key_and_in_time() {
        let cookie = PendingCookie::new(key(), false);
        let now = chrono::Utc::now().timestamp();
        let set = cookie.write(vec![pending("old", now - TTL_SECS), pending("new", now)]);
        let text = set.to_str().unwrap();
        for attribute in [
            "sb_signin=",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=900",
        ] {
            assert!(text.contains(attribute), "{text}");
        }
        assert!(
            !text.contains("pkce") && !text.contains("\"v\""),
            "sealed: {text}"
        );
        let back = cookie.read(&request_with(&set));
        assert_eq!(back.len(), 1, "the expired one is gone");
        assert_eq!(back[0].state, "new");

        // Another instance key, or a forged value, reads as nothing.
        let other = PendingCookie::new(key(), false);
        assert!(other.read(&request_with(&set)).is_empty());
        let mut forged = HeaderMap::new();
        forged.insert(COOKIE, HeaderValue::from_static("sb_signin=AAAA"));
        assert!(cookie.read(&forged).is_empty());
    }

    #[test]
    fn only_the_newest_five_are_kept_and_none_removes_the_cookie() {
        let cookie = PendingCookie::new(key(), true);
        let now = chrono::Utc::now().timestamp();
        let all: Vec<_> = (0..7).map(|i| pending(&format!("s{i}"), now)).collect();
        let set = cookie.write(all);
        assert!(set.to_str().unwrap().starts_with("__Host-sb_signin="));
        assert!(set.to_str().unwrap().contains("Secure"));
        let back = cookie.read(&request_with(&set));
        let states: Vec<_> = back.iter().map(|p| p.state.as_str()).collect();
        assert_eq!(states, ["s2", "s3", "s4", "s5", "s6"]);
        let removed = cookie.write(Vec::new());
        assert!(
            removed.to_str().unwrap().contains("Max-Age=0"),
            "{removed:?}"
        );
    }
}
