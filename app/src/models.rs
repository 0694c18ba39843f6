//! The models on offer, as administrators set them up in the app (`/api/admin/models/...`):
//! providers added, changed, tried and removed at run time (those of the environment listed
//! read-only), their models discovered or typed, and the aliases and default model. A change is
//! on offer at once, on every instance.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// A provider on the Models page. Its API key is never given back: only whether it has one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderView {
    pub id: String,
    /// `openai` or `anthropic`.
    pub kind: String,
    pub base_url: String,
    pub has_api_key: bool,
    pub models: Vec<String>,
    pub thinking_budget: Option<u32>,
    /// The tokens its models take in one request, when set.
    pub context_window: Option<u32>,
    /// From the environment: read-only here.
    pub from_environment: bool,
}

/// The Models page's data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelsAdmin {
    pub providers: Vec<ProviderView>,
    /// The aliases set in the app, `alias=provider/model` separated by commas.
    pub aliases: String,
    /// The default model set in the app (None: the environment's, or the first model).
    pub default: Option<String>,
    /// Every model and alias on offer.
    pub choices: Vec<String>,
    /// The providers marked down now, after failing repeatedly.
    pub down: Vec<String>,
    /// The models limited to groups, one `provider/model: group, group` a line.
    #[serde(default)]
    pub limits: String,
}

/// `POST /api/admin/models/list` (administrators): every provider, the app's aliases and default,
/// and the names on offer.
#[server(endpoint = "admin/models/list")]
pub async fn admin_models() -> Result<ModelsAdmin, AppError> {
    let user = crate::ssr::current_user()?;
    let runs = crate::ssr::runs()?;
    let db = crate::ssr::db()?;
    let providers = domain::model_admin::providers(&db, &user, runs.configured_models()).await?;
    let (aliases, default) = domain::model_admin::settings(&db, &user).await?;
    let limits = domain::model_admin::limits(&db, &user).await?;
    Ok(ModelsAdmin {
        limits: limits
            .iter()
            .map(|(model, groups)| format!("{model}: {}", groups.join(", ")))
            .collect::<Vec<_>>()
            .join("\n"),
        providers: providers
            .into_iter()
            .map(|p| ProviderView {
                id: p.id,
                kind: p.kind.as_str().to_owned(),
                base_url: p.base_url,
                has_api_key: p.has_api_key,
                models: p.models,
                thinking_budget: p.thinking_budget,
                context_window: p.context_window,
                from_environment: p.from_environment,
            })
            .collect(),
        aliases: aliases
            .iter()
            .map(|(a, t)| format!("{a}={t}"))
            .collect::<Vec<_>>()
            .join(", "),
        default,
        choices: runs.offered().await.choices(),
        down: runs.llm().down(),
    })
}

pub use save::{SaveProvider, save_provider};

#[expect(clippy::too_many_arguments, reason = "one argument per form field")]
mod save {
    use leptos::prelude::*;

    use crate::error::AppError;

    /// `POST /api/admin/models/save` (administrators) with `id`, `kind` (`openai` or
    /// `anthropic`), `base_url`, `models` (names separated by commas, spaces or lines), and
    /// optionally `previous` (the id of the provider to change; empty adds one), `api_key` (empty
    /// keeps the stored one), `remove_api_key`, `thinking_budget` (Anthropic's, in tokens) and
    /// `context_window` (the tokens its models take in one request; a longer chat is trimmed).
    #[server(endpoint = "admin/models/save")]
    pub async fn save_provider(
        previous: Option<String>,
        id: String,
        kind: String,
        base_url: String,
        models: String,
        api_key: Option<String>,
        remove_api_key: Option<bool>,
        thinking_budget: Option<String>,
        context_window: Option<String>,
    ) -> Result<(), AppError> {
        use domain::llm::ProviderKind;
        let user = crate::ssr::current_user()?;
        let runs = crate::ssr::runs()?;
        let kind = ProviderKind::parse(kind.trim()).ok_or_else(|| {
            AppError::invalid(format!(
                "'{kind}' is not a kind of provider: `openai` (Chat Completions) or `anthropic`."
            ))
        })?;
        let tokens = |field: Option<String>, what: &str| -> Result<Option<u32>, AppError> {
            match field.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(text) => text.parse::<u32>().map(Some).map_err(|_| {
                    AppError::invalid(format!("The {what} '{text}' is not a number of tokens."))
                }),
            }
        };
        let thinking_budget = tokens(thinking_budget, "thinking budget")?;
        let context_window = tokens(context_window, "context window")?;
        let input = domain::model_admin::ProviderInput {
            id: id.trim().to_owned(),
            kind,
            base_url,
            api_key: api_key.filter(|k| !k.trim().is_empty()),
            remove_api_key: remove_api_key.unwrap_or(false),
            models: super::names(&models),
            thinking_budget,
            context_window,
        };
        let previous = previous.filter(|p| !p.trim().is_empty());
        let db = crate::ssr::db()?;
        let key = runs.secret_key();
        let environment = runs.configured_models();
        let saved =
            domain::model_admin::save(&db, key, &user, previous.as_deref(), input, environment)
                .await?;
        if !saved {
            return Err(AppError::not_found(
                "There is no such provider to change: it may have been removed.",
            ));
        }
        runs.models_changed().await?;
        Ok(())
    }
}

/// Model names from what an administrator typed: separated by commas, spaces or lines.
pub fn names(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `POST /api/admin/models/remove` with `id` (administrators): removes a provider added in the
/// app. Chats that chose one of its models are told to choose another when they next send.
#[server(endpoint = "admin/models/remove")]
pub async fn remove_provider(id: String) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let runs = crate::ssr::runs()?;
    if !domain::model_admin::remove(&crate::ssr::db()?, &user, id.trim()).await? {
        return Err(AppError::not_found(
            "There is no such provider added in the app (one of the environment is changed there).",
        ));
    }
    runs.models_changed().await?;
    Ok(())
}

/// `POST /api/admin/models/discover` with `kind`, `base_url` and optionally `api_key`, or `id`
/// to use the key stored for that provider (administrators): the models the provider lists.
#[server(endpoint = "admin/models/discover")]
pub async fn discover_models(
    kind: String,
    base_url: String,
    api_key: Option<String>,
    id: Option<String>,
) -> Result<Vec<String>, AppError> {
    let user = crate::ssr::current_user()?;
    if !user.is_admin() {
        return Err(AppError::new(
            protocol::ErrorKind::Forbidden,
            "Only administrators can change the models on offer.",
        ));
    }
    let kind = domain::llm::ProviderKind::parse(kind.trim())
        .ok_or_else(|| AppError::invalid(format!("'{kind}' is not a kind of provider.")))?;
    let runs = crate::ssr::runs()?;
    let catalog = runs.models();
    let stored_key = id.as_deref().and_then(|id| {
        catalog
            .providers
            .iter()
            .find(|p| p.id == id.trim())
            .and_then(|p| p.api_key.clone())
    });
    let api_key = api_key.filter(|k| !k.trim().is_empty()).or(stored_key);
    Ok(domain::model_admin::discover(kind, &base_url, api_key.as_deref()).await?)
}

/// `POST /api/admin/models/test` with `name` (`<provider>/<model>`, administrators): asks the
/// model for one word and returns what it wrote, or why it could not (`503`, in words).
#[server(endpoint = "admin/models/test")]
pub async fn test_model(name: String) -> Result<String, AppError> {
    let user = crate::ssr::current_user()?;
    if !user.is_admin() {
        return Err(AppError::new(
            protocol::ErrorKind::Forbidden,
            "Only administrators can try the models.",
        ));
    }
    let runs = crate::ssr::runs()?;
    let catalog = runs.offered().await;
    let (provider, model) = catalog
        .resolve(Some(name.trim()))
        .ok_or_else(|| AppError::not_found(format!("'{name}' is not a model on offer.")))?;
    domain::model_admin::try_model(runs.llm(), provider, model)
        .await
        .map_err(|why| AppError::new(protocol::ErrorKind::Unavailable, why))
}

/// `POST /api/admin/models/settings` with `aliases` (`alias=provider/model`, separated by
/// commas or lines) and `default` (a model or alias; empty: the environment's, or the first)
/// (administrators).
#[server(endpoint = "admin/models/settings")]
pub async fn save_model_settings(aliases: String, default: Option<String>) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let runs = crate::ssr::runs()?;
    let mut pairs = Vec::new();
    for pair in aliases
        .split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (alias, target) = pair.split_once('=').ok_or_else(|| {
            AppError::invalid(format!(
                "'{pair}' is not alias=provider/model (fast=ollama/llama3.2)."
            ))
        })?;
        pairs.push((alias.trim().to_owned(), target.trim().to_owned()));
    }
    let default = default
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty());
    let offered = runs.offered().await;
    domain::model_admin::save_settings(&crate::ssr::db()?, &user, pairs, default, &offered).await?;
    runs.models_changed().await?;
    Ok(())
}

/// `POST /api/admin/models/limits` with `limits`: one `provider/model: group, group` a line; a
/// model listed is seen and used only by those groups' members (and administrators); the list
/// replaces the one before (administrators).
#[server(endpoint = "admin/models/limits")]
pub async fn save_model_limits(limits: String) -> Result<(), AppError> {
    let user = crate::ssr::current_user()?;
    let runs = crate::ssr::runs()?;
    let mut pairs = Vec::new();
    for line in limits.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (model, groups) = line.rsplit_once(':').ok_or_else(|| {
            AppError::invalid(format!(
                "'{line}' is not provider/model: group, group (openai/gpt-4o: research)."
            ))
        })?;
        pairs.push((
            model.trim().to_owned(),
            domain::access::parse_groups(groups)?,
        ));
    }
    let offered = runs.offered().await;
    domain::model_admin::save_limits(&crate::ssr::db()?, &user, pairs, &offered).await?;
    runs.models_changed().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn model_names_are_read_from_commas_spaces_and_lines() {
        assert_eq!(
            super::names("gpt-4o, gpt-4o-mini\nclaude-sonnet-4-5  o3"),
            ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "o3"]
        );
        assert!(super::names(" ,\n").is_empty());
    }
}
