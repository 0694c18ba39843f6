//! The browser side: hydrates the server-rendered page into the live Leptos app.

// Leptos views are deeply nested types; the chat page needs more than the default 128.
#![recursion_limit = "256"]

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Hydrates asynchronously: a lazily loaded page (app/src/pages/lazy.rs) is fetched first.
    leptos::mount::hydrate_lazy(app::App);
}
