use leptos::prelude::*;

/// The body of an error page (404, 500, ...): what happened and what to do next. Rendered on the
/// server, the page is answered with `status`.
#[component]
pub fn ErrorPage(
    status: u16,
    #[prop(into)] title: String,
    #[prop(into)] detail: String,
) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let (Some(response), Ok(code)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::StatusCode::from_u16(status),
    ) {
        response.set_status(code);
    }
    view! {
        <section class="mx-auto flex max-w-md flex-col items-center px-6 py-24 text-center" data-testid="error-page">
            <p class="text-sm font-semibold tracking-wide text-indigo-600 dark:text-indigo-400">{status}</p>
            <h1 class="mt-2 text-3xl font-semibold tracking-tight">{title}</h1>
            <p class="mt-4 text-zinc-600 dark:text-zinc-400">{detail}</p>
            <a
                href="/"
                class="mt-8 rounded-lg bg-zinc-900 px-4 py-2 text-sm font-medium text-white hover:bg-zinc-700 dark:bg-zinc-100 dark:text-zinc-900 dark:hover:bg-zinc-300"
            >
                "Back to Switchboard"
            </a>
        </section>
    }
}
