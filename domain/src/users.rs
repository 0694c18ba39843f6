//! The people who sign in, and who among them is an admin.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Database, Result};

/// What a person may do beyond their own things.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages the instance (the MCP server registry, other people's roles).
    Admin,
    User,
}

/// A person known to Switchboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    /// Who vouches for this person: an OpenID issuer URL, `https://github.com`, or `local`.
    pub issuer: String,
    /// Their id at that issuer.
    pub subject: String,
    pub name: String,
    pub email: Option<String>,
    pub avatar_url: Option<String>,
    pub role: Role,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The one user of an instance that runs without an identity provider.
    pub fn is_local(&self) -> bool {
        self.issuer == LOCAL_ISSUER
    }
}

/// The issuer of the local user, who exists when no identity provider is configured.
pub const LOCAL_ISSUER: &str = "local";

/// What an identity provider says about a person at sign-in (verified by the caller).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub name: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub avatar_url: Option<String>,
    /// Group or role names from the provider, matched against [`AdminRule::groups`].
    pub groups: Vec<String>,
}

impl Identity {
    /// The identity of the local user.
    pub fn local() -> Self {
        Self {
            issuer: LOCAL_ISSUER.into(),
            subject: "local".into(),
            name: "Local user".into(),
            ..Self::default()
        }
    }
}

/// Who is an admin, from configuration. With nothing configured, the first person to sign in is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminRule {
    /// E-mail addresses (compared case-insensitively; only verified addresses count).
    pub emails: Vec<String>,
    /// Group or role names; a member of any of them is an admin.
    pub groups: Vec<String>,
}

/// The role a sign-in should give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleDecision {
    /// Configuration decides: this role, whatever the person had before.
    Fixed(Role),
    /// Nothing configured: admin if nobody has signed in before, else keep what they have (new
    /// people are users).
    FirstUserIsAdmin,
}

impl AdminRule {
    pub fn is_configured(&self) -> bool {
        !self.emails.is_empty() || !self.groups.is_empty()
    }

    pub fn decide(&self, identity: &Identity) -> RoleDecision {
        if !self.is_configured() {
            return RoleDecision::FirstUserIsAdmin;
        }
        let by_email = identity.email_verified
            && identity
                .email
                .as_deref()
                .is_some_and(|email| self.emails.iter().any(|e| e.eq_ignore_ascii_case(email)));
        let by_group = identity.groups.iter().any(|g| self.groups.contains(g));
        RoleDecision::Fixed(if by_email || by_group {
            Role::Admin
        } else {
            Role::User
        })
    }
}

/// Records a sign-in: creates the user the first time, refreshes their profile after, and sets
/// their role as `role` says.
pub async fn sign_in(db: &Database, identity: &Identity, role: RoleDecision) -> Result<User> {
    let mut tx = db.pool().begin().await?;
    let fixed = match role {
        RoleDecision::Fixed(role) => Some(role),
        RoleDecision::FirstUserIsAdmin => {
            // Two people signing in at once on an empty instance must not both become admin.
            sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
            None
        }
    };
    let user = sqlx::query_as!(
        User,
        r#"
        INSERT INTO users (issuer, subject, name, email, email_verified, avatar_url, role)
        VALUES ($1, $2, $3, $4, $5, $6,
                COALESCE($7, CASE WHEN EXISTS (SELECT 1 FROM users) THEN 'user' ELSE 'admin' END))
        ON CONFLICT (issuer, subject) DO UPDATE SET
            name = EXCLUDED.name,
            email = EXCLUDED.email,
            email_verified = EXCLUDED.email_verified,
            avatar_url = EXCLUDED.avatar_url,
            role = COALESCE($7, users.role),
            last_login_at = now()
        RETURNING id, issuer, subject, name, email, avatar_url, role AS "role: Role"
        "#,
        identity.issuer,
        identity.subject,
        identity.name,
        identity.email,
        identity.email_verified,
        identity.avatar_url,
        fixed.map(Role::as_str),
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// The user with this id, if there is one.
pub async fn find(db: &Database, id: Uuid) -> Result<Option<User>> {
    let user = sqlx::query_as!(
        User,
        r#"SELECT id, issuer, subject, name, email, avatar_url, role AS "role: Role"
           FROM users WHERE id = $1"#,
        id
    )
    .fetch_optional(db.pool())
    .await?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(email: &str, verified: bool, groups: &[&str]) -> Identity {
        Identity {
            issuer: "https://id.example".into(),
            subject: "1".into(),
            name: "P".into(),
            email: Some(email.into()),
            email_verified: verified,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Identity::default()
        }
    }

    #[test]
    fn with_no_rule_the_first_user_decides() {
        let rule = AdminRule::default();
        assert_eq!(
            rule.decide(&person("a@x", true, &[])),
            RoleDecision::FirstUserIsAdmin
        );
    }

    #[test]
    fn admins_by_verified_email_or_group() {
        let rule = AdminRule {
            emails: vec!["Alice@Example.com".into()],
            groups: vec!["ops".into()],
        };
        let admin = RoleDecision::Fixed(Role::Admin);
        let user = RoleDecision::Fixed(Role::User);
        assert_eq!(rule.decide(&person("alice@example.com", true, &[])), admin);
        assert_eq!(rule.decide(&person("alice@example.com", false, &[])), user);
        assert_eq!(
            rule.decide(&person("bob@example.com", true, &["ops"])),
            admin
        );
        assert_eq!(
            rule.decide(&person("bob@example.com", true, &["dev"])),
            user
        );
    }
}
