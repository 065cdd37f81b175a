//! The command line of the `gateway` binary (clap).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use gateway_core::ExecutionProvider;

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
    /// Operator commands on the database `serve` uses; each prints one JSON object.
    Admin(AdminArgs),
}

/// `gateway admin …`: the database and the command.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Configuration file (TOML) naming the database; GATEWAY_DATA_DIR and
    /// GATEWAY_DATABASE_URL override it as for `serve`.
    #[arg(long, env = "GATEWAY_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The operator commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Model API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Principals (users of the management API) and their roles.
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Credentials of the management API.
    #[command(subcommand, name = "management-token")]
    ManagementToken(ManagementTokenCommand),
    /// A project's usage report: tokens and cost per group and in total.
    Usage(UsageArgs),
    /// The retention of personal data (audit log, log files).
    #[command(subcommand)]
    Retention(RetentionCommand),
}

/// `gateway admin retention …`.
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Run the retention job once: pseudonymize the audit events and delete the log files
    /// older than `[retention] personal_data_days`; prints what it did.
    Run {
        /// Run as if it were this time (`2027-01-01` or RFC 3339) instead of now. A time in
        /// the future removes data early, for good.
        #[arg(long)]
        as_of: Option<String>,
    },
}

/// Arguments of `gateway admin usage`.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// First day or time covered (`2026-11-01` or RFC 3339); default: the first record.
    #[arg(long)]
    pub from: Option<String>,
    /// First day or time no longer covered; default: now.
    #[arg(long)]
    pub to: Option<String>,
    /// `model`, `day` or `key`.
    #[arg(long, default_value = "model")]
    pub group_by: String,
}

/// `gateway admin project …`.
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project; prints `{"id", "name", "createdAt"}`.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// Set a project's rate limits (on one model, or on all its models), overriding its
    /// plans'; prints the override. Every replica applies it within a second.
    Limits {
        /// The project id.
        #[arg(long)]
        project: String,
        /// The model id; without it the limits apply to every model without its own.
        #[arg(long)]
        model: Option<String>,
        /// Requests per minute.
        #[arg(long)]
        rpm: u64,
        /// Tokens per minute (prompt tokens + weight × generated tokens).
        #[arg(long)]
        tpm: u64,
    },
}

/// `gateway admin key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a model API key; prints the token object with its secret `content` (shown once).
    Create(KeyCreateArgs),
}

/// Arguments of `gateway admin key create`.
#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// Display name.
    #[arg(long)]
    pub name: String,
    /// Lifetime such as `30d`, `12h`, `90m`; without it the key never expires.
    #[arg(long)]
    pub ttl: Option<String>,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
    /// Restrict the key to this model (repeat for several).
    #[arg(long = "allowed-model")]
    pub allowed_models: Vec<String>,
    /// Region of the key.
    #[arg(long, default_value = DEFAULT_REGION)]
    pub region: String,
}

/// `gateway admin principal …`.
#[derive(Debug, Subcommand)]
pub enum PrincipalCommand {
    /// Give a principal a role on a project (creating the principal if needed).
    Add {
        /// The project id.
        #[arg(long)]
        project: String,
        /// The principal's subject id.
        #[arg(long)]
        subject: String,
        /// The principal's e-mail.
        #[arg(long)]
        email: String,
        /// `owner`, `member` or `viewer`.
        #[arg(long)]
        role: String,
    },
    /// Remove a principal's role on a project; after its last role the principal (its e-mail)
    /// and its management tokens are deleted too. Prints what was removed.
    Remove {
        /// The project id.
        #[arg(long)]
        project: String,
        /// The principal's subject id.
        #[arg(long)]
        subject: String,
    },
}

/// `gateway admin management-token …`.
#[derive(Debug, Subcommand)]
pub enum ManagementTokenCommand {
    /// Create a management API credential for a principal; prints it once as `content`.
    Create {
        /// The principal's subject id.
        #[arg(long)]
        subject: String,
        /// Lifetime such as `90d`; without it the token never expires.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List management tokens (never their secrets); prints `{"managementTokens": [...]}`.
    List {
        /// Only the tokens of this principal.
        #[arg(long)]
        subject: Option<String>,
    },
    /// Revoke a management token; it is refused from the next request on. Prints the token.
    Revoke {
        /// The token's id, or its public id (the part between `gmt-` and the secret).
        #[arg(long)]
        id: String,
    },
}

/// The region keys are created in when none is given.
pub const DEFAULT_REGION: &str = "eu01";

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
    /// Convert a Hugging Face checkpoint directory or a GGUF file into an ONNX model directory.
    Import(ImportArgs),
}

/// Arguments of `gateway models import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The checkpoint: a directory (config.json, model.safetensors, tokenizer.json) or a
    /// LLaMA-family `.gguf` file.
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
    /// How a decoder's projection weights are stored: `auto` picks the fastest format for
    /// `--execution-provider` that passes the quality gate (perplexity and KL divergence from
    /// the f32 graph, docs/model-format.md): q4 on the CPU, f16 on CUDA. `q4` keeps the
    /// source's 4-bit/8-bit blocks (q|k|v dequantized, on f32 activations) and makes every
    /// other projection 4-bit, `int8` quantizes every projection to int8 with per-column
    /// scales (faster for batches on CPUs, but fails the gate), `f32` dequantizes everything,
    /// `f16` computes and caches in f16 (the graph for GPUs).
    #[arg(long, value_enum, default_value_t = WeightsArg::Auto)]
    pub weights: WeightsArg,
    /// The execution provider the model is imported for (what `--weights auto` resolves to).
    #[arg(
        long,
        value_parser = execution_provider_parser(),
        default_value_t = ExecutionProvider::Cpu
    )]
    pub execution_provider: ExecutionProvider,
}

/// The parser of `--execution-provider`: [`ExecutionProvider`]'s names, which `--help` lists.
fn execution_provider_parser() -> impl TypedValueParser<Value = ExecutionProvider> {
    PossibleValuesParser::new(
        [ExecutionProvider::Cpu, ExecutionProvider::Cuda].map(ExecutionProvider::as_str),
    )
    .try_map(|name| name.parse::<ExecutionProvider>())
}

/// Values of `gateway models import --weights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsArg {
    /// The fastest format for the execution provider that passes the quality gate: q4 on the
    /// CPU, f16 on CUDA.
    Auto,
    /// int8 weights, per-column scales, for `MatMulIntegerToFloat` (fast on CPUs).
    Int8,
    /// 4-bit `MatMulNBits` (the source's Q4_0/Q4_1 blocks exactly, Q8_0 as 8-bit); q|k|v
    /// dequantized to f32.
    Q4,
    /// f32 everywhere.
    F32,
    /// f16 weights, activations and key/value cache (the graph for CUDA).
    F16,
}
