//! Components shared by several pages.

pub mod add_to_message;
pub mod chat_list;
pub mod composer;
pub mod error_page;
pub mod icons;
pub mod layout;
pub mod styles;
pub mod theme_toggle;
pub mod user_menu;
