use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::auth::{LoginOptions, ProviderButton, login_providers};
use crate::components::theme_toggle::ThemeToggle;

/// The login page: one button per provider, and what went wrong last time, if anything.
/// Public; a signed-in person who comes here is sent on (the server does that).
#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let options = Resource::new_blocking(|| (), |_| login_providers());

    view! {
        <Title text="Sign in · Switchboard" />
        <div class="flex min-h-dvh flex-col items-center justify-center bg-zinc-50 px-4 dark:bg-zinc-950">
            <div class="absolute right-3 top-3">
                <ThemeToggle />
            </div>
            <main class="w-full max-w-sm rounded-2xl border border-zinc-200 bg-white p-8 shadow-sm dark:border-zinc-800 dark:bg-zinc-900">
                <div class="flex items-center gap-2">
                    <img src="/favicon.svg" alt="" class="size-8" />
                    <span class="text-lg font-semibold tracking-tight">"Switchboard"</span>
                </div>
                <h1 class="mt-6 text-2xl font-semibold tracking-tight">"Sign in"</h1>
                <p class="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
                    "Use your organisation's account to continue."
                </p>
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        let options = options.await.unwrap_or_default();
                        let q = query.get();
                        let notice = notice(
                            q.get("error").as_deref(),
                            q.get("provider").as_deref(),
                            q.get("reason").as_deref(),
                            q.get("signed_out").is_some(),
                            &options,
                        );
                        let next = q.get("next");
                        view! {
                            {notice.map(|(kind, text)| view! { <Notice kind text /> })}
                            <Buttons providers=options.providers next />
                        }
                    })}
                </Suspense>
            </main>
        </div>
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NoticeKind {
    Info,
    Error,
}

#[component]
fn Notice(kind: NoticeKind, text: String) -> impl IntoView {
    let class = match kind {
        NoticeKind::Info => {
            "border-emerald-200 bg-emerald-50 text-emerald-900 dark:border-emerald-900 dark:bg-emerald-950 dark:text-emerald-200"
        }
        NoticeKind::Error => {
            "border-red-200 bg-red-50 text-red-900 dark:border-red-900 dark:bg-red-950 dark:text-red-200"
        }
    };
    view! {
        <p
            role=if kind == NoticeKind::Error { "alert" } else { "status" }
            data-testid="login-notice"
            class=format!("mt-6 rounded-lg border px-3 py-2 text-sm {class}")
        >
            {text}
        </p>
    }
}

#[component]
fn Buttons(providers: Vec<ProviderButton>, next: Option<String>) -> impl IntoView {
    if providers.is_empty() {
        return view! {
            <p class="mt-6 text-sm text-zinc-600 dark:text-zinc-400">
                "No sign-in provider is configured. An administrator sets one up with SWITCHBOARD_AUTH_PROVIDERS (see docs/sign-in.md)."
            </p>
        }
        .into_any();
    }
    let suffix = next
        .filter(|n| n.starts_with('/'))
        .map(|n| format!("?next={}", encode_component(&n)))
        .unwrap_or_default();
    view! {
        <div class="mt-6 flex flex-col gap-3">
            {providers
                .into_iter()
                .map(|p| {
                    view! {
                        // rel=external: a full page load to the server, not a client-side route.
                        <a
                            rel="external"
                            href=format!("/auth/login/{}{suffix}", p.id)
                            data-testid=format!("sign-in-{}", p.id)
                            class="flex w-full items-center justify-center rounded-lg bg-zinc-900 px-4 py-2.5 text-sm font-medium text-white hover:bg-zinc-700 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-indigo-500 dark:bg-zinc-100 dark:text-zinc-900 dark:hover:bg-zinc-300"
                        >
                            {format!("Sign in with {}", p.label)}
                        </a>
                    }
                })
                .collect_view()}
        </div>
    }
    .into_any()
}

/// The message for how a person arrived here (`/login?error=...` from a failed sign-in, ...).
fn notice(
    error: Option<&str>,
    provider: Option<&str>,
    reason: Option<&str>,
    signed_out: bool,
    options: &LoginOptions,
) -> Option<(NoticeKind, String)> {
    let label = provider
        .and_then(|id| options.providers.iter().find(|p| p.id == id))
        .map(|p| p.label.clone())
        .unwrap_or_else(|| "the identity provider".into());
    let Some(error) = error else {
        return info(reason, signed_out);
    };
    let text = match error {
        "state" => "That sign-in attempt is no longer valid: it expired, was already used, or did not start here. Start again below.".to_owned(),
        "denied" => format!("Sign-in was cancelled at {label}. Choose a provider below to try again."),
        "unreachable" => format!("Switchboard could not reach {label}, so you were not signed in. It may be down; try again in a moment, and tell your administrator if it persists."),
        "exchange" => format!("{label} did not accept the sign-in (its code was invalid, expired or already used). Start again below."),
        "id_token" => format!("{label}'s answer could not be verified, so you were not signed in. Tell your administrator: the server log has the details."),
        "no_verified_email" => format!("Your {label} account has no verified e-mail address. Verify one there, then try again."),
        "unknown_provider" => "That sign-in provider is not configured here. Choose one below.".to_owned(),
        "not_allowed" => format!("Your {label} account is not one this Switchboard lets in (its administrator allows only some e-mail domains, groups or organisations). Sign in with another account, or ask the administrator to let you in."),
        "awaiting_approval" => "Your account is waiting for an administrator's approval. You can sign in once they approve it; ask them if it takes long.".to_owned(),
        "deactivated" => "Your account on this Switchboard is deactivated. Ask its administrator if you think it should not be.".to_owned(),
        _ => format!("{label} reported an error, so you were not signed in. Try again; if it keeps happening, tell your administrator."),
    };
    Some((NoticeKind::Error, text))
}

fn info(reason: Option<&str>, signed_out: bool) -> Option<(NoticeKind, String)> {
    if signed_out {
        Some((NoticeKind::Info, "You have signed out.".into()))
    } else if reason == Some("expired") {
        Some((
            NoticeKind::Info,
            "Your session has ended. Sign in again to continue.".into(),
        ))
    } else {
        None
    }
}

/// Percent-encodes a URL query value.
fn encode_component(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
