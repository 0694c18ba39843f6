//! `docs/api.md` against the types that make the wire: its message, tool call and every event's
//! `data` must read as these types, and name exactly the fields they send.

use std::collections::BTreeSet;

use protocol::{CallView, Event, MessageView};
use serde_json::Value;

const API: &str = include_str!("../../docs/api.md");

/// The first ```json block after `after`.
fn json_block(after: &str) -> Value {
    let from = API
        .find(after)
        .unwrap_or_else(|| panic!("docs/api.md has {after:?}"));
    let rest = &API[from..];
    let start = rest.find("```json\n").expect("a json block") + "```json\n".len();
    let end = start + rest[start..].find("```").expect("its end");
    serde_json::from_str(&rest[start..end])
        .unwrap_or_else(|e| panic!("the JSON after {after:?} is valid ({e})"))
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

/// Reads `documented` as a `T`, and checks that `T` sends the same fields.
fn same_shape<T: serde::de::DeserializeOwned + serde::Serialize>(
    what: &str,
    documented: &Value,
) -> T {
    let read: T = serde_json::from_value(documented.clone()).unwrap_or_else(|e| {
        panic!("{what} in docs/api.md reads as the wire's type: {e}\n{documented}")
    });
    let sent = serde_json::to_value(&read).unwrap();
    assert_eq!(
        keys(&sent),
        keys(documented),
        "{what}: the fields sent and the fields documented"
    );
    read
}

#[test]
fn chats_get_and_its_tool_calls_are_documented_as_sent() {
    let chat = json_block("### `POST /api/chats/get`");
    for message in chat["messages"].as_array().expect("messages") {
        same_shape::<MessageView>("a message", message);
    }
    same_shape::<CallView>(
        "a tool call",
        &json_block("Each message also has `tool_calls`"),
    );
}

#[test]
fn every_event_is_documented_as_sent() {
    let chat = json_block("### `POST /api/chats/get`");
    let message = chat["messages"][0].to_string();
    let call = json_block("Each message also has `tool_calls`").to_string();
    let usage = chat["messages"][1]["usage"].to_string();
    let table = &API[API
        .find("| `event:` | `data` |")
        .expect("the events' table")..];
    let mut documented = BTreeSet::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with("| `")) {
        let name = row[3..].split('`').next().unwrap();
        let data_start = row.find("| `{").expect("a data cell") + 3;
        let data_end = data_start + row[data_start..].find("}`").expect("its end") + 1;
        let data = row[data_start..data_end]
            .replace("{message}", &message)
            .replace("{call}", &call)
            .replace("{usage}", &usage);
        let data: Value = serde_json::from_str(&data)
            .unwrap_or_else(|e| panic!("the `{name}` row's data is JSON ({e}): {data}"));
        let event: Event = same_shape(name, &data);
        assert_eq!(event.name(), name, "the row's name is its type");
        documented.insert(name.to_owned());
    }
    let all: BTreeSet<String> = Event::NAMES.iter().map(|n| n.to_string()).collect();
    assert_eq!(documented, all, "every event has its row");
}
