//! Usage: a person's own budget and what they used of it (`/api/usage/mine`, on the Settings page),
//! and, for administrators, everyone's by person, group, model and day (`/api/admin/usage`, the
//! Usage page; its CSV is `GET /admin/usage.csv`).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// One limit that applies to the person, in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitView {
    /// `tokens_per_day`, `tokens_per_month` or `answers_per_minute`.
    pub limit: String,
    pub most: i64,
    /// What counts against it now (tokens today or this month; for the rate, nothing).
    pub used: Option<i64>,
    /// "set for you", "set for the group 'x'".
    pub set_by: String,
}

/// `POST /api/usage/mine`: the caller's limits and what they used today and this month (UTC).
#[server(endpoint = "usage/mine")]
pub async fn my_usage() -> Result<PersonalUsage, AppError> {
    let user = crate::ssr::current_user()?;
    let standing =
        domain::budgets::standing(&crate::ssr::db()?, user.id, chrono::Utc::now()).await?;
    Ok(ssr::my_usage(standing))
}

/// A person's budget and use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalUsage {
    pub used_today: i64,
    pub used_this_month: i64,
    pub limits: Vec<LimitView>,
}

/// One line of the report's table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotalView {
    pub key: String,
    pub answers: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// The Usage page's data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// `YYYY-MM-DD`, UTC, both included.
    pub from: String,
    pub to: String,
    /// `person`, `group`, `model` or `day`.
    pub by: String,
    pub totals: Vec<TotalView>,
    /// Tokens by day over the span, every day listed (for the chart).
    pub days: Vec<(String, i64)>,
}

/// `POST /api/admin/usage` with optional `from` and `to` (`YYYY-MM-DD`, UTC; by default the last
/// 30 days) and `by` (`person`, `group`, `model` or `day`; by default `person`): answers and
/// tokens summed (administrators).
#[server(endpoint = "admin/usage")]
pub async fn usage_report(
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
) -> Result<UsageTotals, AppError> {
    let user = crate::ssr::current_user()?;
    let (from, to) = ssr::span(from.as_deref(), to.as_deref())?;
    let by_text = by.unwrap_or_else(|| "person".into());
    let by = domain::usage::By::parse(by_text.trim())
        .ok_or_else(|| AppError::invalid("Sum usage by person, group, model or day."))?;
    let rows = domain::usage::rows(&crate::ssr::db()?, &user, from, to).await?;
    let by_day = domain::usage::totals(&rows, domain::usage::By::Day);
    let days = from
        .iter_days()
        .take_while(|d| *d <= to)
        .map(|d| {
            let key = d.to_string();
            let tokens = by_day
                .iter()
                .find(|t| t.key == key)
                .map_or(0, |t| t.tokens());
            (key, tokens)
        })
        .collect();
    Ok(UsageTotals {
        from: from.to_string(),
        to: to.to_string(),
        by: by_text.trim().to_owned(),
        totals: domain::usage::totals(&rows, by)
            .into_iter()
            .map(|t| TotalView {
                key: t.key,
                answers: t.answers,
                input_tokens: t.input_tokens,
                output_tokens: t.output_tokens,
            })
            .collect(),
        days,
    })
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use chrono::NaiveDate;
    use domain::budgets::Standing;

    use super::{LimitView, PersonalUsage};
    use crate::error::AppError;

    /// The span a report covers: `from` and `to` as given, by default the 30 days to today.
    pub fn span(from: Option<&str>, to: Option<&str>) -> Result<(NaiveDate, NaiveDate), AppError> {
        let day = |text: Option<&str>| -> Result<Option<NaiveDate>, AppError> {
            match text.map(str::trim).filter(|t| !t.is_empty()) {
                None => Ok(None),
                Some(t) => t.parse().map(Some).map_err(|_| {
                    AppError::invalid(format!("'{t}' is not a day: write it as 2026-12-31."))
                }),
            }
        };
        let to = day(to)?.unwrap_or_else(|| chrono::Utc::now().date_naive());
        let from = day(from)?.unwrap_or(to - chrono::Duration::days(29));
        Ok((from, to))
    }

    pub fn my_usage(standing: Standing) -> PersonalUsage {
        let l = &standing.limits;
        let limits = [
            l.tokens_per_day
                .as_ref()
                .map(|(n, by)| ("tokens_per_day", *n, Some(standing.used_today), by)),
            l.tokens_per_month
                .as_ref()
                .map(|(n, by)| ("tokens_per_month", *n, Some(standing.used_this_month), by)),
            l.answers_per_minute
                .as_ref()
                .map(|(n, by)| ("answers_per_minute", i64::from(*n), None, by)),
        ]
        .into_iter()
        .flatten()
        .map(|(limit, most, used, by)| LimitView {
            limit: limit.into(),
            most,
            used,
            set_by: by.said(),
        })
        .collect();
        PersonalUsage {
            used_today: standing.used_today,
            used_this_month: standing.used_this_month,
            limits,
        }
    }
}
