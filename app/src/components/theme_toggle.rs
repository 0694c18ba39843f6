use leptos::prelude::*;

use crate::components::icons;
use crate::theme::Theme;

/// Cycles system → light → dark. The choice shows at once and is remembered (see [`Theme::apply`]).
#[component]
pub fn ThemeToggle() -> impl IntoView {
    let theme = RwSignal::new(Theme::from_request());
    let on_click = move |_| {
        let next = theme.get_untracked().next();
        theme.set(next);
        #[cfg(feature = "hydrate")]
        next.apply();
    };
    let label = move || {
        format!(
            "{}: switch to {}",
            theme.get().label(),
            theme.get().next().label().to_lowercase()
        )
    };

    view! {
        <button
            type="button"
            data-testid="theme-toggle"
            data-theme=move || theme.get().as_str()
            aria-label=label
            title=label
            on:click=on_click
            class="inline-flex size-9 items-center justify-center rounded-lg text-zinc-600 hover:bg-zinc-100 hover:text-zinc-900 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-indigo-500 dark:text-zinc-400 dark:hover:bg-zinc-800 dark:hover:text-zinc-100"
        >
            {move || match theme.get() {
                Theme::System => icons::monitor().into_any(),
                Theme::Light => icons::sun().into_any(),
                Theme::Dark => icons::moon().into_any(),
            }}
        </button>
    }
}
