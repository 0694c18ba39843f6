//! A model server on this machine, found when no provider is configured: Ollama, llama.cpp's
//! server and LM Studio each answer OpenAI's `GET /models` on an address of their own, so a fresh
//! Switchboard beside one of them answers from the first run.
//!
//! What such a server says is not trusted further than its model names: the answer is read only up
//! to [`MOST_BYTES`], at most [`MOST_MODELS`] names are kept, and a name that is not printable text
//! of a reasonable length is left out. While nothing is on offer, the search is made again when
//! models are asked for (at most every [`LOOK_AGAIN_AFTER`]), so a server started after Switchboard
//! answers without a restart.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Deserialize;
use url::Url;

use crate::llm::{Catalog, Provider};

/// The usual addresses, in the order they are tried: (provider id, what it is, its API's base).
pub const USUAL: [(&str, &str, &str); 3] = [
    ("ollama", "Ollama", "http://127.0.0.1:11434/v1"),
    ("llamacpp", "llama.cpp's server", "http://127.0.0.1:8080/v1"),
    ("lmstudio", "LM Studio", "http://127.0.0.1:1234/v1"),
];

/// How long one address may take to answer: nothing listening is refused at once, and a local
/// server lists its models in milliseconds.
const PATIENCE: Duration = Duration::from_millis(1500);
/// The most of a model list that is read.
const MOST_BYTES: usize = 256 * 1024;
/// The most models taken from one server.
const MOST_MODELS: usize = 200;

/// While nothing is on offer, how long after a search the next may be made.
const LOOK_AGAIN_AFTER: Duration = Duration::from_secs(5);

/// The models on offer: the environment's and those administrators added in the app, or, while
/// there are none, those of a model server found on this machine (searched again while none is).
pub struct Offer {
    /// What is on offer now, put together from the rest.
    catalog: RwLock<Arc<Catalog>>,
    /// From the environment.
    configured: Catalog,
    /// Added in the app (the database's), as last read.
    stored: RwLock<Catalog>,
    /// What the last search of this machine found.
    found: RwLock<Catalog>,
    search: Option<Search>,
}

struct Search {
    candidates: Vec<Candidate>,
    /// When the last search ended; held while one is made, so that requests arriving together
    /// make one search.
    last: tokio::sync::Mutex<Instant>,
}

impl From<Catalog> for Offer {
    /// The environment's catalog, and nothing to search.
    fn from(catalog: Catalog) -> Self {
        Self {
            catalog: RwLock::new(Arc::new(catalog.clone())),
            configured: catalog,
            stored: RwLock::default(),
            found: RwLock::default(),
            search: None,
        }
    }
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Offer {
    /// Nothing configured: what a search of `candidates` just found (perhaps nothing: then
    /// searched again later, while nothing else is on offer).
    pub fn searched(found: Catalog, candidates: Vec<Candidate>) -> Self {
        Self {
            catalog: RwLock::new(Arc::new(found.clone())),
            configured: Catalog::default(),
            stored: RwLock::default(),
            found: RwLock::new(found),
            search: Some(Search {
                candidates,
                last: tokio::sync::Mutex::new(Instant::now()),
            }),
        }
    }

    /// The models on offer now.
    pub fn now(&self) -> Arc<Catalog> {
        read(&self.catalog).clone()
    }

    /// The environment's models.
    pub fn configured(&self) -> &Catalog {
        &self.configured
    }

    /// Offers `stored`, the models added in the app, beside the environment's.
    pub fn set_stored(&self, stored: Catalog) {
        *write(&self.stored) = stored;
        self.compose();
    }

    /// The environment's and the app's models; while there are none, what a search found.
    fn compose(&self) {
        let mut catalog = self.configured.clone().with(read(&self.stored).clone());
        if catalog.is_empty() {
            // The found models, with the limits set in the app on them.
            let limited = std::mem::take(&mut catalog.limited);
            catalog = read(&self.found).clone();
            catalog.limited = limited;
        }
        *write(&self.catalog) = Arc::new(catalog);
    }

    /// The models on offer; while there are none and this machine may be searched, searched again
    /// first (unless it was searched less than [`LOOK_AGAIN_AFTER`] ago).
    pub async fn current(&self) -> Arc<Catalog> {
        let now = self.now();
        let Some(search) = self.search.as_ref().filter(|_| now.is_empty()) else {
            return now;
        };
        let mut last = search.last.lock().await;
        // Another request may have found one while this one waited.
        let now = self.now();
        if !now.is_empty() || last.elapsed() < LOOK_AGAIN_AFTER {
            return now;
        }
        let found = find(&search.candidates).await;
        *last = Instant::now();
        if found.is_empty() {
            return now;
        }
        *write(&self.found) = found;
        self.compose();
        self.now()
    }
}

/// A place to look for a model server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The provider id its models get (`ollama/llama3.2`).
    pub id: String,
    /// What it is, for people (`Ollama`).
    pub label: String,
    /// Its API's base, up to `/v1`.
    pub base_url: Url,
}

impl Candidate {
    /// The usual addresses of Ollama, llama.cpp's server and LM Studio.
    pub fn usual() -> Vec<Candidate> {
        USUAL
            .iter()
            .map(|(id, label, url)| Candidate {
                id: (*id).to_owned(),
                label: (*label).to_owned(),
                base_url: Url::parse(url).expect("the usual addresses are URLs"),
            })
            .collect()
    }

    /// Addresses an administrator gives instead (`local`, `local2`, … as provider ids).
    pub fn given(urls: &[Url]) -> Vec<Candidate> {
        urls.iter()
            .enumerate()
            .map(|(i, url)| Candidate {
                id: if i == 0 {
                    "local".to_owned()
                } else {
                    format!("local{}", i + 1)
                },
                label: "a model server".to_owned(),
                base_url: url.clone(),
            })
            .collect()
    }
}

/// The first candidate that lists models, as a catalog offering them (its first model the
/// default), with a sentence saying what was found; an empty catalog when none does.
pub async fn find(candidates: &[Candidate]) -> Catalog {
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .connect_timeout(PATIENCE)
        // A model server on this machine answers itself; it does not send us elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client with timeouts builds");
    let lists =
        futures_util::future::join_all(candidates.iter().map(|c| models_of(&http, c))).await;
    for (candidate, models) in candidates.iter().zip(lists) {
        match models {
            Ok(models) if !models.is_empty() => {
                tracing::info!(
                    server = %shown(&candidate.base_url),
                    models = models.len(),
                    "no model provider is configured: using {}, found on this machine",
                    candidate.label
                );
                return Catalog {
                    providers: vec![Provider::new(
                        candidate.id.clone(),
                        candidate.base_url.clone(),
                        None,
                    )],
                    models: models
                        .into_iter()
                        .map(|m| (candidate.id.clone(), m))
                        .collect(),
                    aliases: Vec::new(),
                    default: None,
                    found: Some(format!(
                        "No model provider is configured, so Switchboard answers with {}, found at {}.",
                        candidate.label,
                        shown(&candidate.base_url)
                    )),
                    limited: Vec::new(),
                };
            }
            Ok(_) => {
                tracing::info!(server = %candidate.base_url, "a model server here lists no models")
            }
            Err(why) => {
                tracing::debug!(server = %candidate.base_url, "no model server here: {why}")
            }
        }
    }
    Catalog::default()
}

/// `url` as everyone may see it: without a user name or password it may carry.
pub fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

/// The model names `candidate` lists, or why it lists none.
async fn models_of(http: &reqwest::Client, candidate: &Candidate) -> Result<Vec<String>, String> {
    let url = format!(
        "{}/models",
        candidate.base_url.as_str().trim_end_matches('/')
    );
    let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if body.len() + chunk.len() > MOST_BYTES {
            return Err(format!("its model list is over {MOST_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    parse(&body)
}

/// The usable model names of an OpenAI `GET /models` answer.
fn parse(body: &[u8]) -> Result<Vec<String>, String> {
    let list: ModelList =
        serde_json::from_slice(body).map_err(|e| format!("not an OpenAI-style model list: {e}"))?;
    let mut models: Vec<String> = Vec::new();
    for entry in list.data {
        let fits = !entry.id.is_empty()
            && entry.id.len() <= 200
            && entry.id.chars().all(|c| c.is_ascii_graphic());
        if fits && !models.contains(&entry.id) {
            models.push(entry.id);
        }
        if models.len() == MOST_MODELS {
            break;
        }
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_list_gives_its_usable_names_once_each() {
        let body = br#"{"object":"list","data":[
            {"id":"llama3.2:latest","object":"model"},
            {"id":"qwen2.5-coder:7b"},
            {"id":"llama3.2:latest"},
            {"id":"with space"},
            {"id":"<script>"},
            {"id":""}
        ]}"#;
        assert_eq!(
            parse(body).unwrap(),
            ["llama3.2:latest", "qwen2.5-coder:7b", "<script>"],
            "printable names are kept as names (they are shown as text, never as HTML)"
        );
    }

    #[test]
    fn anything_else_is_no_model_list() {
        assert!(parse(b"<html>Not found</html>").is_err());
        assert!(parse(br#"{"models":["a"]}"#).is_err());
        assert_eq!(parse(br#"{"data":[]}"#).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_server_listing_thousands_gives_the_first_two_hundred() {
        let entries: Vec<String> = (0..5000).map(|i| format!(r#"{{"id":"m{i}"}}"#)).collect();
        let body = format!(r#"{{"data":[{}]}}"#, entries.join(","));
        let models = parse(body.as_bytes()).unwrap();
        assert_eq!(models.len(), MOST_MODELS);
        assert_eq!(models[0], "m0");
    }

    #[test]
    fn an_address_is_shown_without_its_credentials() {
        let url = Url::parse("http://me:secret@127.0.0.1:9000/v1").unwrap();
        assert_eq!(shown(&url), "http://127.0.0.1:9000/v1");
    }

    #[test]
    fn given_addresses_get_ids_of_their_own() {
        let urls = [
            Url::parse("http://127.0.0.1:9000/v1").unwrap(),
            Url::parse("http://127.0.0.1:9001/v1").unwrap(),
        ];
        let ids: Vec<String> = Candidate::given(&urls).into_iter().map(|c| c.id).collect();
        assert_eq!(ids, ["local", "local2"]);
        assert_eq!(Candidate::usual()[0].base_url.port(), Some(11434));
    }
}
