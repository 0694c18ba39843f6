//! What may reach the app at all: a request must name Switchboard's own host (a page on another
//! name that resolves here, DNS rebinding, is refused), a request that changes something must come
//! from Switchboard's own pages or from no page at all (a script), and an API body must be of the
//! kind and size its endpoint takes. Runs before sign-in, so nothing is read from the database for
//! a request it refuses.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode, header};
use url::Url;

use crate::AppState;
use crate::auth::middleware::api_error;

/// The server functions that take a JSON body (`#[server(input = Json)]`); every other API
/// endpoint takes a form.
const JSON_ENDPOINTS: &[&str] = &["/api/chats/decide", "/api/chats/answer"];

/// Who may address Switchboard, and from where.
#[derive(Clone, Debug)]
pub struct Boundary {
    /// The public URL's origin (`https://chat.example.com`), which pages are served from.
    public_origin: String,
    /// The public URL's scheme: a page of Switchboard's is served over it, never the other.
    scheme: String,
    /// Host names (lower-case, no port) a request may name.
    hosts: Vec<String>,
    /// Local mode: loopback names (`localhost`, `127.0.0.1`, `[::1]`) are Switchboard's too.
    local: bool,
    /// The longest message a person may send, in characters.
    pub max_message_chars: usize,
    /// The most bytes an API request's body may have: room for the longest message.
    max_body: usize,
    /// How long a client may take to send a body.
    body_timeout: Duration,
}

impl Boundary {
    /// Switchboard at `public_url`, also answering to `extra_hosts` (names a proxy may pass on),
    /// taking messages of up to 100,000 characters, sent within 30 s.
    pub fn new(public_url: &Url, local: bool, extra_hosts: &[String]) -> Self {
        let mut hosts: Vec<String> = extra_hosts
            .iter()
            .map(|h| host_name(h).to_ascii_lowercase())
            .collect();
        if let Some(host) = public_url.host_str() {
            hosts.push(host.to_ascii_lowercase());
        }
        Self {
            public_origin: public_url.origin().ascii_serialization(),
            scheme: public_url.scheme().to_owned(),
            hosts,
            local,
            max_message_chars: 0,
            max_body: 0,
            body_timeout: Duration::ZERO,
        }
        .with_limits(100_000, Duration::from_secs(30))
    }

    /// Messages of up to `max_message_chars`, bodies sent within `body_timeout`.
    pub fn with_limits(mut self, max_message_chars: usize, body_timeout: Duration) -> Self {
        self.max_message_chars = max_message_chars;
        // Room for the longest message even as a form whose every character is a
        // percent-encoded 3-byte one, and for everything else a request carries.
        self.max_body = max_message_chars.saturating_mul(9).max(1 << 20) + (64 << 10);
        self.body_timeout = body_timeout;
        self
    }

    /// Whether `host` (a `Host` header: a name or address, maybe with a port) is Switchboard's.
    pub fn is_own_host(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        self.hosts.contains(&name)
            || (self.local && matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]"))
    }

    /// Whether a page at `origin` is one of Switchboard's: the public URL's origin, or the very
    /// host this request was sent to (already checked to be Switchboard's) over the public URL's
    /// scheme (a plain-http page of an https Switchboard is a network attacker's).
    fn is_own_origin(&self, origin: &str, host: &str) -> bool {
        if origin.eq_ignore_ascii_case(&self.public_origin) {
            return true;
        }
        origin
            .strip_prefix(&self.scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
    }

    /// Why a request may not go on, if it may not.
    fn refusal(&self, request: &Request) -> Option<Refusal> {
        let path = request.uri().path();
        // Load balancers probe health, and Prometheus scrapes, by address: these answer nothing
        // of anyone's (and `/metrics` only to its secret; see `metrics`).
        if matches!(path, "/healthz" | "/readyz")
            || (path == "/metrics" && request.method() == Method::GET)
        {
            return None;
        }
        let headers = request.headers();
        let host = request_host(request);
        match &host {
            Some(host) if self.is_own_host(host) => {}
            _ => return Some(Refusal::Host(host.unwrap_or_default())),
        }
        let host = host.unwrap_or_default();
        if changes_something(request.method()) {
            if let Some(origin) = header_text(headers, header::ORIGIN) {
                if !self.is_own_origin(origin, &host) {
                    return Some(Refusal::Origin(origin.to_owned()));
                }
            } else if let Some(site) = header_text(headers, "sec-fetch-site")
                && !matches!(site, "same-origin" | "none")
            {
                return Some(Refusal::Site(site.to_owned()));
            }
            if path.starts_with("/api/") {
                return self.body_refusal(path, headers);
            }
        }
        None
    }

    /// An API body of the wrong kind, or larger than allowed by its length.
    fn body_refusal(&self, path: &str, headers: &HeaderMap) -> Option<Refusal> {
        let length = header_text(headers, header::CONTENT_LENGTH)
            .and_then(|l| l.parse::<u64>().ok())
            .unwrap_or(0);
        if length > self.max_body as u64 {
            return Some(Refusal::TooLarge(self.max_body));
        }
        let kind = header_text(headers, header::CONTENT_TYPE)
            .map(|t| {
                t.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let json = JSON_ENDPOINTS.contains(&path);
        let fits = match kind.as_str() {
            "application/json" => json,
            "application/x-www-form-urlencoded" => !json,
            // A request without arguments has no body to describe.
            "" => !json && length == 0,
            _ => false,
        };
        (!fits).then(|| Refusal::BodyKind {
            endpoint: path.to_owned(),
            json,
        })
    }
}

/// Why a request was refused.
#[derive(Debug)]
enum Refusal {
    Host(String),
    Origin(String),
    Site(String),
    BodyKind { endpoint: String, json: bool },
    TooLarge(usize),
}

impl Refusal {
    fn response(&self, api: bool) -> Response {
        let (status, code, message) = match self {
            Refusal::Host(host) => (
                StatusCode::MISDIRECTED_REQUEST,
                "wrong_host",
                format!(
                    "This request was addressed to '{host}', which is not this Switchboard's address, so it was refused (a web page that points its own name at Switchboard is refused this way). Open Switchboard at its own address; if people reach it under another name, add that name to SWITCHBOARD_ALLOWED_HOSTS."
                ),
            ),
            Refusal::Origin(origin) => (
                StatusCode::FORBIDDEN,
                "cross_origin",
                format!(
                    "This request came from another site ({origin}), so Switchboard refused it: only its own pages may change anything. A script calling the API sends no Origin header, and a personal API token."
                ),
            ),
            Refusal::Site(site) => (
                StatusCode::FORBIDDEN,
                "cross_origin",
                format!(
                    "This request came from another site (Sec-Fetch-Site: {site}), so Switchboard refused it: only its own pages may change anything."
                ),
            ),
            Refusal::BodyKind { endpoint, json } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                if *json {
                    format!(
                        "{endpoint} takes a JSON body: send it with Content-Type: application/json."
                    )
                } else {
                    format!(
                        "{endpoint} takes its arguments as a form: send them with Content-Type: application/x-www-form-urlencoded."
                    )
                },
            ),
            Refusal::TooLarge(max) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "This request is larger than the {} KB Switchboard accepts. Send less at once (a long text can go in several messages).",
                    max / 1024
                ),
            ),
        };
        if api {
            api_error(status, code, &message)
        } else {
            crate::error_page(status, "Request refused", &message)
        }
    }
}

/// The gate: refuses requests for another host, state changes from other sites and API bodies
/// of the wrong kind or size; limits every API body to the most allowed, and every body to the
/// time a client has to send it.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let boundary = &state.boundary;
    if let Some(refusal) = boundary.refusal(&request) {
        let path = request.uri().path().to_owned();
        tracing::info!(?refusal, method = %request.method(), path, "request refused at the boundary");
        if matches!(refusal, Refusal::TooLarge(_)) {
            // A browser still sending its body may not read an answer that comes first: take the
            // body in (within the time a client has, and up to a bound), then answer.
            drain(request.into_body(), boundary.body_timeout).await;
        }
        return refusal.response(path.starts_with("/api/"));
    }
    let (parts, body) = request.into_parts();
    let body = deadline::Deadline::new(body, boundary.body_timeout);
    let body = if parts.uri.path().starts_with("/api/") {
        // Bodies sent without a length are cut at the same size while they are read.
        Body::new(http_body_util::Limited::new(body, boundary.max_body))
    } else {
        Body::new(body)
    };
    next.run(Request::from_parts(parts, body)).await
}

/// A body that must be read whole within a time from the request's start (tower-http's
/// `TimeoutBody` waits that long between chunks, which a client trickling a byte at a time never
/// reaches).
mod deadline {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use axum::body::{Body, Bytes};
    use http_body::{Frame, SizeHint};

    pub struct Deadline {
        body: Body,
        sleep: Pin<Box<tokio::time::Sleep>>,
    }

    impl Deadline {
        pub fn new(body: Body, within: Duration) -> Self {
            Self {
                body,
                sleep: Box::pin(tokio::time::sleep(within)),
            }
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the client took too long to send the request's body")]
    pub struct TooSlow;

    impl http_body::Body for Deadline {
        type Data = Bytes;
        type Error = axum::BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.body.is_end_stream() {
                return Poll::Ready(None);
            }
            if self.sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err(Box::new(TooSlow))));
            }
            Pin::new(&mut self.body)
                .poll_frame(cx)
                .map_err(axum::BoxError::from)
        }

        fn is_end_stream(&self) -> bool {
            self.body.is_end_stream()
        }

        fn size_hint(&self) -> SizeHint {
            self.body.size_hint()
        }
    }
}

/// The most of a refused body read before answering; beyond it the connection is just closed.
const DRAIN_AT_MOST: usize = 32 << 20;

/// Reads and drops a body, for at most `within` and [`DRAIN_AT_MOST`] bytes.
async fn drain(body: Body, within: Duration) {
    use http_body_util::BodyExt;
    let mut body = http_body_util::Limited::new(body, DRAIN_AT_MOST);
    let _ = tokio::time::timeout(within, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

/// Whether a request with this method may change something (anything but reading).
fn changes_something(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The host a request names: its `Host` header (HTTP/1.1), or its URI's authority (HTTP/2).
fn request_host(request: &Request) -> Option<String> {
    header_text(request.headers(), header::HOST)
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
}

fn header_text(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `name` of `name:port`, `[v6]` of `[v6]:port`.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boundary(public: &str, local: bool) -> Boundary {
        Boundary::new(&Url::parse(public).unwrap(), local, &[])
    }

    fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = http::Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn host_names_are_taken_without_their_port() {
        assert_eq!(host_name("localhost:3000"), "localhost");
        assert_eq!(host_name("[::1]:3000"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("chat.example.com"), "chat.example.com");
    }

    #[test]
    fn only_switchboards_own_names_are_answered() {
        let local = boundary("http://localhost:3000", true);
        for host in [
            "localhost:3000",
            "127.0.0.1:3000",
            "[::1]:3000",
            "LOCALHOST",
        ] {
            assert!(local.is_own_host(host), "{host}");
        }
        for host in [
            "rebind.evil.example:3000",
            "127.0.0.2:3000",
            "localhost.evil",
        ] {
            assert!(!local.is_own_host(host), "{host}");
        }
        let public = boundary("https://chat.example.com", false);
        assert!(public.is_own_host("chat.example.com"));
        assert!(
            !public.is_own_host("localhost:3000"),
            "loopback is not public"
        );
        let extra = Boundary::new(
            &Url::parse("https://chat.example.com").unwrap(),
            false,
            &["chat.internal:8080".into()],
        );
        assert!(extra.is_own_host("chat.internal"));
    }

    /// Health checks and the metrics are asked for by address (a pod's, a node's): any host.
    #[test]
    fn probes_and_scrapes_are_answered_at_any_address() {
        let public = boundary("https://chat.example.com", false);
        for path in ["/healthz", "/readyz", "/metrics"] {
            let probe = request(Method::GET, path, &[("host", "10.0.0.5:3000")]);
            assert!(public.refusal(&probe).is_none(), "{path}");
        }
        let other = request(Method::GET, "/settings", &[("host", "10.0.0.5:3000")]);
        assert!(public.refusal(&other).is_some());
        let post = request(Method::POST, "/metrics", &[("host", "10.0.0.5:3000")]);
        assert!(public.refusal(&post).is_some(), "only reading");
    }

    #[test]
    fn state_changes_from_other_sites_are_refused() {
        let b = boundary("http://localhost:3000", true);
        let post = |headers: &[(&str, &str)]| {
            let mut all = vec![
                ("host", "127.0.0.1:3000"),
                ("content-type", "application/x-www-form-urlencoded"),
            ];
            all.extend_from_slice(headers);
            b.refusal(&request(Method::POST, "/api/tokens/create", &all))
        };
        assert!(matches!(
            post(&[("origin", "https://evil.example")]),
            Some(Refusal::Origin(_))
        ));
        assert!(matches!(
            post(&[("origin", "null")]),
            Some(Refusal::Origin(_))
        ));
        // Another server on the same machine is another origin.
        assert!(matches!(
            post(&[("origin", "http://127.0.0.1:8080")]),
            Some(Refusal::Origin(_))
        ));
        assert!(matches!(
            post(&[("sec-fetch-site", "cross-site")]),
            Some(Refusal::Site(_))
        ));
        assert!(matches!(
            post(&[("sec-fetch-site", "same-site")]),
            Some(Refusal::Site(_))
        ));
        assert!(post(&[("origin", "http://127.0.0.1:3000")]).is_none());
        assert!(post(&[("origin", "http://localhost:3000")]).is_none());
        assert!(post(&[("sec-fetch-site", "same-origin")]).is_none());
        // A script sends neither.
        assert!(post(&[]).is_none());
        // Reading is never refused for its origin.
        let get = request(
            Method::GET,
            "/",
            &[
                ("host", "localhost:3000"),
                ("origin", "https://evil.example"),
            ],
        );
        assert!(b.refusal(&get).is_none());
    }

    #[test]
    fn a_plain_http_page_is_not_an_https_switchboards_own() {
        let b = boundary("https://chat.example.com", false);
        let post = |origin: &str| {
            b.refusal(&request(
                Method::POST,
                "/auth/logout",
                &[("host", "chat.example.com"), ("origin", origin)],
            ))
        };
        assert!(post("https://chat.example.com").is_none());
        assert!(matches!(
            post("http://chat.example.com"),
            Some(Refusal::Origin(_))
        ));
    }

    #[test]
    fn behind_a_proxy_the_public_origin_counts() {
        let b = Boundary::new(
            &Url::parse("https://chat.example.com").unwrap(),
            false,
            &["127.0.0.1".into()],
        );
        let post = request(
            Method::POST,
            "/auth/logout",
            &[
                ("host", "127.0.0.1:3000"),
                ("origin", "https://chat.example.com"),
            ],
        );
        assert!(b.refusal(&post).is_none());
    }

    #[test]
    fn api_bodies_must_be_of_their_endpoints_kind_and_size() {
        let b = boundary("http://localhost:3000", true);
        let most = b.max_body.to_string();
        let over = (b.max_body + 1).to_string();
        let post = |path: &str, kind: &str, length: &str| {
            b.refusal(&request(
                Method::POST,
                path,
                &[
                    ("host", "localhost:3000"),
                    ("content-type", kind),
                    ("content-length", length),
                ],
            ))
        };
        assert!(post("/api/chats/decide", "application/json", "10").is_none());
        assert!(matches!(
            post("/api/chats/decide", "text/plain", "10"),
            Some(Refusal::BodyKind { json: true, .. })
        ));
        assert!(matches!(
            post(
                "/api/chats/decide",
                "application/x-www-form-urlencoded",
                "10"
            ),
            Some(Refusal::BodyKind { json: true, .. })
        ));
        assert!(post("/api/chats/send", "application/x-www-form-urlencoded", "10").is_none());
        assert!(
            post(
                "/api/chats/send",
                "application/x-www-form-urlencoded; charset=UTF-8",
                "10"
            )
            .is_none()
        );
        assert!(matches!(
            post("/api/chats/send", "text/plain", "10"),
            Some(Refusal::BodyKind { json: false, .. })
        ));
        assert!(matches!(
            post("/api/chats/send", "multipart/form-data; boundary=x", "10"),
            Some(Refusal::BodyKind { .. })
        ));
        assert!(
            post(
                "/api/chats/send",
                "application/x-www-form-urlencoded",
                &most
            )
            .is_none()
        );
        assert!(matches!(
            post(
                "/api/chats/send",
                "application/x-www-form-urlencoded",
                &over
            ),
            Some(Refusal::TooLarge(_))
        ));
        assert!(
            b.max_body >= 9 * b.max_message_chars,
            "room for the longest message, percent-encoded"
        );
        // No arguments, no body.
        assert!(
            b.refusal(&request(
                Method::POST,
                "/api/auth/me",
                &[("host", "localhost:3000")]
            ))
            .is_none()
        );
    }
}
