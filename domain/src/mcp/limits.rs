//! What a tool server may make Switchboard hold: its tool list is paged here with caps (pages,
//! tools, the size of each part), its results and error messages are cut before they reach people
//! or the model, each with a note of what was cut.

use rmcp::model::{ContentBlock, PaginatedRequestParams};
use rmcp::service::{Peer, RoleClient};
use serde_json::{Value, json};

use super::Tool;

/// Caps on what one server sends. A tool list beyond them is refused (the connection fails and
/// says why); text beyond them is cut, with a note.
#[derive(Clone, Debug)]
pub struct Limits {
    /// One message from a server (a line on stdio, a response or event over HTTP), in bytes: a
    /// larger one ends the connection.
    pub max_message_bytes: usize,
    /// Pages of one `tools/list`.
    pub max_tool_pages: usize,
    pub max_tools: usize,
    /// Characters of a tool's name (MCP's own limit).
    pub max_tool_name: usize,
    pub max_tool_title: usize,
    pub max_tool_description: usize,
    /// One tool's input schema, as JSON, in bytes.
    pub max_input_schema_bytes: usize,
    /// The whole tool list as kept (names, titles, descriptions, schemas), in bytes.
    pub max_tool_list_bytes: usize,
    /// A tool result's text and data together, in bytes, as people and the model get it.
    pub max_result_bytes: usize,
    /// A tool result's images and audio together, in bytes (of their base64), besides the above.
    pub max_media_bytes: usize,
    /// Characters of an error message or status reason that comes from a server.
    pub max_error_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // rmcp's own cap on one JSON response over HTTP.
            max_message_bytes: 16 * 1024 * 1024,
            max_tool_pages: 100,
            max_tools: 1000,
            max_tool_name: 128,
            max_tool_title: 200,
            max_tool_description: 4000,
            max_input_schema_bytes: 64 * 1024,
            max_tool_list_bytes: 4 * 1024 * 1024,
            // About 25,000 tokens, as other MCP clients allow.
            max_result_bytes: 100_000,
            // A screenshot or two.
            max_media_bytes: 2_000_000,
            max_error_chars: 1000,
        }
    }
}

/// `text`, cut after `max` characters with a note of how many more there were.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => format!(
            "{}… [{} more characters cut by Switchboard]",
            &text[..end],
            text[end..].chars().count()
        ),
    }
}

/// A number of bytes for people.
pub fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1_000_000.0),
        b if b >= 1_000 => format!("{} KB", b / 1_000),
        b => format!("{b} bytes"),
    }
}

/// Every page of the server's tools, within the limits; or why not, for the person.
pub async fn list_tools(
    peer: &Peer<RoleClient>,
    limits: &Limits,
) -> std::result::Result<Vec<Tool>, String> {
    let mut tools: Vec<Tool> = Vec::new();
    let mut kept = 0;
    let mut cursor = None;
    for _ in 0..limits.max_tool_pages {
        let page = peer
            .list_tools(Some(PaginatedRequestParams::default().with_cursor(cursor)))
            .await
            .map_err(|e| {
                format!(
                    "The server did not list its tools: {}.",
                    cut(&crate::error::chain(&e), limits.max_error_chars)
                )
            })?;
        for tool in page.tools {
            if tools.len() == limits.max_tools {
                return Err(format!(
                    "The server lists more than {} tools, more than Switchboard takes from one server. Ask whoever runs it to offer fewer.",
                    limits.max_tools
                ));
            }
            let tool = bounded(tool, limits)?;
            kept += weight_of(&tool);
            if kept > limits.max_tool_list_bytes {
                return Err(format!(
                    "The server's tool list is larger than {}, more than Switchboard keeps for one server. Ask whoever runs it to offer fewer or shorter tools.",
                    size(limits.max_tool_list_bytes)
                ));
            }
            tools.push(tool);
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            return Ok(tools);
        }
    }
    Err(format!(
        "The server's tool list did not end after {} pages (each answer to tools/list asked for another). Ask whoever runs it to fix the server.",
        limits.max_tool_pages
    ))
}

/// A tool within the limits: its title and description cut, or refused for a name or schema
/// that cannot be cut.
fn bounded(tool: rmcp::model::Tool, limits: &Limits) -> std::result::Result<Tool, String> {
    let name_chars = tool.name.chars().count();
    if name_chars == 0 || name_chars > limits.max_tool_name {
        return Err(format!(
            "The server lists a tool named '{}', {name_chars} characters long; a tool name has 1 to {} characters. Ask whoever runs the server to fix it.",
            cut(&tool.name, 60),
            limits.max_tool_name
        ));
    }
    let schema = serde_json::to_vec(&*tool.input_schema)
        .map(|json| json.len())
        .unwrap_or(usize::MAX);
    if schema > limits.max_input_schema_bytes {
        return Err(format!(
            "The tool '{}' has an input schema of {}, more than the {} Switchboard takes. Ask whoever runs the server to fix it.",
            tool.name,
            size(schema),
            size(limits.max_input_schema_bytes)
        ));
    }
    let mut tool = Tool::from(tool);
    tool.title = tool.title.map(|t| cut(&t, limits.max_tool_title));
    tool.description = tool
        .description
        .map(|d| cut(&d, limits.max_tool_description));
    Ok(tool)
}

fn weight_of(tool: &Tool) -> usize {
    tool.name.len()
        + tool.title.as_ref().map_or(0, String::len)
        + tool.description.as_ref().map_or(0, String::len)
        + weight(&tool.input_schema)
}

/// About how many bytes a JSON value takes.
fn weight(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|v| weight(v) + 1).sum::<usize>(),
        Value::Object(fields) => {
            2 + fields
                .iter()
                .map(|(k, v)| k.len() + 4 + weight(v))
                .sum::<usize>()
        }
        _ => 8,
    }
}

/// A tool result's content and structured content, within `max` bytes together, and its images
/// and audio within `max_media` more. A text that does not fit is cut; blocks after it, media and
/// structured content that do not fit, are left out; a last text block says what was.
pub fn bounded_result(
    content: Vec<ContentBlock>,
    structured: Option<Value>,
    max: usize,
    max_media: usize,
) -> (Value, Option<Value>) {
    let mut room = max;
    let mut media_room = max_media;
    let mut blocks = Vec::new();
    let (mut cut_bytes, mut left_out) = (0usize, 0usize);
    for block in content {
        let mut block = serde_json::to_value(&block).unwrap_or_default();
        // Each block costs something, so that many empty ones cannot pass either.
        let cost = weight(&block) + 16;
        if matches!(block["type"].as_str(), Some("image" | "audio")) {
            if cost <= media_room {
                media_room -= cost;
                blocks.push(block);
            } else {
                cut_bytes += cost;
                left_out += 1;
            }
            continue;
        }
        if cost <= room {
            room -= cost;
            blocks.push(block);
            continue;
        }
        let text = (block["type"] == "text")
            .then(|| block.get_mut("text"))
            .flatten()
            .and_then(|t| match t {
                Value::String(s) => Some(s),
                _ => None,
            });
        match text {
            Some(text) if room > 0 && left_out == 0 => {
                let mut end = room.min(text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                cut_bytes += text.len() - end;
                text.truncate(end);
                room = 0;
                blocks.push(block);
            }
            _ => {
                cut_bytes += cost;
                left_out += 1;
                room = 0;
            }
        }
    }
    let structured = match structured {
        Some(value) if weight(&value) > room => {
            cut_bytes += weight(&value);
            left_out += 1;
            None
        }
        other => other,
    };
    if cut_bytes > 0 {
        let parts = if left_out > 0 {
            format!(" ({left_out} parts left out)")
        } else {
            String::new()
        };
        blocks.push(json!({
            "type": "text",
            "text": format!(
                "[Switchboard cut this result: {} more{parts} did not fit in the {} a tool result may take.]",
                size(cut_bytes),
                size(max)
            ),
        }));
    }
    (Value::Array(blocks), structured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_with_a_note() {
        assert_eq!(cut("short", 10), "short");
        let cut_text = cut(&"é".repeat(50), 10);
        assert!(cut_text.starts_with(&"é".repeat(10)), "{cut_text}");
        assert!(cut_text.contains("40 more characters"), "{cut_text}");
    }

    #[test]
    fn a_large_result_is_cut_and_says_so() {
        let big = "x".repeat(1_000_000);
        let content = vec![
            ContentBlock::text("first"),
            ContentBlock::text(big),
            ContentBlock::text("after"),
            ContentBlock::image("a".repeat(10_000), "image/png"),
        ];
        let structured = Some(json!({"data": "y".repeat(500_000)}));
        let (content, structured) = bounded_result(content, structured, 1_000, 5_000);
        let blocks = content.as_array().unwrap();
        let text: String = blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.len() < 1_500, "{}", text.len());
        assert!(text.starts_with("first\nxxx"), "{text}");
        assert!(text.contains("[Switchboard cut this result"), "{text}");
        assert!(text.contains("3 parts left out"), "{text}");
        assert!(!text.contains("after"), "{text}");
        assert_eq!(structured, None);

        let (content, structured) = bounded_result(
            vec![ContentBlock::text("small")],
            Some(json!({"a": 1})),
            1_000,
            0,
        );
        assert_eq!(content, json!([{"type": "text", "text": "small"}]));
        assert_eq!(structured, Some(json!({"a": 1})));

        // Many empty blocks add up too.
        let many: Vec<ContentBlock> = (0..100_000).map(|_| ContentBlock::text("")).collect();
        let (content, _) = bounded_result(many, None, 1_000, 1_000);
        assert!(content.as_array().unwrap().len() < 100, "{}", content);
    }
}
