//! Reaching Streamable HTTP servers: the HTTP clients (redirects followed within the origin
//! only; a personal server's client pinned to the addresses checked, and without proxies), and a
//! client that says why a message over the cap ended the connection.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, JsonRpcMessage, RequestId};
use rmcp::transport::common::client_side_sse::BoxedSseResponse;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};

use super::AddressPolicy;
use super::limits::size;

/// An HTTP client that tells `fault` when rmcp refused a message for its size (rmcp then ends the
/// session saying only "Transport closed"), `challenge` whether each answer was a 401 (with its
/// `WWW-Authenticate`) or not, and `refused` which request a 401 turned away (it was not run).
#[derive(Clone)]
pub struct Capped {
    pub client: rmcp_reqwest::Client,
    pub fault: Arc<dyn Fn(String) + Send + Sync>,
    pub challenge: Arc<dyn Fn(Option<String>) + Send + Sync>,
    pub refused: Arc<dyn Fn(RequestId) + Send + Sync>,
}

type Answer<T> = Result<T, StreamableHttpError<rmcp_reqwest::Error>>;

impl Capped {
    fn too_large(&self, max: usize) {
        (self.fault)(format!(
            "The server sent a message larger than {}, more than Switchboard takes; the connection was closed.",
            size(max)
        ));
    }

    /// An event stream that reports an event over `max` (rmcp's error says so, in words).
    fn watched(&self, stream: BoxedSseResponse, max: usize) -> BoxedSseResponse {
        let this = self.clone();
        stream
            .inspect(move |item| {
                if let Err(e) = item
                    && e.to_string().contains("exceeded the maximum size")
                {
                    this.too_large(max);
                }
            })
            .boxed()
    }

    fn checked<T>(&self, answer: Answer<T>) -> Answer<T> {
        match &answer {
            Err(StreamableHttpError::ResponseBodyTooLarge { max_size }) => {
                self.too_large(*max_size);
            }
            Err(StreamableHttpError::AuthRequired(asked)) => {
                (self.challenge)(Some(asked.www_authenticate_header.clone()));
                return answer;
            }
            _ => {}
        }
        (self.challenge)(None);
        answer
    }

    fn post_watched(
        &self,
        request: Option<RequestId>,
        answer: Answer<StreamableHttpPostResponse>,
        max: usize,
    ) -> Answer<StreamableHttpPostResponse> {
        if let (Some(id), Err(StreamableHttpError::AuthRequired(_))) = (request, &answer) {
            (self.refused)(id);
        }
        match self.checked(answer)? {
            StreamableHttpPostResponse::Sse(stream, session) => Ok(
                StreamableHttpPostResponse::Sse(self.watched(stream, max), session),
            ),
            other => Ok(other),
        }
    }
}

impl StreamableHttpClient for Capped {
    type Error = rmcp_reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Answer<StreamableHttpPostResponse> {
        let request = request_id(&message);
        let answer = self
            .client
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await;
        self.post_watched(request, answer, usize::MAX)
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Answer<StreamableHttpPostResponse> {
        let request = request_id(&message);
        let answer = self
            .client
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.post_watched(request, answer, max_sse_event_size)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Answer<()> {
        let answer = self
            .client
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await;
        self.checked(answer)
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Answer<BoxedSseResponse> {
        let answer = self
            .client
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await;
        Ok(self.watched(self.checked(answer)?, usize::MAX))
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Answer<BoxedSseResponse> {
        let answer = self
            .client
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        Ok(self.watched(self.checked(answer)?, max_sse_event_size))
    }
}

/// The HTTP client's own error under a failed handshake, with its causes (a refused redirect says
/// why there): rmcp's errors do not lead to it through `source()`.
pub fn http_cause(error: &rmcp::service::ClientInitializeError) -> Option<String> {
    use rmcp::transport::streamable_http_client::StreamableHttpError;
    let rmcp::service::ClientInitializeError::TransportError { error, .. } = handshake(error)
    else {
        return None;
    };
    match error
        .error
        .downcast_ref::<StreamableHttpError<rmcp_reqwest::Error>>()?
    {
        StreamableHttpError::Client(e) => Some(crate::error::chain(e)),
        _ => None,
    }
}

/// The failure of the handshake itself: a server that did not know the newest protocol's
/// discovery was met with `initialize`, and what that met is what counts.
fn handshake(
    error: &rmcp::service::ClientInitializeError,
) -> &rmcp::service::ClientInitializeError {
    match error {
        rmcp::service::ClientInitializeError::LegacyFallbackFailed { fallback, .. } => {
            fallback.as_ref()
        }
        other => other,
    }
}

/// The id of a request message (none for notifications and responses).
fn request_id(message: &ClientJsonRpcMessage) -> Option<RequestId> {
    match message {
        JsonRpcMessage::Request(request) => Some(request.id.clone()),
        _ => None,
    }
}

/// The `WWW-Authenticate` challenge of a handshake the server answered with 401.
pub fn challenge(error: &rmcp::service::ClientInitializeError) -> Option<String> {
    let rmcp::service::ClientInitializeError::TransportError { error, .. } = handshake(error)
    else {
        return None;
    };
    match error
        .error
        .downcast_ref::<StreamableHttpError<rmcp_reqwest::Error>>()?
    {
        StreamableHttpError::AuthRequired(asked) => Some(asked.www_authenticate_header.clone()),
        _ => None,
    }
}

/// A client for one request of a sign-in (discovery, registration, tokens): pinned to checked
/// addresses like a personal server's when `policy` is given; following redirects within the
/// origin when `follow`, none else.
pub async fn oauth_client(
    policy: Option<&AddressPolicy>,
    url: &str,
    follow: bool,
) -> std::result::Result<rmcp_reqwest::Client, String> {
    let mut builder = builder();
    if !follow {
        builder = builder.redirect(rmcp_reqwest::redirect::Policy::none());
    }
    if let Some(policy) = policy {
        builder = pin(builder, policy, url).await?;
    }
    built(builder, url)
}

/// The HTTP client rmcp's Streamable HTTP transport is built on.
pub fn http_client() -> rmcp_reqwest::Client {
    builder().build().unwrap_or_default()
}

fn builder() -> rmcp_reqwest::ClientBuilder {
    // Its TLS uses the process's rustls provider: ring, as elsewhere (a no-op once installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    rmcp_reqwest::Client::builder()
        .tcp_nodelay(true)
        .redirect(same_origin())
}

/// Redirects are followed within the URL's origin only (`/mcp` to `/mcp/`, as some servers
/// answer): another origin would get the request's headers and body, and is not where the
/// server was checked or approved.
fn same_origin() -> rmcp_reqwest::redirect::Policy {
    rmcp_reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(|url| url.origin());
        if attempt.previous().len() > 5 {
            attempt.error("the server redirected more than 5 times")
        } else if first.is_some_and(|origin| origin != attempt.url().origin()) {
            let to = attempt.url().origin().ascii_serialization();
            attempt.error(format!(
                "the server redirected to another origin ({to}), which Switchboard does not follow; use the address it redirects to, if you trust it"
            ))
        } else {
            attempt.follow()
        }
    })
}

/// A client for a personal server: it goes only to the addresses checked now (a name that
/// resolves elsewhere later is not looked up again), not through a proxy (which would look the
/// name up itself), and follows redirects within the same origin only.
pub async fn pinned_client(
    policy: &AddressPolicy,
    url: &str,
) -> std::result::Result<rmcp_reqwest::Client, String> {
    built(pin(builder(), policy, url).await?, url)
}

/// `builder` going only to the addresses `policy` allows for `url` now (checked once: a name
/// that resolves elsewhere later is not looked up again), and not through a proxy.
async fn pin(
    builder: rmcp_reqwest::ClientBuilder,
    policy: &AddressPolicy,
    url: &str,
) -> std::result::Result<rmcp_reqwest::ClientBuilder, String> {
    let (name, addresses) = policy.check(url).await?;
    let mut builder = builder.no_proxy();
    if let Some(name) = name {
        builder = builder.resolve_to_addrs(&name, &addresses);
    }
    Ok(builder)
}

fn built(
    builder: rmcp_reqwest::ClientBuilder,
    url: &str,
) -> std::result::Result<rmcp_reqwest::Client, String> {
    builder
        .build()
        .map_err(|e| format!("Cannot set up a connection to {url}: {e}."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    /// Set in the child process of [`a_personal_servers_client_ignores_proxy_variables`].
    const PROXIED: &str = "SWITCHBOARD_TEST_PROXIED_CHILD";

    /// Run alone, in a child process whose environment names a proxy (a test must not change its
    /// own process's environment): the pinned client reaches the server directly.
    #[tokio::test]
    async fn in_a_proxied_environment() {
        if std::env::var_os(PROXIED).is_none() {
            return;
        }
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut stream, _) = server.accept().unwrap();
            let mut request = [0; 4096];
            let _ = stream.read(&mut request).unwrap();
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\ndirect",
                )
                .unwrap();
        });
        let url = format!("http://localhost:{port}/mcp");
        let policy = AddressPolicy::parse("127.0.0.0/8,::1").unwrap();
        let client = pinned_client(&policy, &url).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), async {
            client.get(&url).send().await?.text().await
        })
        .await
        .expect("an answer within 5 s")
        .unwrap();
        assert_eq!(answer, "direct");
    }

    #[test]
    fn a_personal_servers_client_ignores_proxy_variables() {
        // A proxy would resolve the name itself, wherever it leads by then.
        let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "mcp::remote::tests::in_a_proxied_environment",
                "--nocapture",
            ])
            .env(PROXIED, "1")
            .env("HTTP_PROXY", &proxy_url)
            .env("http_proxy", &proxy_url)
            .env("ALL_PROXY", &proxy_url)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&child.stdout).into_owned()
            + &String::from_utf8_lossy(&child.stderr);
        assert!(child.status.success(), "{said}");
        assert!(said.contains("1 passed"), "{said}");
        proxy.set_nonblocking(true).unwrap();
        assert!(proxy.accept().is_err(), "nothing went through the proxy");
    }
}
