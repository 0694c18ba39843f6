//! Inline SVG icons (stroke icons, 24×24, `currentColor`), so no icon font or request is needed.

use leptos::prelude::*;

fn icon(path: &'static str) -> impl IntoView {
    view! {
        <svg
            class="size-5 shrink-0"
            viewBox="0 0 24 24"
            fill="none"
            stroke="currentColor"
            stroke-width="1.8"
            stroke-linecap="round"
            stroke-linejoin="round"
            aria-hidden="true"
        >
            <path d=path />
        </svg>
    }
}

pub fn menu() -> impl IntoView {
    icon("M4 6h16M4 12h16M4 18h16")
}

pub fn close() -> impl IntoView {
    icon("M6 6l12 12M18 6L6 18")
}

pub fn plus() -> impl IntoView {
    icon("M12 5v14M5 12h14")
}

pub fn sun() -> impl IntoView {
    icon(
        "M12 4V2m0 20v-2m8-8h2M2 12h2m13.66-5.66 1.41-1.41M4.93 19.07l1.41-1.41m0-11.32L4.93 4.93m14.14 14.14-1.41-1.41M16 12a4 4 0 1 1-8 0 4 4 0 0 1 8 0z",
    )
}

pub fn moon() -> impl IntoView {
    icon("M21 12.8A9 9 0 1 1 11.2 3a7 7 0 0 0 9.8 9.8z")
}

pub fn monitor() -> impl IntoView {
    icon("M3 5h18v11H3zM8 21h8M12 16v5")
}

pub fn chat() -> impl IntoView {
    icon("M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z")
}

pub fn send() -> impl IntoView {
    icon("M12 19V5M5 12l7-7 7 7")
}

pub fn stop() -> impl IntoView {
    icon("M7 7h10v10H7z")
}

pub fn pencil() -> impl IntoView {
    icon("M4 20h4L19 9l-4-4L4 16zM13.5 6.5l4 4")
}

pub fn trash() -> impl IntoView {
    icon("M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3")
}

pub fn refresh() -> impl IntoView {
    icon("M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7")
}

pub fn search() -> impl IntoView {
    icon("M11 18a7 7 0 1 1 0-14 7 7 0 0 1 0 14zM21 21l-5-5")
}

pub fn plug() -> impl IntoView {
    icon("M9 3v5M15 3v5M6 8h12v3a6 6 0 0 1-12 0V8zM12 17v4")
}

pub fn wrench() -> impl IntoView {
    icon("M14.7 6.3a4 4 0 0 0-5.4 5.4L3 18l3 3 6.3-6.3a4 4 0 0 0 5.4-5.4l-2.5 2.5-2.5-.5-.5-2.5z")
}
