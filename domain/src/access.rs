//! Who may use what: a person's groups (their identity provider's and those an administrator put
//! them in), and the rules that limit registry tool servers and models to groups and switch
//! personal servers off for a group. Administrators are bound by none of them (they set them).
//!
//! Every path that lists or uses a server or a model asks [`Access::of`] first: the MCP
//! connections (listing, connecting, calling, sign-in), the chat's model choice and each send.

use std::collections::BTreeSet;

use uuid::Uuid;

use sqlx::types::Json;

use crate::budgets::{Applying, Limits};
use crate::users::Role;
use crate::{Database, Result};

/// A group's name and limits, as the query gives them.
type GroupLimits = (String, Option<i64>, Option<i64>, Option<i32>);

/// What one person may use, as of now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    admin: bool,
    /// Their groups: the provider's (as of their last sign-in) and the app's.
    pub groups: BTreeSet<String>,
    /// A group of theirs with personal servers switched off, if any.
    pub personal_servers_off_by: Option<String>,
}

impl Access {
    /// What the person with this id may use (nothing limited when there is no such person).
    pub async fn of(db: &Database, user_id: Uuid) -> Result<Self> {
        Ok(Self::with_limits(db, user_id).await?.0)
    }

    /// What the person with this id may use, and the limits that apply to them (see
    /// [`budgets`](crate::budgets)): one query, the only one that works out a person's groups.
    pub async fn with_limits(db: &Database, user_id: Uuid) -> Result<(Self, Applying)> {
        let row = sqlx::query!(
            r#"WITH me AS (
                   SELECT u.id, u.role, u.tokens_per_day, u.tokens_per_month, u.answers_per_minute,
                          array(SELECT unnest(u.groups)
                                UNION SELECT m.group_name FROM group_members m
                                      WHERE m.user_id = u.id) AS groups
                   FROM users u WHERE u.id = $1
               )
               SELECT me.role AS "role: Role", me.groups AS "groups!",
                      me.tokens_per_day, me.tokens_per_month, me.answers_per_minute,
                      (SELECT min(g.name) FROM groups g
                       WHERE NOT g.personal_servers AND g.name = ANY(me.groups)) AS personal_off,
                      (SELECT jsonb_agg(jsonb_build_array(g.name, g.tokens_per_day,
                                                          g.tokens_per_month, g.answers_per_minute))
                       FROM groups g
                       WHERE g.name = ANY(me.groups)
                         AND (g.tokens_per_day IS NOT NULL OR g.tokens_per_month IS NOT NULL
                              OR g.answers_per_minute IS NOT NULL)) AS "group_limits: Json<Vec<GroupLimits>>"
               FROM me"#,
            user_id
        )
        .fetch_optional(db.pool())
        .await?;
        let Some(row) = row else {
            return Ok(Default::default());
        };
        let own = Limits {
            tokens_per_day: row.tokens_per_day,
            tokens_per_month: row.tokens_per_month,
            answers_per_minute: row.answers_per_minute,
        };
        let groups: Vec<(String, Limits)> = row
            .group_limits
            .map(|Json(list)| list)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, day, month, rate)| {
                let limits = Limits {
                    tokens_per_day: day,
                    tokens_per_month: month,
                    answers_per_minute: rate,
                };
                (name, limits)
            })
            .collect();
        let access = Self {
            admin: row.role == Role::Admin,
            groups: row.groups.into_iter().collect(),
            personal_servers_off_by: row.personal_off,
        };
        Ok((access, crate::budgets::applying(own, &groups)))
    }

    /// Access to everything (an administrator's).
    pub fn everything() -> Self {
        Self {
            admin: true,
            ..Self::default()
        }
    }

    /// The access of someone in `groups` who is not an administrator (for tests and tools).
    pub fn member_of(groups: &[&str]) -> Self {
        Self {
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..Self::default()
        }
    }

    /// Whether a thing limited to `groups` (none: everyone's) is theirs to see and use.
    pub fn may_use(&self, groups: &[String]) -> bool {
        self.admin || groups.is_empty() || groups.iter().any(|g| self.groups.contains(g))
    }

    /// Whether they may add and use tool servers of their own.
    pub fn personal_servers(&self) -> bool {
        self.admin || self.personal_servers_off_by.is_none()
    }

    /// Why they may not use servers of their own, for them to read.
    pub fn personal_servers_refusal(&self) -> Option<String> {
        (!self.personal_servers()).then(|| {
            format!(
                "Your administrator has switched servers of your own off for the group '{}'. Use the servers the administrators offer, or ask them.",
                self.personal_servers_off_by.as_deref().unwrap_or_default()
            )
        })
    }
}

/// Group names as typed in a form (separated by commas or lines), trimmed, each once; an error
/// names one that cannot be a group's.
pub fn parse_groups(text: &str) -> Result<Vec<String>> {
    let mut groups: Vec<String> = Vec::new();
    for name in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        check_group_name(name)?;
        if !groups.iter().any(|g| g == name) {
            groups.push(name.to_owned());
        }
    }
    Ok(groups)
}

/// A group's name: 1 to 100 characters, no commas, no spaces around it.
pub fn check_group_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 100 || name.contains(',') || name.trim() != name {
        return Err(crate::Error::Invalid(format!(
            "'{}' cannot be a group's name: use 1 to 100 characters, without commas.",
            name.chars().take(100).collect::<String>()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_lets_in_members_and_administrators_only() {
        let limited = vec!["research".to_owned(), "ops".to_owned()];
        assert!(Access::member_of(&["ops"]).may_use(&limited));
        assert!(!Access::member_of(&["sales"]).may_use(&limited));
        assert!(!Access::default().may_use(&limited));
        assert!(Access::everything().may_use(&limited));
        assert!(Access::default().may_use(&[]), "no limit: everyone's");
    }

    #[test]
    fn personal_servers_off_says_by_which_group() {
        let mut access = Access::member_of(&["interns"]);
        assert!(access.personal_servers());
        access.personal_servers_off_by = Some("interns".into());
        assert!(!access.personal_servers());
        assert!(
            access
                .personal_servers_refusal()
                .unwrap()
                .contains("'interns'")
        );
    }

    #[test]
    fn group_lists_are_trimmed_and_checked() {
        assert_eq!(
            parse_groups(" research,ops\nresearch, ,").unwrap(),
            ["research", "ops"]
        );
        assert!(parse_groups(&"x".repeat(101)).is_err());
    }
}
