//! Support of the router tests.

pub mod accounting;
pub mod app;
pub mod scripted_backend;
