//! The models on offer and how a chat's choice resolves to a provider and a model.

use super::Provider;

/// The models on offer: every configured provider's models, aliases such as `fast` or `smart`, and
/// the default. A model is named `<provider>/<model>` (`ollama/llama3.2`); an alias stands for one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    pub providers: Vec<Provider>,
    /// `(provider id, model name)`, in the order given.
    pub models: Vec<(String, String)>,
    /// Alias → `<provider>/<model>`.
    pub aliases: Vec<(String, String)>,
    /// `<provider>/<model>` or an alias; the first model when unset.
    pub default: Option<String>,
    /// When nothing was configured and a model server on this machine was found instead, a
    /// sentence saying which (`local_models`), for the UI to show.
    pub found: Option<String>,
    /// Models (`<provider>/<model>`) limited to groups: only their members (and administrators)
    /// see and use them. Set in the app.
    pub limited: Vec<(String, Vec<String>)>,
}

/// Why nothing can answer when no model is configured, and what to do.
pub const NO_MODEL: &str = "No model is configured yet, and none was found running on this machine, so nothing can answer. An administrator adds one with SWITCHBOARD_LLM_PROVIDERS, or starts a model server such as Ollama on this machine, which is then found by itself (see docs/models.md).";

/// A model's full name, `<provider>/<model>`.
pub fn qualified(provider: &str, model: &str) -> String {
    format!("{provider}/{model}")
}

impl Catalog {
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// This catalog and `more` (the app's, beside the environment's): their providers and models
    /// together; `more`'s aliases replace those of the same name, and its default, when it has
    /// one, is the default.
    pub fn with(mut self, more: Catalog) -> Catalog {
        self.providers.extend(more.providers);
        self.models.extend(more.models);
        for (alias, target) in more.aliases {
            match self.aliases.iter_mut().find(|(a, _)| *a == alias) {
                Some(known) => known.1 = target,
                None => self.aliases.push((alias, target)),
            }
        }
        if more.default.is_some() {
            self.default = more.default;
        }
        self.limited.extend(more.limited);
        self
    }

    /// The groups a model (`<provider>/<model>`) is limited to; none: everyone's.
    pub fn groups_of(&self, provider: &str, model: &str) -> &[String] {
        self.limited
            .iter()
            .find(|(name, _)| {
                name.split_once('/')
                    .is_some_and(|(p, m)| p == provider && m == model)
            })
            .map_or(&[], |(_, groups)| groups.as_slice())
    }

    /// The catalog as a person with `access` sees it: the models limited to groups they are not in
    /// are gone, with the aliases that stood for them alone, and a default among them gives way
    /// to the first model left.
    pub fn for_access(&self, access: &crate::access::Access) -> Catalog {
        let mut mine = self.clone();
        mine.models
            .retain(|(provider, model)| access.may_use(self.groups_of(provider, model)));
        if let Some(default) = &mine.default
            && mine.resolve(Some(default)).is_none()
        {
            mine.default = None;
        }
        mine
    }

    /// Whether `name` (a model or an alias) is on offer in this catalog at all, though perhaps not
    /// to everyone: compared with [`Catalog::for_access`]'s, it tells a limited model from one
    /// that is not offered.
    pub fn offers(&self, name: &str) -> bool {
        self.resolve(Some(name)).is_some()
    }

    /// The names people choose from: aliases first (those that name a model on offer: one whose
    /// provider was removed is not), then every `<provider>/<model>`.
    pub fn choices(&self) -> Vec<String> {
        self.aliases
            .iter()
            .filter(|(alias, _)| self.resolve(Some(alias)).is_some())
            .map(|(alias, _)| alias.clone())
            .chain(self.models.iter().map(|(p, m)| qualified(p, m)))
            .collect()
    }

    /// The providers and models a chat's choice stands for, in the order they are asked (an
    /// alias may name several: the next answers when one fails before its first token), or why it
    /// cannot be answered.
    pub fn for_chat(&self, chosen: Option<&str>) -> crate::Result<Vec<(&Provider, &str)>> {
        Some(self.candidates(chosen))
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
            crate::Error::Unavailable(if self.is_empty() {
                NO_MODEL.into()
            } else {
                format!(
                    "The model '{}' chosen for this chat is no longer offered. Choose another one.",
                    chosen.unwrap_or_default()
                )
            })
        })
    }

    /// The provider and model a name stands for (an alias, `<provider>/<model>`, or nothing for
    /// the default): the first of its [`Catalog::candidates`].
    pub fn resolve(&self, name: Option<&str>) -> Option<(&Provider, &str)> {
        self.candidates(name).into_iter().next()
    }

    /// The providers and models a name stands for, in order: one for `<provider>/<model>`; for an
    /// alias, each model of its list (`claude/sonnet|openai/gpt-4o`) that is on offer.
    pub fn candidates(&self, name: Option<&str>) -> Vec<(&Provider, &str)> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(name) => name,
            None => match &self.default {
                Some(default) => default.as_str(),
                None => {
                    return self
                        .models
                        .first()
                        .and_then(|(provider, model)| {
                            Some((self.provider(provider)?, model.as_str()))
                        })
                        .into_iter()
                        .collect();
                }
            },
        };
        let target = self
            .aliases
            .iter()
            .find(|(alias, _)| alias == name)
            .map(|(_, target)| target.as_str())
            .unwrap_or(name);
        target
            .split('|')
            .filter_map(|one| {
                let (provider, model) = one.trim().split_once('/')?;
                let (_, model) = self
                    .models
                    .iter()
                    .find(|(p, m)| p == provider && m == model)?;
                Some((self.provider(provider)?, model.as_str()))
            })
            .collect()
    }

    fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// Checks that every alias and the default name a configured model.
    pub fn validate(&self) -> Result<(), String> {
        for (alias, target) in &self.aliases {
            let named = target.split('|').count();
            if self.candidates(Some(alias)).len() != named || target.split_once('/').is_none() {
                return Err(format!(
                    "the alias '{alias}' stands for '{target}', which is not a configured model (models are named <provider>/<model>, from the providers' model lists)"
                ));
            }
        }
        if let Some(default) = &self.default
            && self.resolve(Some(default)).is_none()
        {
            return Err(format!(
                "the default model '{default}' is not a configured model or alias"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;

    fn catalog() -> Catalog {
        let provider = |id: &str| Provider::new(id, Url::parse("http://h/v1").unwrap(), None);
        Catalog {
            providers: vec![provider("openai"), provider("ollama")],
            models: vec![
                ("openai".into(), "gpt-4o".into()),
                ("ollama".into(), "llama3.2".into()),
            ],
            aliases: vec![("fast".into(), "ollama/llama3.2".into())],
            default: None,
            found: None,
            limited: Vec::new(),
        }
    }

    #[test]
    fn a_model_limited_to_groups_is_gone_for_everyone_else_with_its_aliases() {
        use crate::access::Access;
        let mut c = catalog();
        c.default = Some("fast".into());
        c.limited = vec![("ollama/llama3.2".into(), vec!["research".into()])];
        let outsider = c.for_access(&Access::member_of(&["sales"]));
        assert_eq!(outsider.choices(), ["openai/gpt-4o"]);
        assert!(outsider.resolve(Some("fast")).is_none());
        assert_eq!(
            outsider.resolve(None).map(|(p, m)| (p.id.as_str(), m)),
            Some(("openai", "gpt-4o")),
            "the default gives way to the first model left"
        );
        assert!(c.offers("fast") && !outsider.offers("fast"));
        let member = c.for_access(&Access::member_of(&["research"]));
        assert_eq!(member.choices(), c.choices());
        assert_eq!(c.for_access(&Access::everything()).choices(), c.choices());
    }

    #[test]
    fn names_aliases_and_the_default_resolve() {
        let mut c = catalog();
        assert_eq!(c.choices(), ["fast", "openai/gpt-4o", "ollama/llama3.2"]);
        let resolved =
            |c: &Catalog, name| c.resolve(name).map(|(p, m)| (p.id.clone(), m.to_owned()));
        assert_eq!(
            resolved(&c, Some("fast")),
            Some(("ollama".into(), "llama3.2".into()))
        );
        assert_eq!(
            resolved(&c, Some("openai/gpt-4o")),
            Some(("openai".into(), "gpt-4o".into()))
        );
        assert_eq!(
            resolved(&c, None),
            Some(("openai".into(), "gpt-4o".into())),
            "the first model"
        );
        assert_eq!(resolved(&c, Some("openai/gpt-5")), None, "not offered");
        c.default = Some("fast".into());
        assert_eq!(
            resolved(&c, None),
            Some(("ollama".into(), "llama3.2".into()))
        );
        assert!(c.validate().is_ok());
        c.aliases.push(("smart".into(), "openai/o9".into()));
        assert!(c.validate().unwrap_err().contains("'smart'"));
    }

    #[test]
    fn an_empty_catalog_resolves_nothing() {
        assert!(Catalog::default().resolve(None).is_none());
        assert!(Catalog::default().is_empty());
    }
}
