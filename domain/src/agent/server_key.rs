//! What a standing approval ("always allow") and an approved call are bound to: the identity of a
//! tool server's definition as one person sees it now. A server deleted and made again, renamed,
//! shadowed by another of the same id (the servers file's over the database's), or changed to run
//! something else has a new key, so what was allowed for the old one no longer applies.
//!
//! The key is a hash of where the server comes from, its id, its transport in the clear (command,
//! arguments and environment, or URL and header names; secret values are left out, so a rotated
//! token keeps the person's approvals) and, for a server kept in the database, its row's
//! generation, which is new with every row and changes when its id or transport does (see the
//! `mcp_servers_generation` migration).

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::mcp::{Mcp, ServerSpec, Source};
use crate::{Database, Result};

/// The key of each server the person may use now, by server id.
pub type ServerKeys = HashMap<String, String>;

/// The key of `spec`, a server of the database when `generation` is given.
pub fn key(spec: &ServerSpec, generation: Option<Uuid>) -> String {
    let identity = serde_json::json!({
        "source": spec.source,
        "id": spec.id,
        "transport": spec.transport.public(),
        "generation": generation,
    });
    let digest = Sha256::digest(identity.to_string().as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The keys of the servers `user_id` may use now: the servers file's, the registry's and their own.
pub async fn server_keys(db: &Database, mcp: &Mcp, user_id: Uuid) -> Result<ServerKeys> {
    let (specs, generations) = tokio::join!(mcp.specs(user_id), generations(db, user_id));
    let generations = generations?;
    Ok(specs?
        .iter()
        .map(|spec| {
            let generation = match spec.source {
                Source::File => None,
                Source::Admin => generations.get(&(spec.id.clone(), false)).copied(),
                Source::Personal => generations.get(&(spec.id.clone(), true)).copied(),
            };
            // A stored server whose row is gone since it was read has no key: nothing matches it.
            let key = match (spec.source, generation) {
                (Source::File, _) | (_, Some(_)) => key(spec, generation),
                _ => String::new(),
            };
            (spec.id.clone(), key)
        })
        .collect())
}

/// The generation of every stored server `user_id` may see, by (id, personal).
async fn generations(db: &Database, user_id: Uuid) -> Result<HashMap<(String, bool), Uuid>> {
    let rows = sqlx::query!(
        r#"SELECT slug, owner_id IS NOT NULL AS "personal!", generation
           FROM mcp_servers WHERE owner_id IS NULL OR owner_id = $1"#,
        user_id
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.slug, r.personal), r.generation))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::mcp::Transport;

    fn stdio(command: &str, secret: &str) -> ServerSpec {
        ServerSpec::new(
            "files",
            Transport::Stdio {
                command: command.into(),
                args: vec!["--root".into(), "/srv".into()],
                env: BTreeMap::new(),
                secret_env: BTreeMap::from([("TOKEN".into(), secret.into())]),
            },
        )
    }

    #[test]
    fn a_key_changes_with_what_the_server_is_and_not_with_its_secrets() {
        let file = stdio("files-server", "one");
        let same = key(&file, None);
        assert_eq!(
            same,
            key(&stdio("files-server", "two"), None),
            "secrets left out"
        );
        assert_eq!(same.len(), 32);
        assert_ne!(
            same,
            key(&stdio("other-server", "one"), None),
            "what it runs"
        );
        let renamed = ServerSpec {
            id: "docs".into(),
            ..file.clone()
        };
        assert_ne!(same, key(&renamed, None), "its id");
        let stored = ServerSpec {
            source: Source::Admin,
            ..file.clone()
        };
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_ne!(same, key(&stored, Some(a)), "where it comes from");
        assert_ne!(key(&stored, Some(a)), key(&stored, Some(b)), "its row");
        assert_eq!(key(&stored, Some(a)), key(&stored, Some(a)));
    }
}
