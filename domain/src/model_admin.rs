//! The model providers administrators add in the app (`/admin/models`), beside those of the
//! environment: checked, stored with their API keys encrypted (never shown back), their models
//! discovered from the provider's model list or typed, and tried with a tiny request. Also the
//! aliases and the default model set in the app. [`crate::runs::Runs::models_changed`] puts a
//! change on offer on every instance.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use sqlx::types::Json;
use url::Url;

use crate::llm::{
    Catalog, LlmClient, Message, Provider, ProviderKind, Request, StreamEvent, qualified,
};
use crate::secrets::SecretKey;
use crate::users::User;
use crate::{Database, Error, Result};

/// Providers the app may hold.
pub const MAX_PROVIDERS: usize = 50;
/// Models one provider may offer.
pub const MAX_MODELS: usize = 200;
/// The longest API key taken.
const MAX_KEY: usize = 4096;
/// How long discovering a provider's models, or trying one, may take.
const PATIENCE: Duration = Duration::from_secs(20);
/// The most of a model list that is read.
const MOST_BYTES: usize = 512 * 1024;

/// A provider as an administrator enters it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderInput {
    pub id: String,
    pub kind: ProviderKind,
    pub base_url: String,
    /// A new API key; None keeps the stored one.
    pub api_key: Option<String>,
    /// Removes the stored API key.
    pub remove_api_key: bool,
    pub models: Vec<String>,
    pub thinking_budget: Option<u32>,
    /// The tokens its models take in one request, when known.
    pub context_window: Option<u32>,
}

/// A provider as the admin page shows it: its key is never given back, only whether it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminProvider {
    pub id: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub has_api_key: bool,
    pub models: Vec<String>,
    pub thinking_budget: Option<u32>,
    pub context_window: Option<u32>,
    /// From the environment (read-only here) rather than the app.
    pub from_environment: bool,
}

/// What only administrators may do here.
const CHANGE: &str = "change the models on offer";

/// What an API key is sealed to: its provider.
fn context(id: &str) -> Vec<u8> {
    format!("model_provider:{id}").into_bytes()
}

/// The providers, aliases and default stored in the app, as a catalog (their keys decrypted).
/// A provider whose key cannot be decrypted (another secret key) is left out, with a warning.
pub async fn stored_catalog(db: &Database, key: &SecretKey) -> Result<Catalog> {
    let rows = sqlx::query!(
        r#"SELECT id, kind, base_url, api_key, models, thinking_budget, context_window
           FROM model_providers ORDER BY created_at, id"#
    )
    .fetch_all(db.pool())
    .await?;
    let mut catalog = Catalog::default();
    for row in rows {
        let (Some(kind), Ok(base_url)) =
            (ProviderKind::parse(&row.kind), Url::parse(&row.base_url))
        else {
            continue;
        };
        let api_key = match row
            .api_key
            .as_deref()
            .map(|k| key.open(&context(&row.id), k))
        {
            None => None,
            Some(Ok(plain)) => Some(String::from_utf8_lossy(&plain).into_owned()),
            Some(Err(e)) => {
                tracing::warn!(provider = row.id, "a model provider is left out: {e}");
                continue;
            }
        };
        let mut provider = Provider::new(row.id.clone(), base_url, api_key).with_kind(kind);
        provider.thinking_budget = row.thinking_budget.map(|b| b.max(0) as u32);
        provider.context_window = row.context_window.map(|w| w.max(0) as u32);
        catalog
            .models
            .extend(row.models.into_iter().map(|m| (row.id.clone(), m)));
        catalog.providers.push(provider);
    }
    (catalog.aliases, catalog.default) = read_settings(db).await?;
    catalog.limited = read_limits(db).await?;
    Ok(catalog)
}

/// The models limited to groups, by name.
async fn read_limits(db: &Database) -> Result<Vec<(String, Vec<String>)>> {
    Ok(
        sqlx::query!("SELECT model, groups FROM model_groups ORDER BY model")
            .fetch_all(db.pool())
            .await?
            .into_iter()
            .map(|r| (r.model, r.groups))
            .collect(),
    )
}

/// The models limited to groups (administrators).
pub async fn limits(db: &Database, actor: &User) -> Result<Vec<(String, Vec<String>)>> {
    actor.must_be_admin(CHANGE)?;
    read_limits(db).await
}

/// Limits models to groups (administrators): `limits` replaces every limit. Each model is a
/// `<provider>/<model>` on offer in `offered`, named once, with one group at least.
pub async fn save_limits(
    db: &Database,
    actor: &User,
    limits: Vec<(String, Vec<String>)>,
    offered: &Catalog,
) -> Result<()> {
    actor.must_be_admin(CHANGE)?;
    for (i, (model, groups)) in limits.iter().enumerate() {
        let known = model
            .split_once('/')
            .is_some_and(|(p, m)| offered.models.iter().any(|(op, om)| op == p && om == m));
        if !known {
            return Err(Error::Invalid(format!(
                "'{model}' is not a model on offer: limit models by their <provider>/<model> name (aliases follow their models)."
            )));
        }
        if groups.is_empty() {
            return Err(Error::Invalid(format!(
                "Name the groups '{model}' is limited to, or remove its line."
            )));
        }
        for group in groups {
            crate::access::check_group_name(group)?;
        }
        if limits[..i].iter().any(|(m, _)| m == model) {
            return Err(Error::Invalid(format!("'{model}' is named twice.")));
        }
    }
    let (models, groups): (Vec<String>, Vec<String>) =
        limits.iter().map(|(m, g)| (m.clone(), g.join(","))).unzip();
    let mut tx = db.pool().begin().await?;
    sqlx::query!("DELETE FROM model_groups")
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "INSERT INTO model_groups (model, groups)
         SELECT m, string_to_array(g, ',') FROM unnest($1::text[], $2::text[]) AS x(m, g)",
        &models,
        &groups
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Every provider, the environment's first, for the admin page.
pub async fn providers(
    db: &Database,
    actor: &User,
    environment: &Catalog,
) -> Result<Vec<AdminProvider>> {
    actor.must_be_admin(CHANGE)?;
    let shown = |p: &Provider, models: Vec<String>, from_environment| AdminProvider {
        id: p.id.clone(),
        kind: p.kind,
        base_url: crate::local_models::shown(&p.base_url),
        has_api_key: p.api_key.is_some(),
        models,
        thinking_budget: p.thinking_budget,
        context_window: p.context_window,
        from_environment,
    };
    let models_of = |c: &Catalog, id: &str| -> Vec<String> {
        c.models
            .iter()
            .filter(|(p, _)| p == id)
            .map(|(_, m)| m.clone())
            .collect()
    };
    let mut all: Vec<AdminProvider> = environment
        .providers
        .iter()
        .map(|p| shown(p, models_of(environment, &p.id), true))
        .collect();
    let rows = sqlx::query!(
        r#"SELECT id, kind, base_url, api_key IS NOT NULL AS "has_key!", models, thinking_budget,
                  context_window
           FROM model_providers ORDER BY created_at, id"#
    )
    .fetch_all(db.pool())
    .await?;
    all.extend(rows.into_iter().map(|r| {
        AdminProvider {
            kind: ProviderKind::parse(&r.kind).unwrap_or_default(),
            base_url: Url::parse(&r.base_url)
                .map(|u| crate::local_models::shown(&u))
                .unwrap_or(r.base_url),
            has_api_key: r.has_key,
            models: r.models,
            thinking_budget: r.thinking_budget.map(|b| b.max(0) as u32),
            context_window: r.context_window.map(|w| w.max(0) as u32),
            from_environment: false,
            id: r.id,
        }
    }));
    Ok(all)
}

/// Checks what an administrator entered: the id (and that it names no provider of the
/// environment), the address, the models, the key's size and the thinking budget.
fn check(input: &ProviderInput, environment: &Catalog) -> Result<Url> {
    let invalid = |m: String| Err(Error::Invalid(m));
    let id = input.id.as_str();
    let valid_id = !id.is_empty()
        && id.len() <= 32
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid_id {
        return invalid(format!(
            "'{id}' is not a usable provider id: use lower-case letters, digits and '-' (at most 32)."
        ));
    }
    if environment.providers.iter().any(|p| p.id == id) {
        return invalid(format!(
            "The provider '{id}' comes from the environment (SWITCHBOARD_LLM_PROVIDERS): choose another id, or change it there."
        ));
    }
    let Some(url) = Url::parse(input.base_url.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
    else {
        return invalid(format!(
            "'{}' is not an http(s) address. Give the API's address up to /v1 (https://api.openai.com/v1, https://api.anthropic.com/v1, http://127.0.0.1:11434/v1).",
            input.base_url
        ));
    };
    if input.models.is_empty() {
        return invalid(
            "Give at least one model (discover them from the provider, or type their names)."
                .into(),
        );
    }
    if input.models.len() > MAX_MODELS {
        return invalid(format!(
            "A provider offers at most {MAX_MODELS} models here."
        ));
    }
    if let Some(bad) = input
        .models
        .iter()
        .find(|m| m.is_empty() || m.len() > 200 || !m.chars().all(|c| c.is_ascii_graphic()))
    {
        return invalid(format!(
            "'{bad}' is not a model name (printable characters without spaces, at most 200)."
        ));
    }
    if let Some(w) = input.context_window
        && !(1024..=10_000_000).contains(&w)
    {
        return invalid(format!(
            "A context window is from 1024 to 10000000 tokens; {w} is not."
        ));
    }
    if input.api_key.as_ref().is_some_and(|k| k.len() > MAX_KEY) {
        return invalid(format!("An API key is at most {MAX_KEY} characters."));
    }
    match input.thinking_budget {
        Some(_) if input.kind != ProviderKind::Anthropic => invalid(
            "A thinking budget is for Anthropic providers; OpenAI-compatible reasoning models think by themselves.".into(),
        ),
        Some(b) if !(1024..=128_000).contains(&b) => invalid(format!(
            "A thinking budget is from 1024 to 128000 tokens; {b} is not."
        )),
        _ => Ok(url),
    }
}

/// Adds a provider (`previous` None) or changes one; administrators only. False when there is no
/// provider `previous` to change.
pub async fn save(
    db: &Database,
    key: &SecretKey,
    actor: &User,
    previous: Option<&str>,
    input: ProviderInput,
    environment: &Catalog,
) -> Result<bool> {
    actor.must_be_admin(CHANGE)?;
    let url = check(&input, environment)?;
    let mut models = input.models.clone();
    models.dedup();
    let id = input.id.as_str();
    // The key as it will be stored: the new one, the old one (sealed again when the id changes),
    // or none.
    let old_key: Option<Vec<u8>> = match previous {
        Some(previous) => {
            let row = sqlx::query_scalar!(
                "SELECT api_key FROM model_providers WHERE id = $1",
                previous
            )
            .fetch_optional(db.pool())
            .await?;
            let Some(stored) = row else {
                return Ok(false);
            };
            stored
                .map(|sealed| key.open(&context(previous), &sealed))
                .transpose()?
        }
        None => None,
    };
    let plain = match (&input.api_key, input.remove_api_key) {
        (_, true) => None,
        (Some(new), false) if !new.trim().is_empty() => Some(new.trim().as_bytes().to_vec()),
        _ => old_key,
    };
    let sealed = plain.map(|p| key.seal(&context(id), &p));
    let budget = input.thinking_budget.map(|b| b as i32);
    let window = input.context_window.map(|w| w as i32);
    let written = match previous {
        None => {
            let count = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM model_providers"#)
                .fetch_one(db.pool())
                .await?;
            if count as usize >= MAX_PROVIDERS {
                return Err(Error::Invalid(format!(
                    "The app holds at most {MAX_PROVIDERS} providers: remove one first."
                )));
            }
            sqlx::query!(
                r#"INSERT INTO model_providers (id, kind, base_url, api_key, models, thinking_budget,
                                               context_window)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
                id,
                input.kind.as_str(),
                url.as_str(),
                sealed,
                &models,
                budget,
                window,
            )
            .execute(db.pool())
            .await
        }
        Some(previous) => {
            sqlx::query!(
                r#"UPDATE model_providers SET id = $2, kind = $3, base_url = $4, api_key = $5,
                          models = $6, thinking_budget = $7, context_window = $8,
                          updated_at = now()
                   WHERE id = $1"#,
                previous,
                id,
                input.kind.as_str(),
                url.as_str(),
                sealed,
                &models,
                budget,
                window,
            )
            .execute(db.pool())
            .await
        }
    };
    match written {
        Ok(done) => Ok(done.rows_affected() == 1),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::Conflict(format!(
            "There is a provider '{id}' already: choose another id."
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Removes a provider of the app; false when there is none with that id.
pub async fn remove(db: &Database, actor: &User, id: &str) -> Result<bool> {
    actor.must_be_admin(CHANGE)?;
    let done = sqlx::query!("DELETE FROM model_providers WHERE id = $1", id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The aliases and the default model set in the app.
pub async fn settings(
    db: &Database,
    actor: &User,
) -> Result<(Vec<(String, String)>, Option<String>)> {
    actor.must_be_admin(CHANGE)?;
    read_settings(db).await
}

async fn read_settings(db: &Database) -> Result<(Vec<(String, String)>, Option<String>)> {
    let row = sqlx::query!(
        r#"SELECT aliases AS "aliases: Json<Vec<(String, String)>>", default_model
           FROM model_settings"#
    )
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map_or_else(Default::default, |r| (r.aliases.0, r.default_model)))
}

/// Sets the aliases and the default model of the app, checked against `offered` (every model
/// on offer with them: the environment's and the app's).
pub async fn save_settings(
    db: &Database,
    actor: &User,
    aliases: Vec<(String, String)>,
    default: Option<String>,
    offered: &Catalog,
) -> Result<()> {
    actor.must_be_admin(CHANGE)?;
    let mut check = offered.clone();
    check
        .aliases
        .retain(|(a, _)| !aliases.iter().any(|(b, _)| a == b));
    check.aliases.extend(aliases.iter().cloned());
    check.default = default.clone();
    if let Some(bad) = aliases.iter().find(|(a, _)| {
        a.is_empty() || a.len() > 64 || a.contains('/') || !a.chars().all(|c| c.is_ascii_graphic())
    }) {
        return Err(Error::Invalid(format!(
            "'{}' is not a usable alias: printable characters without spaces or '/', at most 64.",
            bad.0
        )));
    }
    check
        .validate()
        .map_err(|e| Error::Invalid(format!("{e}.")))?;
    sqlx::query!(
        r#"INSERT INTO model_settings (only_row, aliases, default_model) VALUES (true, $1, $2)
           ON CONFLICT (only_row) DO UPDATE SET aliases = $1, default_model = $2, updated_at = now()"#,
        Json(&aliases) as _,
        default,
    )
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The models a provider lists (`GET <base>/models`, in OpenAI's and Anthropic's shape alike), or
/// why it lists none.
pub async fn discover(
    kind: ProviderKind,
    base_url: &str,
    api_key: Option<&str>,
) -> Result<Vec<String>> {
    let unreachable = |m: String| Error::Unavailable(m);
    let url = Url::parse(base_url.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| Error::Invalid(format!("'{base_url}' is not an http(s) address.")))?;
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let mut request = http.get(format!(
        "{}/models?limit=1000",
        url.as_str().trim_end_matches('/')
    ));
    request = match (kind, api_key) {
        (ProviderKind::Anthropic, Some(key)) => request
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01"),
        (ProviderKind::Anthropic, None) => request.header("anthropic-version", "2023-06-01"),
        (ProviderKind::OpenAi, Some(key)) => request.bearer_auth(key),
        (ProviderKind::OpenAi, None) => request,
    };
    let failed = |detail: String| {
        unreachable(format!(
            "Could not read the models of {} ({detail}). Check the address and the API key, or type the models' names.",
            crate::local_models::shown(&url)
        ))
    };
    let response = request
        .send()
        .await
        .map_err(|e| failed(crate::error::chain(&e)))?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| failed(e.to_string()))?;
        if body.len() + chunk.len() > MOST_BYTES {
            return Err(failed(format!("its model list is over {MOST_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let list: Value =
        serde_json::from_slice(&body).map_err(|_| failed("not a model list".into()))?;
    let names: Vec<String> = list["data"]
        .as_array()
        .ok_or_else(|| failed("not a model list".into()))?
        .iter()
        .filter_map(|m| m["id"].as_str())
        .filter(|id| !id.is_empty() && id.len() <= 200 && id.chars().all(|c| c.is_ascii_graphic()))
        .take(MAX_MODELS)
        .map(str::to_owned)
        .collect();
    Ok(names)
}

/// Tries `model` of `provider` with a tiny request: what it answered (the first 200 characters),
/// or why it could not, in words for the administrator.
pub async fn try_model(
    client: &LlmClient,
    provider: &Provider,
    model: &str,
) -> std::result::Result<String, String> {
    let request = Request {
        model: model.to_owned(),
        messages: vec![Message::User {
            content: "Reply with one word: OK.".into(),
        }],
        tools: Vec::new(),
    };
    let answer = async {
        let mut stream = client
            .stream(provider, &request)
            .await
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        while let Some(event) = stream.next().await {
            match event.map_err(|e| e.to_string())? {
                StreamEvent::Token(t) => text.push_str(&t),
                StreamEvent::Thinking(_) => {}
                StreamEvent::Finished { .. } => break,
            }
            if text.chars().count() >= 200 {
                break;
            }
        }
        Ok(text.chars().take(200).collect::<String>())
    };
    match tokio::time::timeout(PATIENCE, answer).await {
        Ok(Ok(text)) if text.trim().is_empty() => Err(format!(
            "{} answered with no text.",
            qualified(&provider.id, model)
        )),
        Ok(result) => result,
        Err(_) => Err(format!(
            "{} did not answer within {} s.",
            qualified(&provider.id, model),
            PATIENCE.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ProviderInput {
        ProviderInput {
            id: "claude".into(),
            kind: ProviderKind::Anthropic,
            base_url: "https://api.anthropic.com/v1".into(),
            models: vec!["claude-sonnet-4-5".into()],
            ..ProviderInput::default()
        }
    }

    #[test]
    fn what_an_administrator_enters_is_checked_with_what_to_do() {
        let env = Catalog {
            providers: vec![Provider::new(
                "openai",
                Url::parse("https://api.openai.com/v1").unwrap(),
                None,
            )],
            ..Catalog::default()
        };
        assert!(check(&input(), &env).is_ok());
        let refused = |change: &dyn Fn(&mut ProviderInput), says: &str| {
            let mut i = input();
            change(&mut i);
            let message = check(&i, &env).unwrap_err().to_string();
            assert!(message.contains(says), "{message}");
        };
        refused(&|i| i.id = "Claude!".into(), "not a usable provider id");
        refused(&|i| i.id = "openai".into(), "comes from the environment");
        refused(
            &|i| i.base_url = "file:///etc/passwd".into(),
            "not an http(s) address",
        );
        refused(&|i| i.models.clear(), "at least one model");
        refused(&|i| i.models = vec!["two words".into()], "not a model name");
        refused(&|i| i.api_key = Some("k".repeat(5000)), "at most 4096");
        refused(&|i| i.thinking_budget = Some(10), "from 1024 to 128000");
        refused(&|i| i.context_window = Some(100), "from 1024 to 10000000");
        refused(
            &|i| {
                i.kind = ProviderKind::OpenAi;
                i.thinking_budget = Some(2048);
            },
            "for Anthropic providers",
        );
    }
}
