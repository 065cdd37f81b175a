//! Support of the router tests.

pub mod accounting;
pub mod scripted_backend;
