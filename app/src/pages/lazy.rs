//! The pages a chat does not need (settings, tool servers, activity, administration) as routes
//! whose code is a download of its own: the browser fetches it when one of them is first opened
//! (or, on a page the server renders, with the page), not before every chat. The split is made by
//! `cargo leptos build --split`; without it these routes are ordinary ones.

use leptos::prelude::*;
use leptos_router::{LazyRoute, lazy_route};

use super::{
    activity::ActivityPage, admin::AdminServersPage, groups::GroupsPage, models::ModelsPage,
    people::PeoplePage, servers::ServersPage, settings::SettingsPage, usage::UsagePage,
};

/// A lazily loaded route for a page component that takes no properties: its view is split out,
/// and it loads no data before the view (each page loads its own).
macro_rules! lazy_page {
    ($(#[$doc:meta])* $route:ident => $page:ident) => {
        $(#[$doc])*
        pub struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                Self
            }

            fn view(_this: Self) -> AnyView {
                view! { <$page /> }.into_any()
            }
        }
    };
}

lazy_page!(
    /// `/settings`.
    Settings => SettingsPage
);
lazy_page!(
    /// `/servers`.
    Servers => ServersPage
);
lazy_page!(
    /// `/activity`.
    Activity => ActivityPage
);
lazy_page!(
    /// `/admin/servers`.
    AdminServers => AdminServersPage
);
lazy_page!(
    /// `/admin/models`.
    AdminModels => ModelsPage
);
lazy_page!(
    /// `/admin/people`.
    People => PeoplePage
);
lazy_page!(
    /// `/admin/groups`.
    Groups => GroupsPage
);
lazy_page!(
    /// `/admin/usage`.
    Usage => UsagePage
);
