//! What was used, for administrators (`/admin/usage`): answers and tokens by day, person and model
//! over a span of days, from `usage_days` (kept when chats are deleted); summed by person, group,
//! model or day for the table and the chart, and as rows for a CSV export.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::users::User;
use crate::{Database, Error, Result};

/// The longest span one report covers.
pub const MAX_DAYS: i64 = 366;

/// One person's use of one model on one day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub day: NaiveDate,
    pub user_id: Uuid,
    pub name: String,
    pub email: Option<String>,
    /// Their groups now (the provider's and the app's).
    pub groups: Vec<String>,
    pub model: String,
    pub answers: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// What rows are summed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    Person,
    Group,
    Model,
    Day,
}

impl By {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "person" => Some(By::Person),
            "group" => Some(By::Group),
            "model" => Some(By::Model),
            "day" => Some(By::Day),
            _ => None,
        }
    }
}

/// A sum of rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Total {
    /// The person's name (and address), the group, the model or the day.
    pub key: String,
    pub answers: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

impl Total {
    fn add(&mut self, row: &Row) {
        self.answers += row.answers;
        self.input_tokens += row.input_tokens;
        self.output_tokens += row.output_tokens;
    }

    pub fn tokens(&self) -> i64 {
        self.input_tokens + self.output_tokens
    }
}

/// Every row from `from` to `to` (both included, UTC days), by day then person; administrators
/// only.
pub async fn rows(db: &Database, actor: &User, from: NaiveDate, to: NaiveDate) -> Result<Vec<Row>> {
    actor.must_be_admin("see everyone's usage")?;
    if to < from || (to - from).num_days() >= MAX_DAYS {
        return Err(Error::Invalid(format!(
            "Choose a span of 1 to {MAX_DAYS} days, its start before its end."
        )));
    }
    Ok(sqlx::query_as!(
        Row,
        r#"SELECT d.day, d.user_id, u.name, u.email,
                  array(SELECT unnest(u.groups)
                        UNION SELECT m.group_name FROM group_members m WHERE m.user_id = u.id
                        ORDER BY 1) AS "groups!",
                  d.model, d.answers::bigint AS "answers!", d.input_tokens, d.output_tokens
           FROM usage_days d JOIN users u ON u.id = d.user_id
           WHERE d.day BETWEEN $1 AND $2
           ORDER BY d.day, lower(u.name), u.id, d.model"#,
        from,
        to
    )
    .fetch_all(db.pool())
    .await?)
}

/// The rows summed by `by`, most tokens first (by day: in order of days). A person in several
/// groups counts in each; one in none, under "(no group)".
pub fn totals(rows: &[Row], by: By) -> Vec<Total> {
    let mut sums: BTreeMap<String, Total> = BTreeMap::new();
    let mut add = |key: String, row: &Row| {
        sums.entry(key.clone())
            .or_insert_with(|| Total {
                key,
                ..Total::default()
            })
            .add(row)
    };
    for row in rows {
        match by {
            By::Person => add(
                match &row.email {
                    Some(email) => format!("{} <{email}>", row.name),
                    None => row.name.clone(),
                },
                row,
            ),
            By::Model => add(row.model.clone(), row),
            By::Day => add(row.day.to_string(), row),
            By::Group if row.groups.is_empty() => add("(no group)".into(), row),
            By::Group => {
                for group in &row.groups {
                    add(group.clone(), row);
                }
            }
        }
    }
    let mut totals: Vec<Total> = sums.into_values().collect();
    if by != By::Day {
        totals.sort_by(|a, b| b.tokens().cmp(&a.tokens()).then_with(|| a.key.cmp(&b.key)));
    }
    totals
}

/// The rows as CSV (RFC 4180): a header, then one line a row. A cell that a spreadsheet would
/// read as a formula (`=`, `+`, `-`, `@` first) is given a leading `'`.
pub fn csv(rows: &[Row]) -> String {
    fn cell(text: &str) -> String {
        let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{text}")
        } else {
            text.to_owned()
        };
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text
        }
    }
    let mut out = String::from(
        "day,person_id,name,email,groups,model,answers,input_tokens,output_tokens\r\n",
    );
    for r in rows {
        let line = [
            r.day.to_string(),
            r.user_id.to_string(),
            cell(&r.name),
            cell(r.email.as_deref().unwrap_or_default()),
            cell(&r.groups.join(";")),
            cell(&r.model),
            r.answers.to_string(),
            r.input_tokens.to_string(),
            r.output_tokens.to_string(),
        ]
        .join(",");
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: u32, name: &str, groups: &[&str], model: &str, tokens: i64) -> Row {
        Row {
            day: NaiveDate::from_ymd_opt(2026, 12, day).unwrap(),
            user_id: Uuid::nil(),
            name: name.into(),
            email: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            model: model.into(),
            answers: 1,
            input_tokens: tokens,
            output_tokens: 0,
        }
    }

    #[test]
    fn rows_sum_by_person_group_model_and_day() {
        let rows = [
            row(1, "Ann", &["research", "ops"], "a/x", 10),
            row(1, "Bob", &[], "a/y", 5),
            row(2, "Ann", &["research", "ops"], "a/y", 20),
        ];
        let keys = |by| {
            totals(&rows, by)
                .into_iter()
                .map(|t| {
                    let tokens = t.tokens();
                    (t.key, tokens)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(By::Person), [("Ann".into(), 30), ("Bob".into(), 5)]);
        assert_eq!(
            keys(By::Group),
            [
                ("ops".into(), 30),
                ("research".into(), 30),
                ("(no group)".into(), 5)
            ]
        );
        assert_eq!(keys(By::Model), [("a/y".into(), 25), ("a/x".into(), 10)]);
        assert_eq!(
            keys(By::Day),
            [("2026-12-01".into(), 15), ("2026-12-02".into(), 20)]
        );
    }

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        let mut r = row(1, "=HYPERLINK(\"x\")", &["a", "b"], "p/m", 3);
        r.email = Some("ann@example.com".into());
        let text = csv(&[r]);
        let line = text.lines().nth(1).unwrap();
        assert!(line.contains(r#""'=HYPERLINK(""x"")""#), "{line}");
        assert!(line.contains(",a;b,p/m,1,3,0"), "{line}");
        assert!(text.starts_with("day,person_id,"));
    }
}
