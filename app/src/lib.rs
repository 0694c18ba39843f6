//! Switchboard's web UI, rendered on the server (feature `ssr`) and hydrated in the browser
//! (feature `hydrate`). Never build it with both. It holds no SQL: data comes from server functions
//! that call the `domain` crate.

// Leptos views are deeply nested types; the chat page needs more than the default 128.
#![recursion_limit = "256"]

pub mod agent;
pub mod auth;
pub mod chats;
pub mod components;
pub mod error;
pub mod groups;
pub mod highlight;
pub mod markdown;
pub mod mcp;
pub mod models;
pub mod offerings;
pub mod pages;
pub mod people;
pub mod questions;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod theme;
pub mod usage;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Outlet, ParentRoute, Route, Router, Routes};
use leptos_router::path;

use components::layout::Layout;
use leptos_router::Lazy;
use pages::{chat::ChatPage, home::HomePage, lazy, login::LoginPage, not_found::NotFound};

/// The name cargo-leptos gives the site's CSS, JS and wasm files (`[[workspace.metadata.leptos]] name`).
pub const SITE_NAME: &str = "switchboard";

/// The HTML document around the app, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let theme = theme::Theme::from_request();
    view! {
        <!DOCTYPE html>
        <html lang="en" class=theme.html_class()>
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body class="h-full bg-white text-zinc-900 antialiased dark:bg-zinc-950 dark:text-zinc-100">
                <App />
            </body>
        </html>
    }
}

/// The application: the shell layout around the routed pages.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_context(chats::ChatListVersion(RwSignal::new(0)));

    // Mark the page once hydration has finished: effects run only in the browser, after hydration.
    // End-to-end tests wait for this before they interact, and fail if it never comes.
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Stylesheet id="leptos" href=format!("/pkg/{SITE_NAME}.css") />
        <Title text="Switchboard" />
        <Router>
            <Routes fallback=|| view! { <Layout><NotFound /></Layout> }>
                <Route path=path!("/login") view=LoginPage />
                <ParentRoute path=path!("") view=|| view! { <Layout><Outlet /></Layout> }>
                    <Route path=path!("") view=HomePage />
                    <Route path=path!("/c/:id") view=ChatPage />
                    // Pages a chat does not need: their code is downloaded when one is opened.
                    <Route path=path!("/settings") view={Lazy::<lazy::Settings>::new()} />
                    <Route path=path!("/servers") view={Lazy::<lazy::Servers>::new()} />
                    <Route path=path!("/activity") view={Lazy::<lazy::Activity>::new()} />
                    <Route path=path!("/admin/servers") view={Lazy::<lazy::AdminServers>::new()} />
                    <Route path=path!("/admin/models") view={Lazy::<lazy::AdminModels>::new()} />
                    <Route path=path!("/admin/people") view={Lazy::<lazy::People>::new()} />
                    <Route path=path!("/admin/groups") view={Lazy::<lazy::Groups>::new()} />
                    <Route path=path!("/admin/usage") view={Lazy::<lazy::Usage>::new()} />
                </ParentRoute>
            </Routes>
        </Router>
    }
}

/// A whole error page as HTML, for failures outside the Leptos router (a panic in a handler).
#[cfg(feature = "ssr")]
pub fn error_document(status: u16, title: &str, detail: &str) -> String {
    use components::error_page::ErrorPage;
    let (title, detail) = (title.to_owned(), detail.to_owned());
    let owner = Owner::new();
    owner.with(|| {
        view! {
            <!DOCTYPE html>
            <html lang="en">
                <head>
                    <meta charset="utf-8" />
                    <meta name="viewport" content="width=device-width, initial-scale=1" />
                    <meta name="color-scheme" content="light dark" />
                    <title>{format!("{status} · Switchboard")}</title>
                    <link rel="stylesheet" href=format!("/pkg/{SITE_NAME}.css") />
                </head>
                <body class="h-full bg-white text-zinc-900 antialiased dark:bg-zinc-950 dark:text-zinc-100">
                    <div class="flex min-h-dvh items-center justify-center">
                        <ErrorPage status title detail />
                    </div>
                </body>
            </html>
        }
        .to_html()
    })
}
