//! The conversation a run answers, as the model is given it: read from the chat's messages (a
//! checkpoint holds only its run's own turn), with earlier answers' tool calls and results.

use super::Call;
use crate::chats::{self, Role};
use crate::llm::Message;

/// The conversation so far, as the model is given it. `with_calls`: an earlier answer's tool
/// calls come before its text, each with what the tool returned (or why it did not run), so that
/// the model knows what its tools said in earlier answers; without, answers are their text.
pub fn for_model(history: &[chats::Message], with_calls: bool) -> Vec<Message> {
    let mut messages = Vec::with_capacity(history.len());
    for m in history {
        match m.role {
            Role::User => messages.push(Message::User {
                content: m.content.clone(),
            }),
            Role::Assistant => {
                if with_calls && !m.tool_calls.is_empty() {
                    let (asked, answers): (Vec<_>, Vec<_>) =
                        m.tool_calls.iter().map(Call::in_history).unzip();
                    messages.push(Message::Assistant {
                        content: None,
                        tool_calls: asked,
                        reasoning: None,
                    });
                    messages.extend(answers);
                }
                if !m.content.is_empty() {
                    messages.push(Message::Assistant {
                        content: Some(m.content.clone()),
                        tool_calls: vec![],
                        reasoning: None,
                    });
                }
            }
        }
    }
    messages
}

/// `messages` cut to fit `budget` tokens (estimated, about four characters a token): the oldest
/// whole turns (a person's message and everything that answered it, tool calls and results
/// together) are left out first; leading system messages and the last turn always stay. Returns
/// the messages and how many were left out, or the tokens the last turn alone needs when even it
/// does not fit.
pub fn fit(messages: Vec<Message>, budget: u32) -> Result<(Vec<Message>, usize), u32> {
    let tokens = |ms: &[Message]| super::estimate(ms.iter().map(super::message_chars).sum());
    if tokens(&messages) <= budget {
        return Ok((messages, 0));
    }
    let system = messages
        .iter()
        .take_while(|m| matches!(m, Message::System { .. }))
        .count();
    // Where each turn begins: a person's message.
    let starts: Vec<usize> = (system..messages.len())
        .filter(|&i| matches!(messages[i], Message::User { .. }))
        .collect();
    let kept = |from: usize| -> Vec<Message> {
        messages[..system]
            .iter()
            .chain(&messages[from..])
            .cloned()
            .collect()
    };
    for &from in &starts {
        let candidate = kept(from);
        if tokens(&candidate) <= budget {
            let left_out = from - system;
            return Ok((candidate, left_out));
        }
    }
    let last = starts.last().copied().unwrap_or(system);
    Err(tokens(&kept(last)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{self, CallState, Decider, Decision};
    use crate::chats::Status;
    use crate::llm;
    use uuid::Uuid;

    fn message(role: Role, content: &str, tool_calls: Vec<Call>) -> chats::Message {
        chats::Message {
            id: Uuid::new_v4(),
            position: 0,
            role,
            content: content.into(),
            status: Status::Complete,
            error: None,
            model: None,
            tool_calls,
            thinking: String::new(),
            usage: None,
            created_at: chrono::Utc::now(),
        }
    }

    fn call(id: &str, tool: &str, decision: Option<Decision>, state: CallState) -> Call {
        Call {
            id: id.into(),
            turn: 1,
            server: "everything".into(),
            server_key: "k".into(),
            tool: tool.into(),
            arguments: serde_json::json!({"message": "hi"}),
            annotations: Default::default(),
            decision,
            state,
            sign_in: None,
            asking: None,
        }
    }

    #[test]
    fn an_earlier_answers_tool_calls_and_results_are_given_back_to_the_model() {
        let ran = call(
            "c1",
            "echo",
            Some(Decision::Approve {
                by: Decider::Person,
                arguments: Some(serde_json::json!({"message": "edited"})),
            }),
            CallState::Finished {
                result: agent::ToolResult {
                    is_error: false,
                    text: "Echo: edited".into(),
                    duration_ms: 3,
                    parts: Vec::new(),
                    sign_in: None,
                    asking: None,
                },
            },
        );
        let long = "x".repeat(Call::MAX_EARLIER_RESULT + 10);
        let failed = call(
            "c2",
            "get-env",
            Some(Decision::Approve {
                by: Decider::Policy {
                    policy: "tool".into(),
                },
                arguments: None,
            }),
            CallState::Finished {
                result: agent::ToolResult {
                    is_error: true,
                    text: long,
                    duration_ms: 1,
                    parts: Vec::new(),
                    sign_in: None,
                    asking: None,
                },
            },
        );
        let declined = call(
            "c3",
            "add",
            Some(Decision::Reject {
                by: Decider::Person,
                reason: Some("not now".into()),
            }),
            CallState::Waiting,
        );
        let history = vec![
            message(Role::User, "echo hi", vec![]),
            message(
                Role::Assistant,
                "It said: edited.",
                vec![ran, failed, declined],
            ),
            message(Role::User, "what did it say?", vec![]),
            // An answer stopped before it wrote anything, with no calls: nothing of it is given.
            message(Role::Assistant, "", vec![]),
        ];
        let text_only = for_model(&history, false);
        assert_eq!(text_only.len(), 3, "{text_only:#?}");
        assert_eq!(
            text_only[1],
            llm::Message::Assistant {
                content: Some("It said: edited.".into()),
                tool_calls: vec![],
                reasoning: None,
            }
        );
        let messages = for_model(&history, true);
        assert_eq!(messages.len(), 7, "{messages:#?}");
        assert_eq!(
            messages[0],
            llm::Message::User {
                content: "echo hi".into()
            }
        );
        let llm::Message::Assistant {
            content: None,
            tool_calls,
            reasoning: None,
        } = &messages[1]
        else {
            panic!("the calls come first: {:?}", messages[1]);
        };
        let names: Vec<(&str, &str)> = tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("c1", "everything__echo"),
                ("c2", "everything__get-env"),
                ("c3", "everything__add")
            ]
        );
        // The arguments the tool ran with: the person's edit.
        assert_eq!(tool_calls[0].arguments, r#"{"message":"edited"}"#);
        let tool = |i: usize| match &messages[i] {
            llm::Message::Tool {
                tool_call_id,
                content,
            } => (tool_call_id.as_str(), content.as_str()),
            other => panic!("a tool message: {other:?}"),
        };
        assert_eq!(tool(2), ("c1", "Echo: edited"));
        let (id, content) = tool(3);
        assert_eq!(id, "c2");
        assert!(content.starts_with("Error: xxx"), "{content}");
        assert!(
            content.ends_with("(17 more characters, cut from this earlier result)"),
            "{content}"
        );
        assert_eq!(
            tool(4),
            ("c3", "The person declined this tool call: not now")
        );
        assert_eq!(
            messages[5],
            llm::Message::Assistant {
                content: Some("It said: edited.".into()),
                tool_calls: vec![],
                reasoning: None,
            }
        );
        assert_eq!(
            messages[6],
            llm::Message::User {
                content: "what did it say?".into()
            }
        );
    }

    #[test]
    fn a_long_conversation_loses_its_oldest_whole_turns_first() {
        let user = |c: &str| llm::Message::User { content: c.into() };
        let said = |c: &str| llm::Message::assistant(Some(c.into()), vec![]);
        let call = llm::ToolCall {
            id: "c1".into(),
            name: "t".into(),
            arguments: "{}".into(),
        };
        let messages = vec![
            llm::Message::System {
                content: "Be brief.".into(),
            },
            user(&"a".repeat(400)),
            llm::Message::assistant(None, vec![call]),
            llm::Message::Tool {
                tool_call_id: "c1".into(),
                content: "b".repeat(400),
            },
            said(&"c".repeat(400)),
            user(&"d".repeat(400)),
        ];
        // Everything fits: nothing is left out.
        assert_eq!(fit(messages.clone(), 10_000).unwrap().1, 0);
        // The first turn (the question, its call, the result and the answer) goes whole; the
        // system message stays.
        let (kept, left_out) = fit(messages.clone(), 150).unwrap();
        assert_eq!(left_out, 4);
        assert_eq!(kept.len(), 2);
        assert!(matches!(kept[0], llm::Message::System { .. }));
        assert!(matches!(&kept[1], llm::Message::User { content } if content.starts_with('d')));
        // The last turn alone is too long: how many tokens it needs.
        assert_eq!(fit(messages, 50), Err(103));
    }
}
