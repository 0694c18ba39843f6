//! Light and dark themes. With no choice made the page follows the system (pure CSS, see
//! `style/tailwind.css`); a choice is kept in a cookie so that the server renders the page in the
//! chosen theme from the first byte, with no flash and no inline script.

/// The cookie that remembers the person's choice.
pub const COOKIE: &str = "theme";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    pub fn parse(value: &str) -> Self {
        match value {
            "light" => Self::Light,
            "dark" => Self::Dark,
            _ => Self::System,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Light => "light",
            Self::Dark => "dark",
        }
    }

    /// The class on `<html>`: none follows the system.
    pub fn html_class(self) -> &'static str {
        match self {
            Self::System => "",
            Self::Light => "light",
            Self::Dark => "dark",
        }
    }

    /// The toggle's order: system → light → dark → system.
    pub fn next(self) -> Self {
        match self {
            Self::System => Self::Light,
            Self::Light => Self::Dark,
            Self::Dark => Self::System,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::System => "System theme",
            Self::Light => "Light theme",
            Self::Dark => "Dark theme",
        }
    }

    /// Finds the theme cookie in a `Cookie` header value.
    pub fn from_cookie_header(header: &str) -> Self {
        header
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| Self::parse(value.trim()))
            .unwrap_or_default()
    }

    /// The theme as the page was rendered: from the request's cookie on the server, from the
    /// `<html>` class in the browser (which the server set from the same cookie), so that both
    /// sides of hydration agree.
    pub fn from_request() -> Self {
        #[cfg(feature = "ssr")]
        {
            use leptos::prelude::use_context;
            use_context::<http::request::Parts>()
                .and_then(|parts| {
                    parts
                        .headers
                        .get(http::header::COOKIE)
                        .and_then(|v| v.to_str().ok())
                        .map(Self::from_cookie_header)
                })
                .unwrap_or_default()
        }
        #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
        {
            let class = leptos::prelude::document()
                .document_element()
                .map(|html| html.class_name())
                .unwrap_or_default();
            class
                .split_whitespace()
                .map(Self::parse)
                .find(|t| *t != Self::System)
                .unwrap_or_default()
        }
        #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
        {
            Self::System
        }
    }

    /// Shows the theme at once and remembers it for a year.
    #[cfg(feature = "hydrate")]
    pub fn apply(self) {
        use wasm_bindgen::JsCast;
        let document = leptos::prelude::document();
        if let Some(html) = document.document_element() {
            let classes = html.class_list();
            let _ = classes.remove_2("light", "dark");
            if self != Self::System {
                let _ = classes.add_1(self.html_class());
            }
        }
        if let Ok(doc) = document.dyn_into::<web_sys::HtmlDocument>() {
            let cookie = match self {
                Self::System => format!("{COOKIE}=; Path=/; Max-Age=0; SameSite=Lax"),
                theme => format!(
                    "{COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
                    theme.as_str()
                ),
            };
            let _ = doc.set_cookie(&cookie);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_theme_among_other_cookies() {
        assert_eq!(
            Theme::from_cookie_header("a=1; theme=dark; b=2"),
            Theme::Dark
        );
        assert_eq!(Theme::from_cookie_header("theme=light"), Theme::Light);
        assert_eq!(Theme::from_cookie_header("xtheme=dark"), Theme::System);
        assert_eq!(Theme::from_cookie_header("theme=purple"), Theme::System);
        assert_eq!(Theme::from_cookie_header(""), Theme::System);
    }

    #[test]
    fn the_toggle_cycles_through_all_three() {
        let mut t = Theme::System;
        let mut seen = vec![];
        for _ in 0..3 {
            t = t.next();
            seen.push(t);
        }
        assert_eq!(seen, [Theme::Light, Theme::Dark, Theme::System]);
    }
}
