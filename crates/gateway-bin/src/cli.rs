//! The command line of the `gateway` binary (clap).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// An OpenAI-compatible AI model serving gateway.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The gateway's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the configured models over the OpenAI-compatible API.
    Serve(ServeArgs),
    /// Manage model directories.
    #[command(subcommand)]
    Models(ModelsCommand),
}

/// Arguments of `gateway serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); without it the embedded defaults apply.
    #[arg(long, env = "GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides the file and GATEWAY_LISTEN).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// `gateway models …` commands.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Convert a Hugging Face checkpoint directory into an ONNX model directory.
    Import(ImportArgs),
}

/// Arguments of `gateway models import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The checkpoint directory (config.json, model.safetensors, tokenizer.json).
    pub source: PathBuf,
    /// The model directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Model id clients will use (default: the source directory's name).
    #[arg(long)]
    pub id: Option<String>,
    /// SPDX license of the weights, shown in the catalog.
    #[arg(long)]
    pub license: Option<String>,
    /// Where the weights come from (e.g. the Hugging Face page), shown in the catalog.
    #[arg(long)]
    pub source_url: Option<String>,
}
