//! Many tools, still good answers: when a chat has more tools than a threshold, the model is
//! offered a search tool and the few tools that match the person's question best, rather than all
//! of them (a long tool list costs tokens on every call and makes models choose worse). What the
//! search finds is offered from the next model call of the run on.
//!
//! The ranking is BM25 over each tool's name (split into words), server and description: tool
//! descriptions are short and written in the words people use for the task, and a lexical index
//! needs no model, no download and no second service; it ranks 1,000 tools in well under a
//! millisecond. Embeddings would find synonyms, at the price of an embedding model per deployment.

use std::collections::HashMap;

use serde_json::json;

use super::ToolSpec;
use crate::llm::{self, Message};

/// The name the model calls the search by. Tools of servers are always `<server>__<tool>`, so it
/// cannot collide with one.
pub const SEARCH_TOOL: &str = "search_tools";

/// The tools of the chat offered with the search tool, besides those the search found.
pub const SHOWN: usize = 8;

/// The most tools one search returns.
const FOUND: usize = 8;

/// What a model call is offered.
#[derive(Debug, Default, PartialEq)]
pub struct Offer {
    pub tools: Vec<llm::Tool>,
    /// The search tool is among them; with the model names of the chat's tools offered.
    pub searched: Option<Vec<String>>,
}

/// The tools a model call is offered: all of `specs` when they are `search_over` or fewer (0: no
/// limit), else the search tool, the [`SHOWN`] that match the person's last message best, and
/// those `found` by earlier searches of the run.
pub fn offer(
    specs: &[ToolSpec],
    conversation: &[Message],
    found: &[String],
    search_over: usize,
) -> Offer {
    if search_over == 0 || specs.len() <= search_over {
        return Offer {
            tools: super::offered(specs),
            searched: None,
        };
    }
    let question = conversation
        .iter()
        .rev()
        .find_map(|m| match m {
            Message::User { content } => Some(content.as_str()),
            _ => None,
        })
        .unwrap_or_default();
    let index = Index::new(specs);
    let mut chosen: Vec<usize> = index.search(question, SHOWN);
    for name in found {
        if let Some(i) = specs.iter().position(|s| s.model_name() == *name)
            && !chosen.contains(&i)
        {
            chosen.push(i);
        }
    }
    let picked: Vec<ToolSpec> = chosen.iter().map(|&i| specs[i].clone()).collect();
    let mut tools = vec![search_tool(specs.len())];
    tools.extend(super::offered(&picked));
    Offer {
        tools,
        searched: Some(picked.iter().map(ToolSpec::model_name).collect()),
    }
}

fn search_tool(count: usize) -> llm::Tool {
    llm::Tool {
        name: SEARCH_TOOL.into(),
        description: format!(
            "Finds tools for a task among the {count} tools this chat has (only a few are offered at a time). Returns the best matches with what they do; they are offered to you from then on, to call as usual."
        ),
        parameters: json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What you want to do, in a few words"}
            },
            "required": ["query"]
        }),
    }
}

/// Runs a search the model asked for (`arguments` as it wrote them): the model names of the tools
/// found, and what the model is told.
pub fn search(specs: &[ToolSpec], arguments: &serde_json::Value) -> (Vec<String>, String) {
    let query = arguments
        .get("query")
        .and_then(|q| q.as_str())
        .unwrap_or_default();
    let found: Vec<&ToolSpec> = Index::new(specs)
        .search(query, FOUND)
        .into_iter()
        .map(|i| &specs[i])
        .collect();
    if found.is_empty() {
        return (
            Vec::new(),
            format!("No tool matches '{query}'. Try other words."),
        );
    }
    let lines: Vec<String> = found
        .iter()
        .map(|s| format!("- {}: {}", s.model_name(), s.description))
        .collect();
    (
        found.iter().map(|s| s.model_name()).collect(),
        format!(
            "Tools that match '{query}', now offered to you:\n{}",
            lines.join("\n")
        ),
    )
}

/// Lower-case words of `text`: split at anything not a letter or digit and where a lower-case
/// letter meets an upper-case one (`getInvoice`), a plural's `s` dropped.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut last_lower = false;
    for c in text.chars() {
        let boundary = !c.is_alphanumeric() || (c.is_uppercase() && last_lower);
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        }
        last_lower = c.is_lowercase();
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
        .into_iter()
        .filter(|w| w.chars().count() > 1)
        .map(|w| match w.strip_suffix('s') {
            Some(stem) if stem.chars().count() > 2 && !stem.ends_with('s') => stem.to_owned(),
            _ => w,
        })
        .collect()
}

/// A BM25 index of tools.
struct Index {
    /// Each tool's word counts, and its length in words.
    docs: Vec<(HashMap<String, f64>, f64)>,
    /// In how many tools each word appears.
    df: HashMap<String, f64>,
    average: f64,
}

impl Index {
    fn new(specs: &[ToolSpec]) -> Self {
        let mut df: HashMap<String, f64> = HashMap::new();
        let docs: Vec<(HashMap<String, f64>, f64)> = specs
            .iter()
            .map(|s| {
                let text = format!("{} {} {} {}", s.tool, s.tool, s.server, s.description);
                let words = words(&text);
                let mut counts: HashMap<String, f64> = HashMap::new();
                for w in &words {
                    *counts.entry(w.clone()).or_default() += 1.0;
                }
                for w in counts.keys() {
                    *df.entry(w.clone()).or_default() += 1.0;
                }
                (counts, words.len() as f64)
            })
            .collect();
        let average = docs.iter().map(|(_, len)| len).sum::<f64>() / docs.len().max(1) as f64;
        Self { docs, df, average }
    }

    /// The `k` best tools for `query`, best first (ties in the tools' order); none match no word.
    fn search(&self, query: &str, k: usize) -> Vec<usize> {
        const K1: f64 = 1.2;
        const B: f64 = 0.75;
        let n = self.docs.len() as f64;
        let mut query = words(query);
        query.sort();
        query.dedup();
        let mut scored: Vec<(usize, f64)> = self
            .docs
            .iter()
            .enumerate()
            .map(|(i, (counts, len))| {
                let score = query
                    .iter()
                    .filter_map(|w| {
                        let tf = *counts.get(w)?;
                        let df = self.df.get(w).copied().unwrap_or_default();
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        Some(idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / self.average)))
                    })
                    .sum::<f64>();
                (i, score)
            })
            .filter(|(_, score)| *score > 0.0)
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.into_iter().take(k).map(|(i, _)| i).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tool: &str, description: &str) -> ToolSpec {
        ToolSpec {
            server: "work".into(),
            server_key: "k".into(),
            tool: tool.into(),
            description: description.into(),
            input_schema: json!({"type": "object"}),
            annotations: Default::default(),
        }
    }

    fn many() -> Vec<ToolSpec> {
        let mut specs: Vec<ToolSpec> = (0..100)
            .map(|i| {
                spec(
                    &format!("noise_{i}"),
                    "Does something unrelated to the task",
                )
            })
            .collect();
        specs.push(spec(
            "createInvoice",
            "Create billing invoices for customers",
        ));
        specs.push(spec(
            "list_tickets",
            "List support tickets in the help desk",
        ));
        specs
    }

    #[test]
    fn words_split_names_and_drop_plurals() {
        assert_eq!(
            words("getInvoices for list_tickets, v2"),
            ["get", "invoice", "for", "list", "ticket", "v2"]
        );
    }

    #[test]
    fn few_tools_are_all_offered() {
        let specs = vec![spec("a", "x"), spec("b", "y")];
        let offer = offer(&specs, &[], &[], 40);
        assert_eq!(offer.tools.len(), 2);
        assert_eq!(offer.searched, None);
        assert_eq!(super::super::offered(&specs), offer.tools);
    }

    #[test]
    fn many_tools_offer_the_search_and_the_best_matches() {
        let specs = many();
        let asked = [Message::User {
            content: "Please send an invoice to ACME".into(),
        }];
        let offer = offer(&specs, &asked, &[], 40);
        assert_eq!(offer.tools[0].name, SEARCH_TOOL);
        assert!(offer.tools[0].description.contains("102 tools"));
        let names = offer.searched.unwrap();
        assert_eq!(names[0], "work__createInvoice", "{names:?}");
        assert!(names.len() <= SHOWN);

        // What a search found is offered from then on.
        let (found, told) = search(&specs, &json!({"query": "support ticket"}));
        assert_eq!(found, ["work__list_tickets"]);
        assert!(
            told.contains("work__list_tickets: List support tickets"),
            "{told}"
        );
        let later = super::offer(&specs, &asked, &found, 40);
        assert!(
            later
                .searched
                .unwrap()
                .contains(&"work__list_tickets".to_owned())
        );

        let (none, told) = search(&specs, &json!({"query": "zebra"}));
        assert!(none.is_empty());
        assert!(told.contains("No tool matches 'zebra'"), "{told}");
        // Zero is no limit.
        assert_eq!(super::offer(&specs, &asked, &[], 0).tools.len(), 102);
    }
}
