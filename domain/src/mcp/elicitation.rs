//! A server's questions to the person during a tool call (MCP elicitation): the question as
//! Switchboard keeps it, who is asked (the call under way on that connection that will wait for
//! the answer), an answer checked against the form the server asked for, and the questions of a
//! multi round-trip call (MCP 2026-07-28: the server answers "input required", and the call is
//! made again with the replies), which hold nothing open while they wait.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::limits::cut;

/// What a server asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// The server's words, cut to [`MAX_MESSAGE`].
    pub message: String,
    /// `form`, with the JSON Schema of its fields, or `url`, with the page to open.
    pub schema: Option<Value>,
    pub url: Option<String>,
}

impl Question {
    /// The question as its card shows it: its id, and the server that asks.
    pub fn view(self, id: String, server: String) -> protocol::QuestionView {
        protocol::QuestionView {
            id,
            server,
            message: self.message,
            schema: self.schema,
            url: self.url,
        }
    }
}

/// The person's answer: `accept` (with the form's content), `decline` or `cancel`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub action: String,
    pub content: Option<Value>,
}

impl Reply {
    pub fn cancel() -> Self {
        Self {
            action: "cancel".into(),
            content: None,
        }
    }

    pub fn decline() -> Self {
        Self {
            action: "decline".into(),
            content: None,
        }
    }
}

impl Reply {
    /// The reply as MCP's `ElicitResult` (no `content` unless accepted with some).
    pub fn to_result(&self) -> Value {
        let mut result = serde_json::json!({ "action": self.action });
        if let Some(content) = &self.content {
            result["content"] = content.clone();
        }
        result
    }
}

/// What a server asked in answer to a multi round-trip call: its questions, each under the key
/// its reply goes back under, and the state it wants given back as it was.
#[derive(Clone, Debug, PartialEq)]
pub struct Asked {
    pub questions: Vec<(String, Question)>,
    pub state: Option<String>,
}

/// The replies a multi round-trip call is made again with: each question's reply under its key,
/// and the server's state as it gave it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Round {
    pub replies: Vec<(String, Reply)>,
    pub state: Option<String>,
}

/// The most rounds of questions a multi round-trip call may ask.
pub const MAX_ROUNDS: u32 = 3;

/// The most questions a server may ask in one round of a multi round-trip call.
pub const MAX_ROUND_QUESTIONS: usize = 3;

/// The largest state a server may ask to be given back (kept in the run's checkpoint meanwhile).
pub const MAX_STATE_BYTES: usize = 64 * 1024;

/// The questions of a server's "input required" answer, or why they cannot be asked: only
/// questions to the person (no sampling, no roots, which Switchboard does not offer), a few.
pub(super) fn asked(result: rmcp::model::InputRequiredResult) -> Result<Asked, String> {
    use rmcp::model::InputRequest;
    let requests = result.input_requests.unwrap_or_default();
    if requests.len() > MAX_ROUND_QUESTIONS {
        return Err(format!(
            "The server asked {} questions at once; Switchboard asks at most {MAX_ROUND_QUESTIONS}.",
            requests.len()
        ));
    }
    let mut questions = Vec::new();
    for (key, request) in requests {
        let InputRequest::Elicitation(elicit) = request else {
            return Err(
                "The server asked for something other than the person's answer (a model's completion, or the person's folders), which Switchboard does not give.".into(),
            );
        };
        if key.len() > 200 {
            return Err(
                "The server named a question with a key longer than Switchboard keeps.".into(),
            );
        }
        questions.push((key, question(&elicit.params)?));
    }
    if result
        .request_state
        .as_ref()
        .is_some_and(|state| state.len() > MAX_STATE_BYTES)
    {
        return Err(format!(
            "The server asked to keep a state larger than Switchboard keeps ({} KB).",
            MAX_STATE_BYTES / 1024
        ));
    }
    if questions.is_empty() && result.request_state.is_none() {
        return Err("The server asked for more input without saying what.".into());
    }
    Ok(Asked {
        questions,
        state: result.request_state,
    })
}

/// Asks the person a server's question for one call, and waits for their reply (or for the
/// call to end: an asker is dropped with its call). Switchboard's askers take one question at a
/// time and a few per call, and decline the rest.
pub type Asker = Arc<dyn Fn(Question) -> BoxFuture<'static, Reply> + Send + Sync>;

/// The longest message of a server's kept.
pub const MAX_MESSAGE: usize = 2_000;
/// The largest form a server may ask for, as JSON.
const MAX_SCHEMA_BYTES: usize = 32 * 1024;

/// The question of an `elicitation/create`, or why it cannot be asked.
pub(super) fn question(params: &rmcp::model::ElicitRequestParams) -> Result<Question, String> {
    use rmcp::model::ElicitRequestParams as P;
    match params {
        P::FormElicitationParams {
            message,
            requested_schema,
            ..
        } => {
            let schema = serde_json::to_value(requested_schema).unwrap_or_default();
            if schema.to_string().len() > MAX_SCHEMA_BYTES {
                return Err("The server asked with a form larger than Switchboard shows.".into());
            }
            Ok(Question {
                message: cut(message, MAX_MESSAGE),
                schema: Some(schema),
                url: None,
            })
        }
        P::UrlElicitationParams { message, url, .. } => {
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2_000 {
                return Err("The server asked to open an address that is not a web page.".into());
            }
            Ok(Question {
                message: cut(message, MAX_MESSAGE),
                schema: None,
                url: Some(url.clone()),
            })
        }
        _ => Err("The server asked in a way Switchboard does not know.".into()),
    }
}

/// Checks a form's content against the schema the server asked with (MCP's simple fields:
/// strings with their length, format and choices, numbers and integers in their range, booleans,
/// lists of choices): what is wrong, in words, or nothing.
pub fn check(schema: &Value, content: &Value) -> Result<(), String> {
    let Some(given) = content.as_object() else {
        return Err("The answer must be a JSON object of the form's fields.".into());
    };
    let properties = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for name in schema["required"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap_or_default();
        if given.get(name).is_none_or(Value::is_null) {
            return Err(format!(
                "Fill in '{}': it is required.",
                label(&properties, name)
            ));
        }
    }
    for (name, value) in given {
        let Some(field) = properties.get(name) else {
            return Err(format!("The form has no field '{name}'."));
        };
        let wrong = |what: &str| Err(format!("'{}' {what}.", label(&properties, name)));
        match field["type"].as_str().unwrap_or_default() {
            "string" => {
                let Some(text) = value.as_str() else {
                    return wrong("must be text");
                };
                let chars = text.chars().count() as u64;
                if field["minLength"].as_u64().is_some_and(|min| chars < min) {
                    return wrong("is too short");
                }
                if field["maxLength"].as_u64().is_some_and(|max| chars > max) {
                    return wrong("is too long");
                }
                let choices = choices(field);
                if !choices.is_empty() && !choices.iter().any(|c| c == text) {
                    return wrong("must be one of the choices");
                }
                match field["format"].as_str() {
                    Some("email") if !looks_like_email(text) => {
                        return wrong("must be an e-mail address");
                    }
                    Some("uri") if !text.contains(':') => return wrong("must be an address"),
                    Some("date") if !looks_like_date(text) => {
                        return wrong("must be a date (YYYY-MM-DD)");
                    }
                    _ => {}
                }
            }
            kind @ ("number" | "integer") => {
                let Some(n) = value.as_f64() else {
                    return wrong("must be a number");
                };
                if kind == "integer" && n.fract() != 0.0 {
                    return wrong("must be a whole number");
                }
                if field["minimum"].as_f64().is_some_and(|min| n < min) {
                    return wrong(&format!("must be at least {}", field["minimum"]));
                }
                if field["maximum"].as_f64().is_some_and(|max| n > max) {
                    return wrong(&format!("must be at most {}", field["maximum"]));
                }
            }
            "boolean" if !value.is_boolean() => return wrong("must be yes or no"),
            "array" => {
                let Some(items) = value.as_array() else {
                    return wrong("must be a list of choices");
                };
                let choices = choices(&field["items"]);
                if items
                    .iter()
                    .any(|i| i.as_str().is_none_or(|i| !choices.iter().any(|c| c == i)))
                {
                    return wrong("must be among the choices");
                }
                let count = items.len() as u64;
                if field["minItems"].as_u64().is_some_and(|min| count < min) {
                    return wrong("needs more choices");
                }
                if field["maxItems"].as_u64().is_some_and(|max| count > max) {
                    return wrong("has too many choices");
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A field's title, else its name.
fn label<'a>(properties: &'a serde_json::Map<String, Value>, name: &'a str) -> &'a str {
    properties
        .get(name)
        .and_then(|f| f["title"].as_str())
        .unwrap_or(name)
}

/// The values a field may take (`enum`, or `oneOf`/`anyOf` of `const`s); empty when any.
pub fn choices(field: &Value) -> Vec<String> {
    if let Some(values) = field["enum"].as_array() {
        return values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
    }
    field["oneOf"]
        .as_array()
        .or_else(|| field["anyOf"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|c| c["const"].as_str().map(str::to_owned))
        .collect()
}

fn looks_like_email(text: &str) -> bool {
    text.split_once('@')
        .is_some_and(|(user, host)| !user.is_empty() && host.contains('.') && !text.contains(' '))
}

fn looks_like_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 3
        && [4, 2, 2]
            .iter()
            .zip(&parts)
            .all(|(len, p)| p.len() == *len && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(message: &str) -> rmcp::model::InputRequest {
        use rmcp::model::{ElicitRequest, ElicitRequestParams, InputRequest};
        InputRequest::Elicitation(ElicitRequest::new(
            ElicitRequestParams::FormElicitationParams {
                meta: None,
                message: message.into(),
                requested_schema: serde_json::from_value(json!({
                    "type": "object",
                    "properties": {"name": {"type": "string"}}
                }))
                .unwrap(),
            },
        ))
    }

    #[test]
    #[allow(deprecated, reason = "roots stand for what Switchboard does not give")]
    fn a_servers_input_required_is_a_few_questions_and_a_state_of_bounded_size() {
        use rmcp::model::{InputRequests, InputRequiredResult, ListRootsRequest};
        let of = |pairs: Vec<(&str, rmcp::model::InputRequest)>, state: Option<String>| {
            let requests: InputRequests =
                pairs.into_iter().map(|(k, r)| (k.to_owned(), r)).collect();
            asked(InputRequiredResult::new(Some(requests), state))
        };
        let fine = of(vec![("who", form("Name?"))], Some("s1".into())).unwrap();
        assert_eq!(fine.questions[0].0, "who");
        assert_eq!(fine.questions[0].1.message, "Name?");
        assert_eq!(fine.state.as_deref(), Some("s1"));

        let four = (0..4)
            .map(|i| (["a", "b", "c", "d"][i], form("?")))
            .collect();
        assert!(of(four, None).unwrap_err().contains("at most 3"));
        let roots = vec![(
            "roots",
            rmcp::model::InputRequest::ListRoots(ListRootsRequest::default()),
        )];
        assert!(of(roots, None).unwrap_err().contains("does not give"));
        let huge = "x".repeat(MAX_STATE_BYTES + 1);
        assert!(
            of(vec![("who", form("?"))], Some(huge))
                .unwrap_err()
                .contains("state larger")
        );
        assert!(
            of(vec![], None)
                .unwrap_err()
                .contains("without saying what")
        );
        let long_key = "k".repeat(201);
        assert!(of(vec![(long_key.as_str(), form("?"))], None).is_err());
    }

    #[test]
    fn an_answer_is_checked_against_the_form() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "title": "Name", "minLength": 2},
                "email": {"type": "string", "format": "email"},
                "age": {"type": "integer", "minimum": 1, "maximum": 100},
                "ok": {"type": "boolean"},
                "hero": {"type": "string", "oneOf": [{"const": "h1"}, {"const": "h2"}]},
                "tools": {"type": "array", "maxItems": 2, "items": {"type": "string", "enum": ["a", "b", "c"]}}
            },
            "required": ["name"]
        });
        assert_eq!(
            check(
                &schema,
                &json!({"name": "Ada", "age": 36, "ok": true, "hero": "h2", "tools": ["a"]})
            ),
            Ok(())
        );
        let refused = |content: Value| check(&schema, &content).unwrap_err();
        assert!(refused(json!({})).contains("Fill in 'Name'"));
        assert!(refused(json!({"name": "A"})).contains("too short"));
        assert!(refused(json!({"name": "Ada", "email": "nope"})).contains("e-mail"));
        assert!(refused(json!({"name": "Ada", "age": 101})).contains("at most 100"));
        assert!(refused(json!({"name": "Ada", "age": 1.5})).contains("whole number"));
        assert!(refused(json!({"name": "Ada", "hero": "h9"})).contains("one of the choices"));
        assert!(refused(json!({"name": "Ada", "tools": ["a", "b", "c"]})).contains("too many"));
        assert!(refused(json!({"name": "Ada", "evil": 1})).contains("no field 'evil'"));
        assert!(refused(json!("text")).contains("JSON object"));
    }
}
