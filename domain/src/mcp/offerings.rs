//! A server's resources and prompts: listed within the limits at connect and again when the server
//! says they changed, and, for a person, a resource read (its text, cut to a size a message can
//! carry) and a prompt run (its messages' text, for the composer).

use rmcp::model::{GetPromptRequestParams, PaginatedRequestParams, ReadResourceRequestParams};
use rmcp::service::{Peer, RoleClient};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::limits::{Limits, cut, size};
use super::{Mcp, limits};
use crate::{Error, Result};

pub use protocol::{Prompt, PromptArgument, Resource};

/// A resource as read for a message: its text, cut to [`MAX_RESOURCE_CHARS`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceText {
    pub uri: String,
    pub mime_type: Option<String>,
    pub text: String,
    /// It was longer, and was cut.
    pub cut: bool,
}

/// The most of a resource's text a message carries to the model (about 5,000 tokens).
pub const MAX_RESOURCE_CHARS: usize = 20_000;

fn text_of(value: &Value, field: &str, max: usize) -> Option<String> {
    value
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| cut(s, max))
}

/// Every page of a list (`resources/list`, `prompts/list`), within the limits on tools (pages,
/// entries, bytes): `fetch` gets one page for a cursor as JSON, `field` names its entries.
async fn list_all<F, Fut, T>(
    what: &str,
    field: &str,
    limits: &Limits,
    fetch: F,
    read: impl Fn(&Value) -> Option<T>,
) -> std::result::Result<Vec<T>, String>
where
    F: Fn(Option<String>) -> Fut,
    Fut: Future<Output = std::result::Result<Value, rmcp::ServiceError>>,
{
    let mut all = Vec::new();
    let mut bytes = 0;
    let mut cursor = None;
    for _ in 0..limits.max_tool_pages {
        let page = fetch(cursor).await.map_err(|e| {
            format!(
                "The server did not list its {what}: {}.",
                cut(&crate::error::chain(&e), limits.max_error_chars)
            )
        })?;
        for entry in page
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            bytes += entry.to_string().len();
            if all.len() == limits.max_tools || bytes > limits.max_tool_list_bytes {
                return Err(format!(
                    "The server lists more {what} than Switchboard keeps for one server ({} or {}).",
                    limits.max_tools,
                    size(limits.max_tool_list_bytes)
                ));
            }
            all.extend(read(entry));
        }
        cursor = page
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if cursor.is_none() {
            return Ok(all);
        }
    }
    Err(format!(
        "The server's list of {what} did not end after {} pages.",
        limits.max_tool_pages
    ))
}

fn page(cursor: Option<String>) -> Option<PaginatedRequestParams> {
    Some(PaginatedRequestParams::default().with_cursor(cursor))
}

/// The server's resources, when it offers any (none when its capabilities say it has none).
pub(super) async fn list_resources(
    peer: &Peer<RoleClient>,
    limits: &Limits,
) -> std::result::Result<Vec<Resource>, String> {
    if peer
        .peer_info()
        .is_none_or(|info| info.capabilities.resources.is_none())
    {
        return Ok(Vec::new());
    }
    let max = limits.max_tool_description;
    list_all(
        "resources",
        "resources",
        limits,
        |cursor| async move {
            let listed = peer.list_resources(page(cursor)).await?;
            Ok(serde_json::to_value(listed).unwrap_or_default())
        },
        |r| {
            Some(Resource {
                uri: text_of(r, "uri", 2_000)?,
                name: text_of(r, "name", limits.max_tool_title)?,
                title: text_of(r, "title", limits.max_tool_title),
                description: text_of(r, "description", max),
                mime_type: text_of(r, "mimeType", 200),
            })
        },
    )
    .await
}

/// The server's prompts, when it offers any.
pub(super) async fn list_prompts(
    peer: &Peer<RoleClient>,
    limits: &Limits,
) -> std::result::Result<Vec<Prompt>, String> {
    if peer
        .peer_info()
        .is_none_or(|info| info.capabilities.prompts.is_none())
    {
        return Ok(Vec::new());
    }
    let max = limits.max_tool_description;
    list_all(
        "prompts",
        "prompts",
        limits,
        |cursor| async move {
            let listed = peer.list_prompts(page(cursor)).await?;
            Ok(serde_json::to_value(listed).unwrap_or_default())
        },
        |p| {
            Some(Prompt {
                name: text_of(p, "name", limits.max_tool_name)?,
                title: text_of(p, "title", limits.max_tool_title),
                description: text_of(p, "description", max),
                arguments: p
                    .get("arguments")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .take(50)
                    .filter_map(|a| {
                        Some(PromptArgument {
                            name: text_of(a, "name", limits.max_tool_name)?,
                            description: text_of(a, "description", max),
                            required: a.get("required").and_then(Value::as_bool).unwrap_or(false),
                        })
                    })
                    .collect(),
            })
        },
    )
    .await
}

impl Mcp {
    /// Reads one of a server's resources for the user: its text parts joined, cut to
    /// [`MAX_RESOURCE_CHARS`]; binary contents are named, not read.
    pub async fn read_resource(
        &self,
        user_id: Uuid,
        server_id: &str,
        uri: &str,
    ) -> Result<ResourceText> {
        let peer = self.peer(user_id, server_id).await?;
        let limits = &self.inner.settings.limits;
        let read = tokio::time::timeout(
            self.inner.settings.call_timeout,
            peer.read_resource(ReadResourceRequestParams::new(uri)),
        )
        .await
        .map_err(|_| Error::Timeout(format!("The server did not send '{uri}' in time.")))?
        .map_err(|e| {
            Error::Unavailable(format!(
                "The server could not send '{uri}': {}",
                limits::cut(&e.to_string(), limits.max_error_chars)
            ))
        })?;
        let read = serde_json::to_value(read).unwrap_or_default();
        let mut texts = Vec::new();
        let mut mime_type = None;
        for content in read["contents"].as_array().into_iter().flatten() {
            mime_type = mime_type.or_else(|| text_of(content, "mimeType", 200));
            match content.get("text").and_then(Value::as_str) {
                Some(text) => texts.push(text.to_owned()),
                None => texts.push(format!(
                    "[Binary content ({}), not read]",
                    size(content["blob"].as_str().map_or(0, |b| b.len() / 4 * 3))
                )),
            }
        }
        let whole = texts.join("\n");
        let text = limits::cut(&whole, MAX_RESOURCE_CHARS);
        Ok(ResourceText {
            uri: uri.to_owned(),
            mime_type,
            cut: text.len() != whole.len(),
            text,
        })
    }

    /// Runs one of a server's prompts for the user with `arguments`: the text of its messages (a
    /// speaker's name before each when there are several), for the person to send or change.
    pub async fn get_prompt(
        &self,
        user_id: Uuid,
        server_id: &str,
        name: &str,
        arguments: serde_json::Map<String, Value>,
    ) -> Result<String> {
        let peer = self.peer(user_id, server_id).await?;
        let limits = &self.inner.settings.limits;
        let got = tokio::time::timeout(
            self.inner.settings.call_timeout,
            peer.get_prompt(GetPromptRequestParams::new(name).with_arguments(arguments)),
        )
        .await
        .map_err(|_| Error::Timeout(format!("The prompt '{name}' did not come in time.")))?
        .map_err(|e| {
            let why = format!(
                "The server could not give the prompt '{name}': {}",
                limits::cut(&e.to_string(), limits.max_error_chars)
            );
            // The server's own refusal (arguments it does not take) is the person's to mend;
            // anything else (the connection) is the server's.
            match e {
                rmcp::ServiceError::McpError(_) => Error::Invalid(why),
                _ => Error::Unavailable(why),
            }
        })?;
        let got = serde_json::to_value(got).unwrap_or_default();
        let messages: Vec<(String, String)> = got["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let content = &m["content"];
                let text = match content["type"].as_str() {
                    Some("text") => content["text"].as_str().unwrap_or_default().to_owned(),
                    Some("resource") => content["resource"]["text"]
                        .as_str()
                        .unwrap_or("[a resource]")
                        .to_owned(),
                    Some(other) => format!("[{other}]"),
                    None => String::new(),
                };
                (m["role"].as_str().unwrap_or("user").to_owned(), text)
            })
            .collect();
        let text = if messages.len() == 1 {
            messages[0].1.clone()
        } else {
            messages
                .iter()
                .map(|(role, text)| format!("{role}: {text}"))
                .collect::<Vec<_>>()
                .join("\n\n")
        };
        Ok(limits::cut(&text, MAX_RESOURCE_CHARS))
    }
}
