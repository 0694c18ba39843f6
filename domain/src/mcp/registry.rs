//! Where tool servers are described: the servers file (read at start-up), the registry that
//! administrators keep in the database, and the personal servers people add for themselves.
//! Secrets (bearer tokens, header values, secret environment variables) are stored encrypted and
//! never leave this module except inside a [`Transport`] on its way to a connection.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::secrets::SecretKey;
use crate::{Database, Error, Result};

/// Where a server's description comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The servers file (`SWITCHBOARD_MCP_SERVERS_FILE`): changed by editing the file.
    #[default]
    File,
    /// The registry an administrator keeps on the admin page.
    Admin,
    /// A person's own server, visible to them alone.
    Personal,
}

/// A tool server, as an administrator (or, for a personal one, its owner) describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    /// Short, stable name used in URLs and in tool names (`[a-z0-9-]`); personal servers' start
    /// with `my-`, so they never collide with the registry's.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(flatten)]
    pub transport: Transport,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The groups whose members may see and use it (administrators always may); none: everyone.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(skip)]
    pub source: Source,
    /// Why the server cannot be used as stored (its secrets do not decrypt with this key).
    #[serde(skip)]
    pub problem: Option<String>,
}

fn yes() -> bool {
    true
}

impl ServerSpec {
    /// A server of the servers file named after its id, switched on (for tests and tools that
    /// build a registry in code).
    pub fn new(id: &str, transport: Transport) -> Self {
        Self {
            id: id.into(),
            name: id.into(),
            description: String::new(),
            transport,
            enabled: true,
            groups: Vec::new(),
            source: Source::File,
            problem: None,
        }
    }
}

/// How Switchboard reaches a server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "snake_case", deny_unknown_fields)]
pub enum Transport {
    /// A process Switchboard starts on its own machine, speaking MCP on stdin/stdout
    /// (administrators only).
    Stdio {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Environment variables whose values are secrets: stored encrypted, never shown back.
        #[serde(default)]
        secret_env: BTreeMap<String, String>,
    },
    /// A Streamable HTTP endpoint. Header values, the token and the client secret are secrets.
    Http {
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        bearer_token: Option<String>,
        /// For a server whose people sign in (OAuth): the client an administrator registered for
        /// Switchboard at its authorization server, when that server takes no registrations.
        #[serde(default)]
        oauth_client_id: Option<String>,
        #[serde(default)]
        oauth_client_secret: Option<String>,
    },
}

/// Never prints environment values, header values or tokens: they may be secrets (even a plain
/// environment variable may hold one that was not marked so).
impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Stdio {
                command,
                args,
                env,
                secret_env,
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", &env.keys().collect::<Vec<_>>())
                .field("secret_env", &secret_env.keys().collect::<Vec<_>>())
                .finish(),
            Transport::Http {
                url,
                headers,
                bearer_token,
                oauth_client_id,
                oauth_client_secret,
            } => f
                .debug_struct("Http")
                .field("url", url)
                .field("headers", &headers.keys().collect::<Vec<_>>())
                .field("bearer_token", &bearer_token.is_some())
                .field("oauth_client_id", oauth_client_id)
                .field("oauth_client_secret", &oauth_client_secret.is_some())
                .finish(),
        }
    }
}

/// A transport as it may be shown and stored in the clear: the values of secrets are left out,
/// only their names (and whether there is a token) remain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "snake_case")]
pub enum PublicTransport {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        secret_env: Vec<String>,
    },
    Http {
        url: String,
        headers: Vec<String>,
        bearer_token: bool,
        // Left out when unset: the clear form is part of a server's key (see
        // `agent::server_key`), which must not change for the servers that have none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        oauth_client_id: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        oauth_client_secret: bool,
    },
}

/// The secret values of a transport, as they are encrypted.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Secrets {
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    bearer_token: Option<String>,
    #[serde(default)]
    oauth_client_secret: Option<String>,
}

impl Transport {
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Stdio { .. } => "stdio",
            Transport::Http { .. } => "http",
        }
    }

    pub fn public(&self) -> PublicTransport {
        match self {
            Transport::Stdio {
                command,
                args,
                env,
                secret_env,
            } => PublicTransport::Stdio {
                command: command.clone(),
                args: args.clone(),
                env: env.clone(),
                secret_env: secret_env.keys().cloned().collect(),
            },
            Transport::Http {
                url,
                headers,
                bearer_token,
                oauth_client_id,
                oauth_client_secret,
            } => PublicTransport::Http {
                url: url.clone(),
                headers: headers.keys().cloned().collect(),
                bearer_token: bearer_token.is_some(),
                oauth_client_id: oauth_client_id.clone(),
                oauth_client_secret: oauth_client_secret.is_some(),
            },
        }
    }

    fn secrets(&self) -> Secrets {
        match self {
            Transport::Stdio { secret_env, .. } => Secrets {
                env: secret_env.clone(),
                ..Secrets::default()
            },
            Transport::Http {
                headers,
                bearer_token,
                oauth_client_secret,
                ..
            } => Secrets {
                headers: headers.clone(),
                bearer_token: bearer_token.clone(),
                oauth_client_secret: oauth_client_secret.clone(),
                ..Secrets::default()
            },
        }
    }

    fn assemble(public: PublicTransport, mut secrets: Secrets) -> Self {
        match public {
            PublicTransport::Stdio {
                command,
                args,
                env,
                secret_env,
            } => Transport::Stdio {
                command,
                args,
                env,
                secret_env: secret_env
                    .into_iter()
                    .map(|k| {
                        let v = secrets.env.remove(&k).unwrap_or_default();
                        (k, v)
                    })
                    .collect(),
            },
            PublicTransport::Http {
                url,
                headers,
                bearer_token,
                oauth_client_id,
                oauth_client_secret,
            } => Transport::Http {
                url,
                headers: headers
                    .into_iter()
                    .map(|k| {
                        let v = secrets.headers.remove(&k).unwrap_or_default();
                        (k, v)
                    })
                    .collect(),
                bearer_token: bearer_token.then(|| secrets.bearer_token.unwrap_or_default()),
                oauth_client_id,
                oauth_client_secret: oauth_client_secret
                    .then(|| secrets.oauth_client_secret.unwrap_or_default()),
            },
        }
    }

    /// For an edit: a secret left empty keeps the value it had (the form never shows it back).
    fn keep_secrets_of(&mut self, old: &Transport) {
        match (self, old) {
            (
                Transport::Stdio { secret_env, .. },
                Transport::Stdio {
                    secret_env: old, ..
                },
            ) => keep(secret_env, old),
            (
                Transport::Http {
                    headers,
                    bearer_token,
                    oauth_client_secret,
                    ..
                },
                Transport::Http {
                    headers: old_headers,
                    bearer_token: old_token,
                    oauth_client_secret: old_secret,
                    ..
                },
            ) => {
                keep(headers, old_headers);
                if bearer_token.as_deref() == Some("") {
                    *bearer_token = old_token.clone();
                }
                if oauth_client_secret.as_deref() == Some("") {
                    *oauth_client_secret = old_secret.clone();
                }
            }
            _ => {}
        }
    }

    /// Checks what a person typed, with messages that say what to change.
    fn validate(&self) -> Result<()> {
        match self {
            Transport::Stdio {
                command,
                secret_env,
                ..
            } => {
                if command.trim().is_empty() {
                    return invalid("A stdio server needs a command to start.");
                }
                if secret_env.values().any(String::is_empty) {
                    return invalid("Every secret environment variable needs a value.");
                }
            }
            Transport::Http {
                url,
                headers,
                bearer_token,
                oauth_client_id,
                oauth_client_secret,
            } => {
                check_url(url).map_err(Error::Invalid)?;
                if oauth_client_id
                    .as_deref()
                    .is_some_and(|id| id.trim().is_empty() || id.len() > MAX_HEADER_VALUE)
                {
                    return invalid("The OAuth client id is empty or too long.");
                }
                if oauth_client_secret.is_some() && oauth_client_id.is_none() {
                    return invalid("An OAuth client secret needs its client id.");
                }
                check_headers(headers).map_err(Error::Invalid)?;
                match bearer_token.as_deref() {
                    Some("") => return invalid("The bearer token is empty."),
                    Some(token)
                        if token.len() > MAX_HEADER_VALUE
                            || http::HeaderValue::try_from(format!("Bearer {token}")).is_err() =>
                    {
                        return invalid(&format!(
                            "The bearer token must be printable text of at most {MAX_HEADER_VALUE} bytes."
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Checks a Streamable HTTP server's URL: http or https, and no credentials in it (they would be
/// shown and stored in the clear).
pub(super) fn check_url(url: &str) -> std::result::Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("'{url}' is not a valid URL ({e})."))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("The server's URL must start with http:// or https://.".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("The server's URL holds a user name or password: remove them from the URL and put the secret in the bearer token field (or a header), where it is stored encrypted.".into());
    }
    Ok(())
}

/// Most headers a server may be given, and their sizes (in bytes).
pub const MAX_HEADERS: usize = 20;
const MAX_HEADER_NAME: usize = 100;
const MAX_HEADER_VALUE: usize = 8 * 1024;

/// Headers that say where a request goes or how it is framed, or that the MCP transport sets
/// itself: a server's configured headers may not replace them.
fn reserved_header(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    match name.as_str() {
        "authorization" => Some("Use the bearer token field for the Authorization header."),
        "host" => Some("The Host header follows from the URL."),
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
        | "expect" => Some("It is a hop-by-hop header, which the connection itself sets."),
        "content-length" | "content-type" | "content-encoding" => {
            Some("It describes the request's body, which Switchboard writes.")
        }
        "accept" | "last-event-id" => Some("The MCP transport sets it."),
        _ if name.starts_with("proxy-") => {
            Some("Proxy headers are for proxies, not for the server.")
        }
        _ if name.starts_with("mcp-") => Some("The MCP transport sets it."),
        _ => None,
    }
}

/// Checks a server's configured headers: valid, not reserved, and not too many or too large.
pub(super) fn check_headers(headers: &BTreeMap<String, String>) -> std::result::Result<(), String> {
    if headers.len() > MAX_HEADERS {
        return Err(format!(
            "A server may be given at most {MAX_HEADERS} headers ({} here).",
            headers.len()
        ));
    }
    for (name, value) in headers {
        let shown: String = name.chars().take(MAX_HEADER_NAME).collect();
        if name.len() > MAX_HEADER_NAME {
            return Err(format!(
                "The header name '{shown}…' is longer than {MAX_HEADER_NAME} characters."
            ));
        }
        if http::HeaderName::try_from(name.as_str()).is_err() {
            return Err(format!("'{shown}' is not a valid header name."));
        }
        if let Some(why) = reserved_header(name) {
            return Err(format!("The header '{shown}' cannot be set here. {why}"));
        }
        if value.len() > MAX_HEADER_VALUE {
            return Err(format!(
                "The value of the header '{shown}' is longer than {MAX_HEADER_VALUE} bytes."
            ));
        }
        if value.is_empty() || http::HeaderValue::try_from(value.as_str()).is_err() {
            return Err(format!("The header '{shown}' needs a valid value."));
        }
    }
    Ok(())
}

fn keep(new: &mut BTreeMap<String, String>, old: &BTreeMap<String, String>) {
    for (name, value) in new.iter_mut() {
        if value.is_empty()
            && let Some(previous) = old.get(name)
        {
            value.clone_from(previous);
        }
    }
}

fn invalid<T>(message: &str) -> Result<T> {
    Err(Error::Invalid(message.to_owned()))
}

/// Checks a server id: 1 to 40 of `a-z`, `0-9` and `-`.
pub fn check_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= 40
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "The MCP server id '{id}' is not valid: use 1 to 40 of a-z, 0-9 and '-'."
        )))
    }
}

/// The prefix of every personal server's id.
pub const PERSONAL_PREFIX: &str = "my-";

/// The servers file: the servers it lists, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    servers: Vec<ServerSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default, rename = "server")]
    servers: Vec<ServerSpec>,
}

impl Registry {
    pub fn new(servers: Vec<ServerSpec>) -> Result<Self> {
        let mut seen = HashSet::new();
        for server in &servers {
            check_id(&server.id)?;
            server.transport.validate().map_err(|e| {
                Error::Invalid(format!("The MCP server '{}' is not usable: {e}", server.id))
            })?;
            if server.id.starts_with(PERSONAL_PREFIX) {
                return Err(Error::Invalid(format!(
                    "The MCP server id '{}' starts with '{PERSONAL_PREFIX}', which is kept for personal servers.",
                    server.id
                )));
            }
            if !seen.insert(server.id.as_str()) {
                return Err(Error::Invalid(format!(
                    "Two MCP servers have the id '{}'.",
                    server.id
                )));
            }
        }
        Ok(Self { servers })
    }

    /// Reads a registry file: TOML with one `[[server]]` table per server.
    pub fn from_toml(text: &str) -> Result<Self> {
        let file: RegistryFile = toml::from_str(text)
            .map_err(|e| Error::Invalid(format!("The MCP servers file is not valid: {e}")))?;
        Self::new(file.servers)
    }

    pub fn servers(&self) -> &[ServerSpec] {
        &self.servers
    }

    pub fn get(&self, id: &str) -> Option<&ServerSpec> {
        self.servers.iter().find(|s| s.id == id)
    }
}

/// A server to add or change, as a form gives it. On an edit, a secret left empty keeps its value.
#[derive(Clone, Debug)]
pub struct ServerInput {
    pub id: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    /// The groups it is limited to (registry servers only; none: everyone).
    pub groups: Vec<String>,
    pub transport: Transport,
}

impl ServerInput {
    fn validate(&self) -> Result<()> {
        check_id(&self.id)?;
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return invalid("A server needs a name of 1 to 100 characters.");
        }
        if self.description.chars().count() > 1000 {
            return invalid("The description is longer than 1,000 characters.");
        }
        for group in &self.groups {
            crate::access::check_group_name(group)?;
        }
        self.transport.validate()
    }
}

/// Lines of `NAME<sep>value` (environment variables with `=`, headers with `:`), as typed in a
/// form; blank lines are skipped.
pub fn parse_pairs(text: &str, separator: char, what: &str) -> Result<BTreeMap<String, String>> {
    let mut pairs = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(separator) else {
            return Err(Error::Invalid(format!(
                "'{line}' is not a {what}: write NAME{separator}value, one a line."
            )));
        };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(Error::Invalid(format!(
                "'{line}' has no valid {what} name."
            )));
        }
        if pairs
            .insert(name.to_owned(), value.trim().to_owned())
            .is_some()
        {
            return Err(Error::Invalid(format!(
                "The {what} '{name}' is given twice."
            )));
        }
    }
    Ok(pairs)
}

/// A name made into an id: lower case, runs of anything else as one '-'.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out: String = out.trim_end_matches('-').chars().take(30).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() { "server".into() } else { out }
}

/// A server as stored in the database.
#[derive(Debug)]
struct Row {
    id: Uuid,
    owner_id: Option<Uuid>,
    slug: String,
    name: String,
    description: String,
    enabled: bool,
    groups: Vec<String>,
    transport: serde_json::Value,
    secrets: Option<Vec<u8>>,
}

impl Row {
    fn into_spec(self, key: &SecretKey) -> ServerSpec {
        let source = if self.owner_id.is_some() {
            Source::Personal
        } else {
            Source::Admin
        };
        let mut problem = None;
        let public: PublicTransport = match serde_json::from_value(self.transport) {
            Ok(public) => public,
            Err(e) => {
                problem = Some(format!(
                    "The stored server description cannot be read: {e}."
                ));
                PublicTransport::Http {
                    url: String::new(),
                    headers: Vec::new(),
                    bearer_token: false,
                    oauth_client_id: None,
                    oauth_client_secret: false,
                }
            }
        };
        let secrets = match self.secrets {
            None => Secrets::default(),
            Some(sealed) => match key.open(self.id.as_bytes(), &sealed).and_then(|plain| {
                serde_json::from_slice(&plain).map_err(|e| Error::Invalid(e.to_string()))
            }) {
                Ok(secrets) => secrets,
                Err(e) => {
                    tracing::error!(server = %self.slug, "cannot read a tool server's secrets: {e}");
                    problem = Some(e.to_string());
                    Secrets::default()
                }
            },
        };
        ServerSpec {
            id: self.slug,
            name: self.name,
            description: self.description,
            transport: Transport::assemble(public, secrets),
            enabled: self.enabled,
            groups: self.groups,
            source,
            problem,
        }
    }
}

/// The servers stored for `user`: the administrators' registry, then the user's own (`None`: the
/// registry alone).
pub(super) async fn stored(
    db: &Database,
    key: &SecretKey,
    user: Option<Uuid>,
) -> Result<Vec<ServerSpec>> {
    let rows = sqlx::query_as!(
        Row,
        "SELECT id, owner_id, slug, name, description, enabled, groups, transport, secrets
         FROM mcp_servers
         WHERE owner_id IS NULL OR owner_id = $1
         ORDER BY owner_id NULLS FIRST, lower(name), slug",
        user
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|row| row.into_spec(key)).collect())
}

/// One stored server the user may see: of the registry, or their own.
pub(super) async fn find(
    db: &Database,
    key: &SecretKey,
    user: Uuid,
    id: &str,
) -> Result<Option<ServerSpec>> {
    let row = sqlx::query_as!(
        Row,
        "SELECT id, owner_id, slug, name, description, enabled, groups, transport, secrets
         FROM mcp_servers
         WHERE slug = $2 AND (owner_id IS NULL OR owner_id = $1)",
        user,
        id
    )
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|row| row.into_spec(key)))
}

/// Adds a server (`previous` None) or changes the one with the id `previous`, of the registry
/// (`owner` None) or of that owner. False when there is no such server to change.
pub(super) async fn save(
    db: &Database,
    key: &SecretKey,
    owner: Option<Uuid>,
    previous: Option<&str>,
    mut input: ServerInput,
) -> Result<bool> {
    input.name = input.name.trim().to_owned();
    input.description = input.description.trim().to_owned();
    let mut tx = db.pool().begin().await?;
    let row_id = match previous {
        None => Uuid::new_v4(),
        Some(previous) => {
            let Some(row) = sqlx::query_as!(
                Row,
                "SELECT id, owner_id, slug, name, description, enabled, groups, transport, secrets
                 FROM mcp_servers
                 WHERE slug = $1 AND owner_id IS NOT DISTINCT FROM $2
                 FOR UPDATE",
                previous,
                owner
            )
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Ok(false);
            };
            let id = row.id;
            let old = row.into_spec(key);
            if old.problem.is_none() {
                input.transport.keep_secrets_of(&old.transport);
            }
            id
        }
    };
    write(&mut tx, key, owner, row_id, &input).await?;
    if let Some(previous) = previous.filter(|p| *p != input.id) {
        // Those connected keep their connection under the new id.
        sqlx::query!(
            "UPDATE mcp_connections SET server_id = $1
             WHERE server_id = $2 AND ($3::uuid IS NULL OR user_id = $3)",
            input.id,
            previous,
            owner
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Adds a personal server for `owner` unless they have `max` of their own already. Its id is
/// `input.id`, or that with `-2`, `-3`, ... when they use it already. Returns the id given.
pub(super) async fn add_personal(
    db: &Database,
    key: &SecretKey,
    owner: Uuid,
    max: usize,
    mut input: ServerInput,
) -> Result<String> {
    input.name = input.name.trim().to_owned();
    input.description = input.description.trim().to_owned();
    let mut tx = db.pool().begin().await?;
    // Locking the owner's row serialises their adds, so the count holds until the insert commits.
    sqlx::query!("SELECT id FROM users WHERE id = $1 FOR UPDATE", owner)
        .fetch_one(&mut *tx)
        .await?;
    let taken: HashSet<String> =
        sqlx::query_scalar!("SELECT slug FROM mcp_servers WHERE owner_id = $1", owner)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    if taken.len() >= max {
        return Err(Error::Conflict(format!(
            "You have {max} servers of your own already. Remove one you no longer use first."
        )));
    }
    let base = input.id.clone();
    input.id = std::iter::once(base.clone())
        .chain((2..).map(|n| format!("{base}-{n}")))
        .find(|id| !taken.contains(id))
        .expect("an unused id");
    write(&mut tx, key, Some(owner), Uuid::new_v4(), &input).await?;
    tx.commit().await?;
    Ok(input.id)
}

/// Checks a server and writes its row (a new one, or the one with `row_id`).
async fn write(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    key: &SecretKey,
    owner: Option<Uuid>,
    row_id: Uuid,
    input: &ServerInput,
) -> Result<()> {
    input.validate()?;
    let public = serde_json::to_value(input.transport.public()).expect("serialisable");
    let secrets = input.transport.secrets();
    let sealed =
        (!secrets.env.is_empty() || !secrets.headers.is_empty() || secrets.bearer_token.is_some())
            .then(|| {
                key.seal(
                    row_id.as_bytes(),
                    &serde_json::to_vec(&secrets).expect("serialisable"),
                )
            });
    let saved = sqlx::query!(
        "INSERT INTO mcp_servers (id, owner_id, slug, name, description, enabled, transport, secrets,
                                  groups)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (id) DO UPDATE SET
             slug = EXCLUDED.slug, name = EXCLUDED.name, description = EXCLUDED.description,
             enabled = EXCLUDED.enabled, transport = EXCLUDED.transport, secrets = EXCLUDED.secrets,
             groups = EXCLUDED.groups, updated_at = now()",
        row_id,
        owner,
        input.id,
        input.name,
        input.description,
        input.enabled,
        public,
        sealed,
        &input.groups
    )
    .execute(&mut **tx)
    .await;
    match saved {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::Conflict(format!(
            "A server with the id '{}' exists already: choose another.",
            input.id
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Removes a stored server (of the registry, or of its owner) and everyone's wish to be connected
/// to it. False when there was none.
pub(super) async fn delete(db: &Database, owner: Option<Uuid>, id: &str) -> Result<bool> {
    let mut tx = db.pool().begin().await?;
    let deleted = sqlx::query!(
        "DELETE FROM mcp_servers WHERE slug = $1 AND owner_id IS NOT DISTINCT FROM $2",
        id,
        owner
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if deleted > 0 {
        sqlx::query!(
            "DELETE FROM mcp_connections WHERE server_id = $1 AND ($2::uuid IS NULL OR user_id = $2)",
            id,
            owner
        )
        .execute(&mut *tx)
        .await?;
        // People's sign-ins to it go with it (a server made again with its id asks again).
        sqlx::query!(
            "DELETE FROM mcp_sign_ins WHERE server_id = $1 AND ($2::uuid IS NULL OR user_id = $2)",
            id,
            owner
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(deleted > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_lines_become_pairs_with_clear_errors() {
        let env = parse_pairs("A=1\n\n B = two words \n", '=', "variable").unwrap();
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "two words");
        let headers = parse_pairs("X-Api-Key: abc:def", ':', "header").unwrap();
        assert_eq!(headers["X-Api-Key"], "abc:def");
        let error = parse_pairs("no separator", '=', "variable")
            .unwrap_err()
            .to_string();
        assert!(error.contains("NAME=value"), "{error}");
        assert!(parse_pairs("A=1\nA=2", '=', "variable").is_err());
    }

    fn http_with(url: &str, headers: &[(&str, &str)], token: Option<&str>) -> Transport {
        Transport::Http {
            url: url.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            bearer_token: token.map(str::to_owned),
            oauth_client_id: None,
            oauth_client_secret: None,
        }
    }

    fn refusal(transport: Transport) -> String {
        transport.validate().unwrap_err().to_string()
    }

    #[test]
    fn headers_that_steer_or_frame_a_request_are_refused() {
        let url = "https://mcp.example.com/mcp";
        for (name, why) in [
            ("Host", "follows from the URL"),
            ("authorization", "bearer token field"),
            ("Connection", "hop-by-hop"),
            ("Keep-Alive", "hop-by-hop"),
            ("Proxy-Authorization", "proxies"),
            ("proxy-connection", "proxies"),
            ("TE", "hop-by-hop"),
            ("Trailer", "hop-by-hop"),
            ("Transfer-Encoding", "hop-by-hop"),
            ("Upgrade", "hop-by-hop"),
            ("Content-Length", "body"),
            ("Mcp-Session-Id", "MCP transport"),
        ] {
            let error = refusal(http_with(url, &[(name, "x")], None));
            assert!(
                error.contains(name) && error.contains(why),
                "{name}: {error}"
            );
        }
        let long_value = "v".repeat(MAX_HEADER_VALUE + 1);
        let error = refusal(http_with(url, &[("X-Big", &long_value)], None));
        assert!(error.contains("longer than"), "{error}");
        let long_name = "X".repeat(MAX_HEADER_NAME + 1);
        let error = refusal(http_with(url, &[(&long_name, "v")], None));
        assert!(error.contains("longer than"), "{error}");
        let many: Vec<(String, String)> = (0..=MAX_HEADERS)
            .map(|i| (format!("X-H{i}"), "v".to_owned()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let error = refusal(http_with(url, &many, None));
        assert!(error.contains("at most 20 headers"), "{error}");
        let error = refusal(http_with(url, &[], Some(&"t".repeat(MAX_HEADER_VALUE + 1))));
        assert!(error.contains("bearer token"), "{error}");
        let error = refusal(http_with(url, &[], Some("line\nbreak")));
        assert!(error.contains("bearer token"), "{error}");

        http_with(url, &[("X-Api-Key", "k"), ("Cookie", "a=b")], Some("t0ken"))
            .validate()
            .unwrap();
    }

    #[test]
    fn a_url_with_credentials_is_refused_with_where_to_put_them() {
        for url in [
            "https://user:pass@mcp.example.com/mcp",
            "https://token@mcp.example.com/mcp",
            "http://:secret@mcp.example.com/",
        ] {
            let error = refusal(http_with(url, &[], None));
            assert!(error.contains("bearer token field"), "{url}: {error}");
            assert!(
                !error.contains(url),
                "the secret is not shown back: {error}"
            );
        }
        let file = Registry::from_toml(
            "[[server]]\nid = \"x\"\nname = \"x\"\ntransport = \"http\"\nurl = \"https://a:b@mcp.example.com/\"",
        )
        .unwrap_err()
        .to_string();
        assert!(
            file.contains("'x'") && file.contains("bearer token field"),
            "{file}"
        );
        let file = Registry::from_toml(
            "[[server]]\nid = \"x\"\nname = \"x\"\ntransport = \"http\"\nurl = \"https://mcp.example.com/\"\nheaders = { Host = \"internal\" }",
        )
        .unwrap_err()
        .to_string();
        assert!(file.contains("Host"), "{file}");
    }

    /// A server's clear form is part of its key: one without an OAuth client reads as it did
    /// before clients could be set, so its people's standing approvals hold.
    #[test]
    fn the_clear_form_of_a_server_without_a_client_is_as_it_was() {
        let transport = http_with("https://mcp.example.com/mcp", &[("X-Key", "v")], Some("t"));
        assert_eq!(
            serde_json::to_value(transport.public()).unwrap(),
            serde_json::json!({
                "transport": "http",
                "url": "https://mcp.example.com/mcp",
                "headers": ["X-Key"],
                "bearer_token": true,
            })
        );
    }

    #[test]
    fn names_become_ids() {
        assert_eq!(slug("My Tools!"), "my-tools");
        assert_eq!(slug("  ...  "), "server");
        assert_eq!(slug("Ünïcode Sérver 2"), "n-code-s-rver-2");
    }

    #[test]
    fn the_public_form_keeps_names_and_drops_secret_values() {
        let transport = Transport::Http {
            url: "https://mcp.example.com/mcp".into(),
            headers: BTreeMap::from([("X-Api-Key".into(), "s3cret".into())]),
            bearer_token: Some("t0ken".into()),
            oauth_client_id: Some("switchboard".into()),
            oauth_client_secret: Some("cl1ent".into()),
        };
        let public = serde_json::to_string(&transport.public()).unwrap();
        assert!(
            !public.contains("s3cret") && !public.contains("t0ken") && !public.contains("cl1ent"),
            "{public}"
        );
        assert!(public.contains("switchboard"), "{public}");
        assert!(public.contains("X-Api-Key"));
        let back = Transport::assemble(transport.public(), transport.secrets());
        assert_eq!(back, transport);

        let mut edited = Transport::Http {
            url: "https://mcp.example.com/v2".into(),
            headers: BTreeMap::from([("X-Api-Key".into(), String::new())]),
            bearer_token: Some(String::new()),
            oauth_client_id: Some("switchboard".into()),
            oauth_client_secret: Some(String::new()),
        };
        edited.keep_secrets_of(&transport);
        assert_eq!(
            edited,
            Transport::Http {
                url: "https://mcp.example.com/v2".into(),
                headers: BTreeMap::from([("X-Api-Key".into(), "s3cret".into())]),
                bearer_token: Some("t0ken".into()),
                oauth_client_id: Some("switchboard".into()),
                oauth_client_secret: Some("cl1ent".into()),
            }
        );
    }
}
