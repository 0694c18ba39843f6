//! One routed page per file.

pub mod activity;
pub mod admin;
pub mod chat;
pub mod groups;
pub mod home;
pub mod lazy;
pub mod login;
pub mod models;
pub mod not_found;
pub mod people;
pub mod servers;
pub mod settings;
pub mod usage;
