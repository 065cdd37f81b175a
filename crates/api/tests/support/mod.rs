//! Support of the router tests.

pub mod scripted_backend;
