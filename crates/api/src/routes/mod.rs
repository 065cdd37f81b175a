//! The route handlers, one file per group of routes.

pub mod embeddings;
pub mod health;
pub mod models;
