//! The people who sign in, and who among them is an admin.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Database, Error, Result};

/// What a person may do beyond their own things.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages the instance (the MCP server registry, other people's roles).
    Admin,
    User,
}

/// Whether a person may use Switchboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    /// New, and waiting for an administrator's approval.
    Pending,
    /// Refused or taken off by an administrator: nothing of theirs works.
    Deactivated,
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
    pub status: Status,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Pending => "pending",
            Status::Deactivated => "deactivated",
        }
    }
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Ok for an administrator; for anyone else, forbidden: "Only administrators can {to}."
    pub fn must_be_admin(&self, to: &str) -> Result<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Error::Forbidden(format!("Only administrators can {to}.")))
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == Status::Active
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

/// Who may sign in through one provider: people with a verified e-mail address in one of
/// `domains`, or in one of `groups` (for GitHub, its organisations). With neither, anyone the
/// provider vouches for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignInRule {
    /// E-mail domains (`example.com`), compared case-insensitively.
    pub domains: Vec<String>,
    pub groups: Vec<String>,
}

impl SignInRule {
    pub fn is_open(&self) -> bool {
        self.domains.is_empty() && self.groups.is_empty()
    }

    pub fn allows(&self, identity: &Identity) -> bool {
        if self.is_open() {
            return true;
        }
        let by_domain = identity.email_verified
            && identity
                .email
                .as_deref()
                .and_then(|email| email.rsplit_once('@'))
                .is_some_and(|(_, domain)| {
                    self.domains
                        .iter()
                        .any(|d| d.trim_start_matches('@').eq_ignore_ascii_case(domain))
                });
        by_domain || identity.groups.iter().any(|g| self.groups.contains(g))
    }
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

/// Whether new people may use Switchboard as soon as they sign in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Admission {
    #[default]
    Open,
    /// New people wait for an administrator's approval (administrators by rule do not).
    Approval,
}

/// Records a sign-in where everyone is admitted (see [`sign_in_with`]).
pub async fn sign_in(db: &Database, identity: &Identity, role: RoleDecision) -> Result<User> {
    sign_in_with(db, identity, role, Admission::Open).await
}

/// Records a sign-in: creates the user the first time (waiting for approval if `admission` says
/// so), refreshes their profile and groups after, and sets their role as `role` says. The caller
/// lets them in only if the returned user is active.
pub async fn sign_in_with(
    db: &Database,
    identity: &Identity,
    role: RoleDecision,
    admission: Admission,
) -> Result<User> {
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
    // A new person waits when approval is needed, unless they are an admin (by rule, or the first
    // person of all); people known before keep their status.
    let user = sqlx::query_as!(
        User,
        r#"
        WITH new AS (
            SELECT COALESCE($7, CASE WHEN EXISTS (SELECT 1 FROM users) THEN 'user' ELSE 'admin' END)
                   AS role)
        INSERT INTO users (issuer, subject, name, email, email_verified, avatar_url, groups, role,
                           status)
        SELECT $1, $2, $3, $4, $5, $6, $8, new.role,
               CASE WHEN $9 AND new.role <> 'admin' THEN 'pending' ELSE 'active' END
        FROM new
        ON CONFLICT (issuer, subject) DO UPDATE SET
            name = EXCLUDED.name,
            email = EXCLUDED.email,
            email_verified = EXCLUDED.email_verified,
            avatar_url = EXCLUDED.avatar_url,
            groups = EXCLUDED.groups,
            role = CASE WHEN users.role_set_in_app THEN users.role ELSE COALESCE($7, users.role) END,
            last_login_at = now()
        RETURNING id, issuer, subject, name, email, avatar_url, role AS "role: Role",
                  status AS "status: Status"
        "#,
        identity.issuer,
        identity.subject,
        identity.name,
        identity.email,
        identity.email_verified,
        identity.avatar_url,
        fixed.map(Role::as_str),
        &identity.groups,
        admission == Admission::Approval,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// The user with this id, if there is one (whatever their status).
pub async fn find(db: &Database, id: Uuid) -> Result<Option<User>> {
    let user = sqlx::query_as!(
        User,
        r#"SELECT id, issuer, subject, name, email, avatar_url, role AS "role: Role",
                  status AS "status: Status"
           FROM users WHERE id = $1"#,
        id
    )
    .fetch_optional(db.pool())
    .await?;
    Ok(user)
}

/// Gives everyone who has signed in the role `rule` gives them now, from the e-mail address and
/// groups of their last sign-in: a person taken off the admin list is no longer an admin, their
/// sessions and tokens included, without waiting for them to sign in again. Nothing changes when
/// no rule is configured (then the first person to sign in stays the admin), and for people whose
/// role an administrator set in the app. Returns how many roles changed.
pub async fn apply_admin_rule(db: &Database, rule: &AdminRule) -> Result<u64> {
    if !rule.is_configured() {
        return Ok(0);
    }
    let emails: Vec<String> = rule.emails.iter().map(|e| e.to_lowercase()).collect();
    let changed = sqlx::query!(
        r#"UPDATE users SET role = wanted.role
           FROM (SELECT id,
                        CASE WHEN (email_verified AND lower(email) = ANY($1)) OR groups && $2
                             THEN 'admin' ELSE 'user' END AS role
                 FROM users WHERE issuer <> $3 AND NOT role_set_in_app) AS wanted
           WHERE users.id = wanted.id AND users.role <> wanted.role"#,
        &emails,
        &rule.groups,
        LOCAL_ISSUER,
    )
    .execute(db.pool())
    .await?;
    db.token_cache().forget(crate::tokens::Change::Anyone);
    Ok(changed.rows_affected())
}

/// What only administrators may do here.
const APPROVE: &str = "approve people";

/// A person waiting for an administrator's approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub id: Uuid,
    pub name: String,
    pub email: Option<String>,
    pub signed_up_at: chrono::DateTime<chrono::Utc>,
}

/// The people waiting for approval, oldest first; administrators only.
pub async fn waiting(db: &Database, actor: &User) -> Result<Vec<Waiting>> {
    actor.must_be_admin(APPROVE)?;
    let people = sqlx::query_as!(
        Waiting,
        r#"SELECT id, name, email, created_at AS signed_up_at FROM users
           WHERE status = 'pending' ORDER BY created_at"#
    )
    .fetch_all(db.pool())
    .await?;
    Ok(people)
}

/// Lets a waiting person in (`approve`), or refuses them (they stay deactivated); administrators
/// only. False when nobody with that id is waiting.
pub async fn admit(db: &Database, actor: &User, id: Uuid, approve: bool) -> Result<bool> {
    actor.must_be_admin(APPROVE)?;
    let status = if approve {
        Status::Active
    } else {
        Status::Deactivated
    };
    let mut tx = db.pool().begin().await?;
    let done = sqlx::query!(
        "UPDATE users SET status = $2 WHERE id = $1 AND status = 'pending'",
        id,
        status as Status,
    )
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 1 {
        let action = if approve { "admit" } else { "refuse" };
        crate::people::record(&mut tx, actor.id, id, action, None).await?;
        tracing::info!(admin = %actor.id, user = %id, approve, "admission decided");
    }
    tx.commit().await?;
    // Other instances hear of it from the database; this one need not wait for that.
    db.token_cache().forget(crate::tokens::Change::Person(id));
    Ok(done.rows_affected() == 1)
}

/// Deactivates a person at once: their sessions, API tokens and event streams stop working
/// (instances hear of it from the database). False when there is no such person.
pub async fn deactivate(db: &Database, id: Uuid) -> Result<bool> {
    let done = sqlx::query!(
        "UPDATE users SET status = 'deactivated' WHERE id = $1 AND issuer <> $2",
        id,
        LOCAL_ISSUER
    )
    .execute(db.pool())
    .await?;
    db.token_cache().forget(crate::tokens::Change::Person(id));
    Ok(done.rows_affected() == 1)
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
    fn sign_in_rules_admit_verified_domains_and_groups_only() {
        let open = SignInRule::default();
        assert!(open.allows(&person("anyone@anywhere.example", false, &[])));
        let rule = SignInRule {
            domains: vec!["Example.com".into()],
            groups: vec!["acme-org".into()],
        };
        assert!(rule.allows(&person("alice@example.com", true, &[])));
        assert!(
            !rule.allows(&person("alice@example.com", false, &[])),
            "unverified"
        );
        assert!(
            !rule.allows(&person("mallory@example.com.evil.example", true, &[])),
            "a longer domain"
        );
        assert!(!rule.allows(&person("mallory@evil.example", true, &[])));
        assert!(rule.allows(&person("bob@elsewhere.example", true, &["acme-org"])));
        assert!(!rule.allows(&person("bob@elsewhere.example", true, &["other"])));
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
