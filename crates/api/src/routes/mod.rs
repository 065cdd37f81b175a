//! The route handlers, one file per group of routes.

pub mod audit;
pub mod embeddings;
pub mod health;
pub mod models;
pub mod tokens;
