//! A tool server's question to the person during a call, answered (`/api/chats/answer`), and how
//! its form is drawn from the schema the server sent.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

pub use protocol::QuestionView;

use crate::error::AppError;

/// `POST /api/chats/answer` (JSON) with `id` (the chat), `question` (its id), `action` (`accept`,
/// `decline` or `cancel`) and, to accept a form, `content` (an object of its fields, checked
/// against the form): the call that waits for it goes on.
#[server(endpoint = "chats/answer", input = Json)]
pub async fn answer_question(
    id: String,
    question: String,
    action: String,
    content: Option<serde_json::Value>,
) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let chat_id = crate::chats::ssr::chat_id(&id)?;
    let question = uuid::Uuid::parse_str(question.trim())
        .map_err(|_| AppError::invalid("'question' is not a question's id."))?;
    let reply = domain::mcp::elicitation::Reply { action, content };
    let found = crate::ssr::runs()?
        .answer_question(user.id, chat_id, question, reply)
        .await?;
    found
        .then_some(())
        .ok_or_else(|| AppError::not_found("There is no such question in this chat."))
}

/// One field of a question's form, as the card draws it.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub title: String,
    pub description: Option<String>,
    /// `string`, `number`, `integer`, `boolean` or `array` (a list of choices).
    pub kind: String,
    /// `email`, `uri`, `date`, ...
    pub format: Option<String>,
    /// The values it may take (with their titles), for a choice or a list of choices.
    pub choices: Vec<(String, String)>,
    pub required: bool,
    pub default: Option<serde_json::Value>,
}

/// The fields of a form's schema (in the order of their names: JSON objects are read unordered).
pub fn fields(schema: &serde_json::Value) -> Vec<Field> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, f)| {
            let kind = f["type"].as_str().unwrap_or("string").to_owned();
            let of = if kind == "array" { &f["items"] } else { f };
            let choices = match of["enum"].as_array() {
                Some(values) => values
                    .iter()
                    .filter_map(|v| v.as_str())
                    .map(|v| (v.to_owned(), v.to_owned()))
                    .collect(),
                None => of["oneOf"]
                    .as_array()
                    .or_else(|| of["anyOf"].as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|c| {
                        let value = c["const"].as_str()?.to_owned();
                        let title = c["title"].as_str().unwrap_or(&value).to_owned();
                        Some((value, title))
                    })
                    .collect(),
            };
            Field {
                name: name.clone(),
                title: f["title"].as_str().unwrap_or(name).to_owned(),
                description: f["description"].as_str().map(str::to_owned),
                kind,
                format: f["format"].as_str().map(str::to_owned),
                choices,
                required: required.contains(&name.as_str()),
                default: f.get("default").cloned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_forms_fields_come_from_its_schema() {
        let schema = json!({
            "properties": {
                "name": {"type": "string", "title": "Name"},
                "hero": {"type": "string", "oneOf": [{"const": "h1", "title": "Superman"}]},
                "fish": {"type": "array", "items": {"type": "string", "enum": ["cod", "eel"]}}
            },
            "required": ["name"]
        });
        let fields = fields(&schema);
        let field = |name: &str| fields.iter().find(|f| f.name == name).unwrap();
        assert_eq!(field("name").title, "Name");
        assert!(field("name").required);
        assert!(!field("hero").required);
        assert_eq!(
            field("hero").choices,
            [("h1".to_owned(), "Superman".to_owned())]
        );
        assert_eq!(field("fish").kind, "array");
        assert_eq!(field("fish").choices.len(), 2);
    }
}
