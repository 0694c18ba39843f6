//! Which LLM providers and models are on offer, from configuration.
//!
//! Providers are listed by id in `SWITCHBOARD_LLM_PROVIDERS` (`openai,ollama`); each has its own
//! `SWITCHBOARD_LLM_<ID>_BASE_URL`, `_API_KEY` and `_MODELS`, and may have `_KIND` (`openai`, the
//! default, or `anthropic`) and, for Anthropic, `_THINKING_BUDGET`. Models are then named
//! `<id>/<model>`; `SWITCHBOARD_LLM_ALIASES` gives some of them short names (`fast=ollama/llama3.2`)
//! and `SWITCHBOARD_LLM_DEFAULT_MODEL` picks the default.

use domain::llm::{Catalog, Provider, ProviderKind};
use domain::local_models::{self, Candidate, Offer};
use url::Url;

use crate::config::{Config, ConfigError, ProviderVars, list, provider_ids};

/// Reads the model catalog from `config` and, for each provider, from `env`.
pub fn catalog(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Catalog, ConfigError> {
    let bad = |message: String| ConfigError::Llm(message);
    let mut catalog = Catalog::default();
    for id in
        provider_ids("SWITCHBOARD_LLM_PROVIDERS", config.llm_providers.as_deref()).map_err(bad)?
    {
        let vars = ProviderVars::new("SWITCHBOARD_LLM_PROVIDERS", "SWITCHBOARD_LLM", &id, env)
            .map_err(bad)?;
        let prefix = &vars.prefix;
        let var = |name: &str| vars.get(name);
        let base = var("BASE_URL").ok_or_else(|| {
            bad(format!("LLM provider '{id}' needs {prefix}BASE_URL, the API's address up to /v1 (https://api.openai.com/v1, http://127.0.0.1:11434/v1 for Ollama)."))
        })?;
        let base_url = http_url(&base)
            .ok_or_else(|| bad(format!("{prefix}BASE_URL is not an http(s) URL: '{base}'.")))?;
        let models = list(var("MODELS").as_deref());
        if models.is_empty() {
            return Err(bad(format!(
                "LLM provider '{id}' needs {prefix}MODELS, the models it offers, comma-separated (gpt-4o,gpt-4o-mini)."
            )));
        }
        catalog
            .models
            .extend(models.into_iter().map(|m| (id.clone(), m)));
        let kind = match var("KIND") {
            None => ProviderKind::OpenAi,
            Some(kind) => ProviderKind::parse(&kind).ok_or_else(|| {
                bad(format!("{prefix}KIND is '{kind}': it is `openai` (Chat Completions, which most servers speak) or `anthropic` (Anthropic's Messages API)."))
            })?,
        };
        let thinking_budget = match var("THINKING_BUDGET") {
            None => None,
            Some(budget) => Some(budget.parse::<u32>().ok().filter(|b| (1024..=128_000).contains(b)).ok_or_else(|| {
                bad(format!("{prefix}THINKING_BUDGET is '{budget}': it is the tokens an Anthropic model may think for, from 1024 to 128000."))
            })?),
        };
        if thinking_budget.is_some() && kind != ProviderKind::Anthropic {
            return Err(bad(format!(
                "{prefix}THINKING_BUDGET is for Anthropic providers ({prefix}KIND=anthropic); OpenAI-compatible reasoning models think by themselves."
            )));
        }
        let context_window = match var("CONTEXT_WINDOW") {
            None => None,
            Some(tokens) => Some(tokens.parse::<u32>().ok().filter(|t| (1024..=10_000_000).contains(t)).ok_or_else(|| {
                bad(format!("{prefix}CONTEXT_WINDOW is '{tokens}': it is the tokens its models take in one request, from 1024 to 10000000 (128000 for gpt-4o)."))
            })?),
        };
        let mut provider = Provider::new(id, base_url, var("API_KEY")).with_kind(kind);
        provider.thinking_budget = thinking_budget;
        provider.context_window = context_window;
        catalog.providers.push(provider);
    }
    for pair in list(config.llm_aliases.as_deref()) {
        let (alias, target) = pair.split_once('=').ok_or_else(|| {
            bad(format!("SWITCHBOARD_LLM_ALIASES: '{pair}' is not alias=provider/model (fast=ollama/llama3.2)."))
        })?;
        catalog.aliases.push((alias.to_owned(), target.to_owned()));
    }
    catalog.default = config
        .llm_default_model
        .clone()
        .filter(|d| !d.trim().is_empty());
    catalog.validate().map_err(|e| {
        bad(format!(
            "SWITCHBOARD_LLM_ALIASES / SWITCHBOARD_LLM_DEFAULT_MODEL: {e}."
        ))
    })?;
    Ok(catalog)
}

/// `text` as an http(s) URL, the only kind a model's API may have.
fn http_url(text: &str) -> Option<Url> {
    Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
}

/// `catalog`, or, when it offers nothing, the models of a server found on this machine (where
/// `SWITCHBOARD_LOCAL_MODEL_URLS` says, or the usual addresses; `off`: nowhere), searched for now
/// and again later while none is found.
pub async fn or_local(catalog: Catalog, config: &Config) -> Result<Offer, ConfigError> {
    if !catalog.is_empty() {
        return Ok(catalog.into());
    }
    let candidates = match config.local_model_urls.as_deref().map(str::trim) {
        Some("off") => return Ok(catalog.into()),
        None | Some("") => Candidate::usual(),
        Some(urls) => {
            let urls = list(Some(urls))
                .into_iter()
                .map(|u| {
                    http_url(&u).ok_or_else(|| ConfigError::Llm(format!("SWITCHBOARD_LOCAL_MODEL_URLS: '{u}' is not an http(s) URL (http://127.0.0.1:11434/v1), nor `off`.")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Candidate::given(&urls)
        }
    };
    let found = local_models::find(&candidates).await;
    Ok(Offer::searched(found, candidates))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(args: &[&str], vars: &[(&str, &str)]) -> Result<Catalog, ConfigError> {
        let (config, env) = crate::config::parse_with_vars(args, vars);
        catalog(&config, &env)
    }

    #[test]
    fn nothing_configured_is_an_empty_catalog() {
        assert!(read(&[], &[]).unwrap().is_empty());
    }

    #[test]
    fn providers_models_aliases_and_the_default() {
        let c = read(
            &[
                "--llm-providers",
                "openai,ollama",
                "--llm-aliases",
                "fast=ollama/llama3.2",
                "--llm-default-model",
                "fast",
            ],
            &[
                (
                    "SWITCHBOARD_LLM_OPENAI_BASE_URL",
                    "https://api.openai.com/v1",
                ),
                ("SWITCHBOARD_LLM_OPENAI_API_KEY", "sk-test"),
                ("SWITCHBOARD_LLM_OPENAI_MODELS", "gpt-4o, gpt-4o-mini"),
                (
                    "SWITCHBOARD_LLM_OLLAMA_BASE_URL",
                    "http://127.0.0.1:11434/v1",
                ),
                ("SWITCHBOARD_LLM_OLLAMA_MODELS", "llama3.2"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.choices(),
            [
                "fast",
                "openai/gpt-4o",
                "openai/gpt-4o-mini",
                "ollama/llama3.2"
            ]
        );
        let (provider, model) = c.resolve(None).unwrap();
        assert_eq!((provider.id.as_str(), model), ("ollama", "llama3.2"));
        assert_eq!(c.providers[0].api_key.as_deref(), Some("sk-test"));
        assert_eq!(c.providers[1].api_key, None);
    }

    #[test]
    fn mistakes_name_the_setting() {
        let message = read(
            &["--llm-providers", "openai"],
            &[(
                "SWITCHBOARD_LLM_OPENAI_BASE_URL",
                "https://api.openai.com/v1",
            )],
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("SWITCHBOARD_LLM_OPENAI_MODELS"),
            "{message}"
        );
        let message = read(
            &[
                "--llm-providers",
                "openai",
                "--llm-default-model",
                "openai/gpt-9",
            ],
            &[
                (
                    "SWITCHBOARD_LLM_OPENAI_BASE_URL",
                    "https://api.openai.com/v1",
                ),
                ("SWITCHBOARD_LLM_OPENAI_MODELS", "gpt-4o"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(message.contains("openai/gpt-9"), "{message}");
    }

    #[test]
    fn a_provider_may_speak_anthropic_and_think() {
        let anthropic = |extra: &[(&'static str, &'static str)]| {
            let mut vars = vec![
                (
                    "SWITCHBOARD_LLM_CLAUDE_BASE_URL",
                    "https://api.anthropic.com/v1",
                ),
                ("SWITCHBOARD_LLM_CLAUDE_MODELS", "claude-sonnet-4-5"),
            ];
            vars.extend_from_slice(extra);
            read(&["--llm-providers", "claude"], &vars)
        };
        let c = anthropic(&[
            ("SWITCHBOARD_LLM_CLAUDE_KIND", "anthropic"),
            ("SWITCHBOARD_LLM_CLAUDE_THINKING_BUDGET", "2048"),
        ])
        .unwrap();
        assert_eq!(c.providers[0].kind, ProviderKind::Anthropic);
        assert_eq!(c.providers[0].thinking_budget, Some(2048));
        // Unset, a provider speaks Chat Completions.
        assert_eq!(
            anthropic(&[]).unwrap().providers[0].kind,
            ProviderKind::OpenAi
        );
        for (vars, says) in [
            (
                vec![("SWITCHBOARD_LLM_CLAUDE_KIND", "google")],
                "SWITCHBOARD_LLM_CLAUDE_KIND is 'google'",
            ),
            (
                vec![
                    ("SWITCHBOARD_LLM_CLAUDE_KIND", "anthropic"),
                    ("SWITCHBOARD_LLM_CLAUDE_THINKING_BUDGET", "10"),
                ],
                "from 1024 to 128000",
            ),
            (
                vec![("SWITCHBOARD_LLM_CLAUDE_THINKING_BUDGET", "2048")],
                "for Anthropic providers",
            ),
        ] {
            let message = anthropic(&vars).unwrap_err().to_string();
            assert!(message.contains(says), "{message}");
        }
    }
}
