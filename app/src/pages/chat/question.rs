//! A tool server's question while its call runs: a form drawn from the schema it sent (checked
//! here for what is required, and by the server against the whole schema), or a page to open;
//! answered, declined or cancelled by the person. The chat's events then take the card away.

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::{Map, Value};

use crate::components::styles::INPUT;
use crate::questions::{Field, QuestionView, answer_question, fields};

const BUTTON: &str = "rounded-lg border border-zinc-200 px-2 py-1 text-xs hover:bg-zinc-100 disabled:opacity-50 dark:border-zinc-700 dark:hover:bg-zinc-800";
const PRIMARY: &str = "rounded-lg bg-zinc-900 px-2 py-1 text-xs font-medium text-white hover:bg-zinc-700 disabled:opacity-50 dark:bg-zinc-100 dark:text-zinc-900 dark:hover:bg-zinc-300";

/// A field's value as typed: text (numbers too), a yes/no, or the choices ticked.
#[derive(Clone, Copy)]
enum Typed {
    Text(RwSignal<String>),
    Yes(RwSignal<bool>),
    Ticked(RwSignal<Vec<String>>),
}

#[component]
pub(super) fn QuestionCard(chat_id: String, question: QuestionView) -> impl IntoView {
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let form = question.schema.as_ref().map(fields).unwrap_or_default();
    let values: Vec<(Field, Typed)> = form
        .into_iter()
        .map(|f| {
            let value = match f.kind.as_str() {
                "boolean" => Typed::Yes(RwSignal::new(
                    f.default.as_ref().and_then(Value::as_bool).unwrap_or(false),
                )),
                "array" => Typed::Ticked(RwSignal::new(
                    f.default
                        .as_ref()
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                )),
                _ => Typed::Text(RwSignal::new(match &f.default {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => String::new(),
                })),
            };
            (f, value)
        })
        .collect();
    let target = StoredValue::new((chat_id, question.id.clone()));
    let send = move |action: &'static str, content: Option<Value>| {
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            let (chat, id) = target.get_value();
            if let Err(e) = answer_question(chat, id, action.into(), content).await {
                busy.set(false);
                error.set(Some(e.message));
            }
        });
    };
    let read = StoredValue::new(values.clone());
    let accept = move || {
        let mut content = Map::new();
        for (field, value) in read.get_value() {
            let value = match value {
                Typed::Yes(v) => Value::Bool(v.get_untracked()),
                Typed::Ticked(v) => Value::from(v.get_untracked()),
                Typed::Text(v) => {
                    let text = v.get_untracked();
                    if text.trim().is_empty() {
                        if field.required {
                            error.set(Some(format!("Fill in '{}': it is required.", field.title)));
                            return;
                        }
                        continue;
                    }
                    match field.kind.as_str() {
                        "number" | "integer" => match text.trim().parse::<f64>() {
                            Ok(n) if field.kind == "integer" && n.fract() == 0.0 => {
                                Value::from(n as i64)
                            }
                            Ok(n) => Value::from(n),
                            Err(_) => {
                                error.set(Some(format!("'{}' must be a number.", field.title)));
                                return;
                            }
                        },
                        _ => Value::String(text),
                    }
                }
            };
            content.insert(field.name, value);
        }
        send("accept", Some(Value::Object(content)));
    };
    let url = question.url.clone();
    view! {
        <form data-testid="question" data-question=question.id.clone()
            class="rounded-xl border border-indigo-300 bg-indigo-50/60 p-3 text-sm dark:border-indigo-800 dark:bg-indigo-950/40"
            on:submit=move |ev| { ev.prevent_default(); if url.is_some() { send("accept", None) } else { accept() } }>
            <p class="text-xs font-medium text-indigo-900 dark:text-indigo-200">{format!("{} asks you:", question.server)}</p>
            <p class="mt-1 whitespace-pre-wrap" data-testid="question-message">{question.message.clone()}</p>
            {question.url.clone().map(|url| view! {
                <p class="mt-2 text-xs">"Open " <a class="underline" data-testid="question-link" href=url.clone() target="_blank" rel="noopener noreferrer nofollow">{url.clone()}</a> ", then say when you are done."</p>
            })}
            <div class="mt-2 space-y-2">
                {values.into_iter().map(|(field, value)| view! { <FieldInput field value /> }).collect_view()}
            </div>
            {move || error.get().map(|e| view! { <p role="alert" data-testid="question-error" class="mt-2 text-xs text-red-700 dark:text-red-400">{e}</p> })}
            <div class="mt-3 flex gap-2">
                <button type="submit" data-testid="question-accept" class=PRIMARY prop:disabled=move || busy.get()>
                    {if question.url.is_some() { "Done" } else { "Send" }}
                </button>
                <button type="button" data-testid="question-decline" class=BUTTON prop:disabled=move || busy.get()
                    on:click=move |_| send("decline", None)>"Decline"</button>
                <button type="button" data-testid="question-cancel" class=BUTTON prop:disabled=move || busy.get()
                    on:click=move |_| send("cancel", None)>"Cancel the call"</button>
            </div>
        </form>
    }
}

#[component]
fn FieldInput(field: Field, value: Typed) -> impl IntoView {
    let label = format!("{}{}", field.title, if field.required { " *" } else { "" });
    let hint = field.description.clone();
    let name = field.name.clone();
    let control = match value {
        Typed::Yes(v) => view! {
            <input type="checkbox" data-field=name prop:checked=move || v.get() on:change=move |ev| v.set(event_target_checked(&ev)) />
        }.into_any(),
        Typed::Ticked(v) => field.choices.iter().map(|(choice, title)| {
            let (c1, c2) = (choice.clone(), choice.clone());
            view! {
                <label class="mr-3 inline-flex items-center gap-1 text-xs">
                    <input type="checkbox" data-field=name.clone() data-choice=choice.clone()
                        prop:checked=move || v.with(|t| t.contains(&c1))
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            v.update(|t| { t.retain(|x| *x != c2); if on { t.push(c2.clone()) } });
                        } />
                    {title.clone()}
                </label>
            }
        }).collect_view().into_any(),
        Typed::Text(v) if !field.choices.is_empty() => view! {
            <select class=INPUT data-field=name prop:value=move || v.get() on:change=move |ev| v.set(event_target_value(&ev))>
                <option value="">"—"</option>
                {field.choices.iter().map(|(choice, title)| view! { <option value=choice.clone()>{title.clone()}</option> }).collect_view()}
            </select>
        }.into_any(),
        Typed::Text(v) => {
            let kind = match (field.kind.as_str(), field.format.as_deref()) {
                ("number" | "integer", _) => "number",
                (_, Some("email")) => "email",
                (_, Some("uri")) => "url",
                (_, Some("date")) => "date",
                _ => "text",
            };
            view! {
                <input type=kind step="any" class=format!("{INPUT} w-full") data-field=name
                    prop:value=move || v.get() on:input=move |ev| v.set(event_target_value(&ev)) />
            }.into_any()
        }
    };
    view! {
        <label class="block text-xs">
            <span class="font-medium">{label}</span>
            {hint.map(|h| view! { <span class="text-zinc-500">" · "{h}</span> })}
            <div class="mt-1">{control}</div>
        </label>
    }
}
