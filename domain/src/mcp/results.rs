//! What a tool returned, read two ways: as the model is told it (text, with its structured content
//! and words for what is not text) and as the person is shown it, part by part (images and audio
//! inline when of a safe kind, links, embedded resources, structured content pretty-printed).

use protocol::ResultPart;
use serde_json::Value;

use super::ToolOutput;
use super::limits::size;

/// Images a page shows inline: never SVG, which can carry scripts.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];
const AUDIO_TYPES: [&str; 5] = [
    "audio/wav",
    "audio/mpeg",
    "audio/ogg",
    "audio/webm",
    "audio/mp4",
];

impl ToolOutput {
    /// What the model is told: the text blocks, words for each other block, and the structured
    /// content when no text block carries it already (servers are asked to send both).
    pub fn for_model(&self) -> String {
        let mut said: Vec<String> = blocks(&self.content).map(block_for_model).collect();
        if let Some(structured) = &self.structured
            && !blocks(&self.content).any(|b| carries(b, structured))
        {
            said.push(format!("Structured result:\n{}", shown(structured)));
        }
        said.retain(|s| !s.is_empty());
        said.join("\n")
    }

    /// What the person is shown, part by part.
    pub fn parts(&self) -> Vec<ResultPart> {
        let mut parts: Vec<ResultPart> = blocks(&self.content).map(part).collect();
        if let Some(structured) = &self.structured {
            parts.push(ResultPart::Structured {
                json: shown(structured),
            });
        }
        parts
    }
}

/// Structured content pretty-printed, unless that more than doubles it (deep nesting): then as
/// it came, so that it stays within what the result's cap allowed.
fn shown(structured: &Value) -> String {
    let compact = structured.to_string();
    let pretty = serde_json::to_string_pretty(structured).unwrap_or_default();
    if pretty.len() <= 2 * compact.len() {
        pretty
    } else {
        compact
    }
}

fn blocks(content: &Value) -> impl Iterator<Item = &Value> {
    content.as_array().into_iter().flatten()
}

fn str_of<'a>(block: &'a Value, field: &str) -> Option<&'a str> {
    block.get(field).and_then(Value::as_str)
}

/// A text block that is the structured content as JSON.
fn carries(block: &Value, structured: &Value) -> bool {
    str_of(block, "text")
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .is_some_and(|v| v == *structured)
}

/// The size of base64 `data` once decoded, for people.
fn decoded_size(data: &str) -> String {
    size(data.len() / 4 * 3)
}

fn block_for_model(block: &Value) -> String {
    let kind = str_of(block, "type").unwrap_or_default();
    let mime = str_of(block, "mimeType").unwrap_or("unknown type");
    match kind {
        "text" => str_of(block, "text").unwrap_or_default().to_owned(),
        "image" | "audio" => format!(
            "[The tool returned {} ({mime}, {}), which the person sees.]",
            if kind == "image" {
                "an image"
            } else {
                "an audio clip"
            },
            decoded_size(str_of(block, "data").unwrap_or_default())
        ),
        "resource_link" => {
            let uri = str_of(block, "uri").unwrap_or_default();
            let name = str_of(block, "name").unwrap_or(uri);
            match str_of(block, "description") {
                Some(d) => format!("[Resource link: {name} <{uri}>: {d}]"),
                None => format!("[Resource link: {name} <{uri}>]"),
            }
        }
        "resource" => {
            let resource = block.get("resource").unwrap_or(&Value::Null);
            let uri = str_of(resource, "uri").unwrap_or_default();
            match str_of(resource, "text") {
                Some(text) => format!("[Resource {uri}]\n{text}"),
                None => format!(
                    "[Resource {uri} ({}, {}), not text]",
                    str_of(resource, "mimeType").unwrap_or("unknown type"),
                    decoded_size(str_of(resource, "blob").unwrap_or_default())
                ),
            }
        }
        other => format!("[A part of kind '{other}' the tool returned]"),
    }
}

/// Base64 only, so that a `data:` URL made of it says nothing else.
fn is_base64(data: &str) -> bool {
    !data.is_empty()
        && data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

fn part(block: &Value) -> ResultPart {
    let kind = str_of(block, "type").unwrap_or_default();
    let mime = str_of(block, "mimeType")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let data = str_of(block, "data").unwrap_or_default();
    match kind {
        "text" => ResultPart::Text {
            text: str_of(block, "text").unwrap_or_default().to_owned(),
        },
        "image" if IMAGE_TYPES.contains(&mime.as_str()) && is_base64(data) => ResultPart::Image {
            mime_type: mime,
            data: data.to_owned(),
        },
        "audio" if AUDIO_TYPES.contains(&mime.as_str()) && is_base64(data) => ResultPart::Audio {
            mime_type: mime,
            data: data.to_owned(),
        },
        "image" | "audio" => ResultPart::Note {
            text: format!(
                "An {kind} of type '{mime}' ({}) that Switchboard does not show.",
                decoded_size(data)
            ),
        },
        "resource_link" => {
            let uri = str_of(block, "uri").unwrap_or_default().to_owned();
            ResultPart::Link {
                name: str_of(block, "name").map_or_else(|| uri.clone(), str::to_owned),
                description: str_of(block, "description").map(str::to_owned),
                uri,
            }
        }
        "resource" => {
            let resource = block.get("resource").unwrap_or(&Value::Null);
            let mime_type = str_of(resource, "mimeType").map(str::to_owned);
            ResultPart::Resource {
                uri: str_of(resource, "uri").unwrap_or_default().to_owned(),
                text: str_of(resource, "text").map_or_else(
                    || {
                        format!(
                            "Binary content ({}), not shown.",
                            decoded_size(str_of(resource, "blob").unwrap_or_default())
                        )
                    },
                    str::to_owned,
                ),
                mime_type,
            }
        }
        other => ResultPart::Note {
            text: format!("A part of kind '{other}' that Switchboard does not show."),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn output(content: Value, structured: Option<Value>) -> ToolOutput {
        ToolOutput {
            is_error: false,
            content,
            structured,
            duration_ms: 1,
        }
    }

    #[test]
    fn the_model_gets_text_structured_content_and_words_for_the_rest() {
        let out = output(
            json!([
                {"type": "text", "text": "Here."},
                {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"},
                {"type": "resource_link", "uri": "https://x.test/a.pdf", "name": "a.pdf"},
                {"type": "resource", "resource": {"uri": "file:///n.md", "text": "Buy milk."}},
            ]),
            Some(json!({"celsius": 21})),
        );
        let told = out.for_model();
        assert!(
            told.starts_with("Here.\n[The tool returned an image (image/png"),
            "{told}"
        );
        assert!(
            told.contains("[Resource link: a.pdf <https://x.test/a.pdf>]"),
            "{told}"
        );
        assert!(
            told.contains("[Resource file:///n.md]\nBuy milk."),
            "{told}"
        );
        assert!(
            told.ends_with("Structured result:\n{\n  \"celsius\": 21\n}"),
            "{told}"
        );
        // A server that sends the structured content as a text block too: said once.
        let twice = output(
            json!([{"type": "text", "text": "{\"celsius\":21}"}]),
            Some(json!({"celsius": 21})),
        );
        assert_eq!(twice.for_model(), "{\"celsius\":21}");
    }

    #[test]
    fn the_person_sees_safe_media_only() {
        let out = output(
            json!([
                {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/PNG"},
                {"type": "image", "data": "PHN2Zz4=", "mimeType": "image/svg+xml"},
                {"type": "image", "data": "x\" onerror=\"alert(1)", "mimeType": "image/png"},
                {"type": "audio", "data": "UklGRg==", "mimeType": "audio/wav"},
                {"type": "something-new"},
            ]),
            None,
        );
        let parts = out.parts();
        assert_eq!(
            parts[0],
            ResultPart::Image {
                mime_type: "image/png".into(),
                data: "iVBORw0KGgo=".into()
            }
        );
        assert!(matches!(&parts[1], ResultPart::Note { text } if text.contains("image/svg+xml")));
        assert!(
            matches!(&parts[2], ResultPart::Note { .. }),
            "not base64: not shown"
        );
        assert!(matches!(&parts[3], ResultPart::Audio { .. }));
        assert!(matches!(&parts[4], ResultPart::Note { .. }));
    }
}
