//! The registry as administrators change it (servers of the registry) and as a person changes their
//! own (personal servers): checked, stored, and the connections that used a changed server restarted.

use uuid::Uuid;

use super::supervisor::close_all;
use super::{AdminServer, Mcp, PERSONAL_PREFIX, ServerInput, Transport, registry};
use crate::users::User;
use crate::{Error, Result};

/// What only administrators may do here.
const CHANGE: &str = "change the tool server registry";

/// Servers of their own a person may have at once.
pub const MAX_PERSONAL_SERVERS: usize = 20;

impl Mcp {
    /// Every server of the registry (the file's and the administrators'), for the admin page.
    pub async fn admin_servers(&self, actor: &User) -> Result<Vec<AdminServer>> {
        actor.must_be_admin(CHANGE)?;
        let stored = registry::stored(&self.inner.db, &self.inner.key, None).await?;
        Ok(self
            .inner
            .file
            .servers()
            .iter()
            .cloned()
            .chain(stored)
            .map(|spec| AdminServer {
                transport: spec.transport.public(),
                id: spec.id,
                name: spec.name,
                description: spec.description,
                enabled: spec.enabled,
                groups: spec.groups,
                source: spec.source,
                problem: spec.problem,
            })
            .collect())
    }

    /// Adds a server to the registry (`previous` None) or changes one; administrators only (a
    /// stdio server starts a process on this machine). Connections to a changed server start
    /// again with its new description. False when there is no such server to change.
    pub async fn save_server(
        &self,
        actor: &User,
        previous: Option<&str>,
        input: ServerInput,
    ) -> Result<bool> {
        actor.must_be_admin(CHANGE)?;
        for id in [Some(input.id.as_str()), previous].into_iter().flatten() {
            if self.inner.file.get(id).is_some() {
                return Err(Error::Invalid(format!(
                    "The server '{id}' comes from the servers file: change it there."
                )));
            }
        }
        if input.id.starts_with(PERSONAL_PREFIX) {
            return Err(Error::Invalid(format!(
                "Ids that start with '{PERSONAL_PREFIX}' are kept for personal servers."
            )));
        }
        let id = input.id.clone();
        if !registry::save(&self.inner.db, &self.inner.key, None, previous, input).await? {
            return Ok(false);
        }
        let spec = registry::stored(&self.inner.db, &self.inner.key, None)
            .await?
            .into_iter()
            .find(|s| s.id == id);
        self.restart(previous.unwrap_or(&id), spec).await?;
        Ok(true)
    }

    /// Removes a server from the registry, closing everyone's connection to it on this instance.
    pub async fn delete_server(&self, actor: &User, id: &str) -> Result<bool> {
        actor.must_be_admin(CHANGE)?;
        if self.inner.file.get(id).is_some() {
            return Err(Error::Invalid(format!(
                "The server '{id}' comes from the servers file: remove it there."
            )));
        }
        let deleted = registry::delete(&self.inner.db, None, id).await?;
        close_all(self.take(None, id)).await;
        Ok(deleted)
    }

    /// Adds a personal Streamable HTTP server for the user, after checking where its URL leads.
    /// Returns its id.
    pub async fn add_personal(
        &self,
        user_id: Uuid,
        name: &str,
        description: &str,
        url: &str,
        bearer_token: Option<String>,
        headers: std::collections::BTreeMap<String, String>,
    ) -> Result<String> {
        let access = crate::access::Access::of(&self.inner.db, user_id).await?;
        if let Some(refusal) = access.personal_servers_refusal() {
            return Err(Error::Forbidden(refusal));
        }
        self.inner
            .settings
            .addresses
            .check(url.trim())
            .await
            .map_err(Error::Invalid)?;
        let input = ServerInput {
            // Personal ids start with the prefix the registry's may not use, so only the person's
            // own servers can hold it already.
            id: format!("{PERSONAL_PREFIX}{}", registry::slug(name)),
            name: name.to_owned(),
            description: description.to_owned(),
            enabled: true,
            groups: Vec::new(),
            transport: Transport::Http {
                url: url.trim().to_owned(),
                headers,
                bearer_token: bearer_token.filter(|t| !t.trim().is_empty()),
                oauth_client_id: None,
                oauth_client_secret: None,
            },
        };
        registry::add_personal(
            &self.inner.db,
            &self.inner.key,
            user_id,
            MAX_PERSONAL_SERVERS,
            input,
        )
        .await
    }

    /// Removes one of the user's personal servers (and their connection to it).
    pub async fn delete_personal(&self, user_id: Uuid, id: &str) -> Result<bool> {
        let deleted = registry::delete(&self.inner.db, Some(user_id), id).await?;
        if deleted {
            close_all(self.take(Some(user_id), id)).await;
        }
        Ok(deleted)
    }
}
