use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::error_page::ErrorPage;

/// Shown for any path no route matches, with status 404.
#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <Title text="Page not found · Switchboard" />
        <ErrorPage
            status=404
            title="Page not found"
            detail="There is nothing at this address. It may have moved, or the link may be wrong."
        />
    }
}
