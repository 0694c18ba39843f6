//! Usage (`/admin/usage`), for administrators: answers and tokens over a span of days, summed by
//! person, group, model or day, as a chart of tokens by day and a table; and the same rows as a
//! CSV file (`GET /admin/usage.csv`).

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::styles::{INPUT, PAGE_ERROR, PRIMARY};
use crate::usage::{UsageTotals, usage_report};

#[component]
pub fn UsagePage() -> impl IntoView {
    let from = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let by = RwSignal::new("person".to_owned());
    let report = Resource::new(
        move || (from.get(), to.get(), by.get()),
        |(from, to, by)| usage_report(Some(from), Some(to), Some(by)),
    );
    view! {
        <Title text="Usage · Switchboard" />
        <div class="mx-auto max-w-4xl px-4 py-8 md:px-8">
            <h1 class="text-2xl font-semibold tracking-tight">"Usage"</h1>
            <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
                "Answers and tokens (the providers' counts, or estimates where they gave none), by UTC day. Deleting chats does not change it."
            </p>
            <div class="mt-6 flex flex-wrap items-end gap-3">
                <label class="flex flex-col gap-1 text-sm">"From"
                    <input type="date" class=INPUT data-testid="usage-from" on:change=move |ev| from.set(event_target_value(&ev)) />
                </label>
                <label class="flex flex-col gap-1 text-sm">"To"
                    <input type="date" class=INPUT data-testid="usage-to" on:change=move |ev| to.set(event_target_value(&ev)) />
                </label>
                <label class="flex flex-col gap-1 text-sm">"By"
                    <select class=INPUT data-testid="usage-by" on:change=move |ev| by.set(event_target_value(&ev))>
                        <option value="person">"Person"</option>
                        <option value="group">"Group"</option>
                        <option value="model">"Model"</option>
                        <option value="day">"Day"</option>
                    </select>
                </label>
                <a class=PRIMARY data-testid="usage-csv" rel="external" download
                    href=move || format!("/admin/usage.csv?from={}&to={}", from.get(), to.get())>"Download CSV"</a>
            </div>
            <Transition fallback=|| view! { <p class="mt-6 text-sm text-zinc-500">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match report.await {
                        Ok(report) => view! { <Report report /> }.into_any(),
                        Err(e) => view! { <p role="alert" class=PAGE_ERROR>{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}

/// The chart (tokens by day, one bar a day) and the table.
#[component]
fn Report(report: UsageTotals) -> impl IntoView {
    let most = report
        .days
        .iter()
        .map(|(_, t)| *t)
        .max()
        .unwrap_or(0)
        .max(1);
    let count = report.days.len().max(1);
    let width = 100.0 / count as f64;
    let total: i64 = report.days.iter().map(|(_, t)| *t).sum();
    view! {
        <p class="mt-6 text-sm text-zinc-600 dark:text-zinc-400">
            {format!("{} to {}: {total} tokens.", report.from, report.to)}
        </p>
        <svg class="mt-2 h-40 w-full rounded-lg border border-zinc-200 text-zinc-800 dark:border-zinc-800 dark:text-zinc-200"
            viewBox="0 0 100 100" preserveAspectRatio="none" role="img" data-testid="usage-chart"
            aria-label=format!("Tokens by day, {} to {}", report.from, report.to)>
            {report.days.iter().enumerate().map(|(i, (day, tokens))| {
                let height = *tokens as f64 / most as f64 * 96.0;
                view! {
                    <rect x=format!("{:.3}", i as f64 * width + width * 0.1) width=format!("{:.3}", width * 0.8)
                        y=format!("{:.3}", 100.0 - height) height=format!("{:.3}", height)
                        fill="currentColor" data-testid="usage-bar" data-day=day.clone() data-tokens=tokens.to_string()>
                        <title>{format!("{day}: {tokens} tokens")}</title>
                    </rect>
                }
            }).collect_view()}
        </svg>
        <table class="mt-6 w-full text-left text-sm" data-testid="usage-table">
            <thead class="text-xs text-zinc-500 dark:text-zinc-400">
                <tr>
                    <th class="py-1">{match report.by.as_str() { "group" => "Group", "model" => "Model", "day" => "Day", _ => "Person" }}</th>
                    <th class="py-1 text-right">"Answers"</th>
                    <th class="py-1 text-right">"Tokens in"</th>
                    <th class="py-1 text-right">"Tokens out"</th>
                </tr>
            </thead>
            <tbody>
                {report.totals.is_empty().then(|| view! { <tr><td class="py-2 text-zinc-500" colspan="4">"Nothing was used in these days."</td></tr> })}
                {report.totals.into_iter().map(|t| view! {
                    <tr class="border-t border-zinc-200 dark:border-zinc-800" data-testid="usage-row">
                        <td class="py-1">{t.key}</td>
                        <td class="py-1 text-right tabular-nums">{t.answers}</td>
                        <td class="py-1 text-right tabular-nums">{t.input_tokens}</td>
                        <td class="py-1 text-right tabular-nums">{t.output_tokens}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}
