//! What a person may spend: tokens per day and per month (calendar days and months, UTC) and
//! answers per minute (their rate tier). Each limit is the person's own when an administrator set
//! one, else the most generous of their groups' that set it, else none. [`admit`] runs before an
//! answer starts and refuses it with which limit, how much is used and when it renews;
//! [`check_tokens`] before each later model call of an answer.
//!
//! Tokens are counted from `usage_days`, which each answer's checkpoints add to (and which stays
//! when chats are deleted); answers from `answer_starts`, a row per answer let through.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Database, Error, Result};

/// Limits as an administrator sets them, on a group or a person; None: not set here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub tokens_per_day: Option<i64>,
    pub tokens_per_month: Option<i64>,
    pub answers_per_minute: Option<i32>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks that each limit set is a count (zero stops everything).
    pub fn check(&self) -> Result<()> {
        let negative = self.tokens_per_day.is_some_and(|n| n < 0)
            || self.tokens_per_month.is_some_and(|n| n < 0)
            || self.answers_per_minute.is_some_and(|n| n < 0);
        if negative {
            return Err(Error::Invalid(
                "A limit is a number of tokens or answers, 0 or more; leave it empty for none."
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Where a limit that applies to a person comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetBy {
    /// Set on the person themselves.
    Person,
    /// Set on this group of theirs.
    Group(String),
}

impl SetBy {
    /// "set for you", "set for the group 'x'".
    pub fn said(&self) -> String {
        match self {
            SetBy::Person => "set for you".into(),
            SetBy::Group(name) => format!("set for the group '{name}'"),
        }
    }
}

/// The limits that apply to one person, each with where it comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applying {
    pub tokens_per_day: Option<(i64, SetBy)>,
    pub tokens_per_month: Option<(i64, SetBy)>,
    pub answers_per_minute: Option<(i32, SetBy)>,
}

/// A person's budget and what they used of it, for their own page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    pub limits: Applying,
    pub used_today: i64,
    pub used_this_month: i64,
}

/// Picks, for each limit, the person's own, else the largest of the groups'.
pub(crate) fn applying(own: Limits, groups: &[(String, Limits)]) -> Applying {
    fn pick<T: Copy + Ord>(
        own: Option<T>,
        groups: &[(String, Limits)],
        get: impl Fn(&Limits) -> Option<T>,
    ) -> Option<(T, SetBy)> {
        if let Some(own) = own {
            return Some((own, SetBy::Person));
        }
        groups
            .iter()
            .filter_map(|(name, limits)| get(limits).map(|n| (n, name)))
            .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
            .map(|(n, name)| (n, SetBy::Group(name.clone())))
    }
    Applying {
        tokens_per_day: pick(own.tokens_per_day, groups, |l| l.tokens_per_day),
        tokens_per_month: pick(own.tokens_per_month, groups, |l| l.tokens_per_month),
        answers_per_minute: pick(own.answers_per_minute, groups, |l| l.answers_per_minute),
    }
}

/// The limits that apply to the person with this id.
pub async fn applying_to(db: &Database, user_id: Uuid) -> Result<Applying> {
    Ok(crate::access::Access::with_limits(db, user_id).await?.1)
}

fn day_of(now: DateTime<Utc>) -> NaiveDate {
    now.date_naive()
}

fn month_start(day: NaiveDate) -> NaiveDate {
    day.with_day(1).expect("every month has a first day")
}

fn next_month(day: NaiveDate) -> NaiveDate {
    let (year, month) = if day.month() == 12 {
        (day.year() + 1, 1)
    } else {
        (day.year(), day.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1).expect("a valid date")
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

/// The tokens a person used on `now`'s day and in its month.
async fn used(db: &Database, user_id: Uuid, now: DateTime<Utc>) -> Result<(i64, i64)> {
    let today = day_of(now);
    let row = sqlx::query!(
        r#"SELECT coalesce(sum(input_tokens + output_tokens) FILTER (WHERE day = $2), 0)::bigint
                    AS "today!",
                  coalesce(sum(input_tokens + output_tokens), 0)::bigint AS "month!"
           FROM usage_days WHERE user_id = $1 AND day >= $3 AND day <= $2"#,
        user_id,
        today,
        month_start(today)
    )
    .fetch_one(db.pool())
    .await?;
    Ok((row.today, row.month))
}

/// A person's limits and what they used of their budgets as of `now`.
pub async fn standing(db: &Database, user_id: Uuid, now: DateTime<Utc>) -> Result<Standing> {
    let (limits, used) = tokio::join!(applying_to(db, user_id), used(db, user_id, now));
    let (used_today, used_this_month) = used?;
    Ok(Standing {
        limits: limits?,
        used_today,
        used_this_month,
    })
}

/// "3 h 12 min", "45 s", "4 days": how long until a limit lets them through.
fn wait_words(seconds: i64) -> String {
    match seconds {
        ..=90 => format!("{} s", seconds.max(1)),
        91..=3_599 => format!("{} min", (seconds + 59) / 60),
        3_600..=172_799 => format!("{} h {} min", seconds / 3600, (seconds % 3600) / 60),
        _ => format!("{} days", seconds / 86_400),
    }
}

fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Lets a new answer start, or refuses it when one of the person's budgets is used up or they
/// started as many answers in the last minute as their rate allows, saying which, how much, and
/// when it renews. An answer let through under a rate is recorded (`answer_starts`), under a lock
/// of the person's, so that sends at once in several chats are counted one after another.
pub async fn admit(db: &Database, user_id: Uuid, now: DateTime<Utc>) -> Result<()> {
    let limits = applying_to(db, user_id).await?;
    admit_under(db, user_id, &limits, now).await
}

/// [`admit`], with the limits that apply read already (with the person's access, in one query:
/// see `Access::with_limits`). No query at all when none applies.
pub async fn admit_under(
    db: &Database,
    user_id: Uuid,
    limits: &Applying,
    now: DateTime<Utc>,
) -> Result<()> {
    tokens_left(db, user_id, limits, now).await?;
    let Some((most, by)) = &limits.answers_per_minute else {
        return Ok(());
    };
    let since = now - Duration::seconds(60);
    let mut tx = db.pool().begin().await?;
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('answer_starts:' || $1::text, 0))",
        user_id.to_string()
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "DELETE FROM answer_starts WHERE user_id = $1 AND at <= $2",
        user_id,
        since
    )
    .execute(&mut *tx)
    .await?;
    let started: Vec<DateTime<Utc>> = sqlx::query_scalar!(
        "SELECT at FROM answer_starts WHERE user_id = $1 AND at > $2 ORDER BY at",
        user_id,
        since
    )
    .fetch_all(&mut *tx)
    .await?;
    let most = usize::try_from(*most).unwrap_or(0);
    if started.len() >= most {
        let message = if most == 0 {
            format!(
                "Your rate of answers is 0 a minute ({}): you cannot send until an administrator changes it.",
                by.said()
            )
        } else {
            format!(
                "You have started {} answers in the last minute, the most your rate allows ({most} a minute, {}). Wait {}, then send again.",
                started.len(),
                by.said(),
                wait_words(free_in(&started, most, now))
            )
        };
        crate::metrics::METRICS.refused("rate");
        return Err(Error::RateLimited {
            message,
            retry_after: free_in(&started, most, now) as u64,
        });
    }
    sqlx::query!(
        "INSERT INTO answer_starts (user_id, at) VALUES ($1, $2)",
        user_id,
        now
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Whole seconds (rounded up, at least 1) until one more answer fits in the minute, when
/// `started` (in order) are the starts in it and `most` may be: the one that makes room is the
/// (len − most + 1)-th oldest.
fn free_in(started: &[DateTime<Utc>], most: usize, now: DateTime<Utc>) -> i64 {
    let leaving = started
        .get(started.len().saturating_sub(most.max(1)))
        .copied()
        .unwrap_or(now);
    let millis = (leaving + Duration::seconds(60) - now).num_milliseconds();
    ((millis + 999) / 1000).max(1)
}

/// Refuses when a token budget of the person's is used up (checked again before each later model
/// call of an answer, so that one long answer stops at the budget too).
pub async fn check_tokens(db: &Database, user_id: Uuid, now: DateTime<Utc>) -> Result<()> {
    let limits = applying_to(db, user_id).await?;
    tokens_left(db, user_id, &limits, now).await
}

async fn tokens_left(
    db: &Database,
    user_id: Uuid,
    limits: &Applying,
    now: DateTime<Utc>,
) -> Result<()> {
    if limits.tokens_per_day.is_none() && limits.tokens_per_month.is_none() {
        return Ok(());
    }
    let (today, month) = used(db, user_id, now).await?;
    let day = day_of(now);
    let tomorrow = midnight(day + Duration::days(1));
    let renews = next_month(day);
    let over_day = limits
        .tokens_per_day
        .as_ref()
        .filter(|(most, _)| today >= *most);
    let over_month = limits
        .tokens_per_month
        .as_ref()
        .filter(|(most, _)| month >= *most);
    // When both are used up, the later renewal is when a send may go through again.
    let (most, by, used, period, at) = match (over_day, over_month) {
        (_, Some((most, by))) => (most, by, month, "monthly", midnight(renews)),
        (Some((most, by)), None) => (most, by, today, "daily", tomorrow),
        (None, None) => return Ok(()),
    };
    let wait = (at - now).num_seconds().max(1);
    let message = if *most == 0 {
        format!(
            "Your {period} budget is 0 tokens ({}): you cannot send until an administrator changes it.",
            by.said()
        )
    } else {
        let when = if period == "daily" {
            "at midnight UTC".to_owned()
        } else {
            format!("on {} at 00:00 UTC", renews.format("%-d %B"))
        };
        let span = if period == "daily" {
            "today"
        } else {
            "this month"
        };
        format!(
            "Your {period} budget of {} tokens ({}) is used up: {} used {span}. It renews {when}, in {}.",
            thousands(*most),
            by.said(),
            thousands(used),
            wait_words(wait)
        )
    };
    crate::metrics::METRICS.refused("budget");
    Err(Error::OverBudget {
        message,
        retry_after: wait as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(day: Option<i64>, month: Option<i64>, rate: Option<i32>) -> Limits {
        Limits {
            tokens_per_day: day,
            tokens_per_month: month,
            answers_per_minute: rate,
        }
    }

    #[test]
    fn a_persons_own_limit_stands_else_their_most_generous_groups() {
        let groups = vec![
            ("interns".to_owned(), limits(Some(1_000), None, Some(2))),
            ("research".to_owned(), limits(Some(50_000), None, None)),
        ];
        let got = applying(Limits::default(), &groups);
        assert_eq!(
            got.tokens_per_day,
            Some((50_000, SetBy::Group("research".into())))
        );
        assert_eq!(
            got.answers_per_minute,
            Some((2, SetBy::Group("interns".into())))
        );
        assert_eq!(got.tokens_per_month, None);
        let own = applying(limits(Some(10), None, None), &groups);
        assert_eq!(own.tokens_per_day, Some((10, SetBy::Person)));
    }

    #[test]
    fn renewals_fall_at_midnight_and_on_the_first_of_the_month() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        assert_eq!(
            next_month(day),
            NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()
        );
        assert_eq!(
            month_start(day),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(wait_words(30), "30 s");
        assert_eq!(wait_words(3 * 3600 + 12 * 60), "3 h 12 min");
    }

    #[test]
    fn room_in_the_minute_comes_when_enough_starts_have_left_it() {
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let ago = |s: i64| now - Duration::milliseconds(s);
        let started = [ago(50_000), ago(30_500), ago(10_000)];
        // Two a minute, three started (a limit lowered since): the second oldest must leave.
        assert_eq!(free_in(&started, 2, now), 30);
        assert_eq!(free_in(&started, 3, now), 10);
        assert_eq!(free_in(&started[..1], 1, now), 10);
        assert_eq!(
            free_in(&[], 0, now),
            60,
            "a rate of 0 never makes room: a minute, asked again"
        );
    }

    #[test]
    fn negative_limits_are_refused() {
        assert!(limits(Some(-1), None, None).check().is_err());
        assert!(limits(Some(0), Some(5), Some(0)).check().is_ok());
    }
}
