//! The `gateway` binary: parses the command line, sets up logging (`logging.rs`) and runs the
//! chosen command.
//! All the work lives in the library crates; this file only wires them.

mod admin;
mod backends;
mod catalog;
mod cli;
mod config;
mod import;
mod logging;
mod metering;
mod retention;
mod serve;
mod store;
mod upstream;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ModelsCommand};

fn main() -> ExitCode {
    log_panics_without_their_message();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Models(ModelsCommand::Import(args)) => {
            logging::init_stderr();
            import::run(&args)
        }
        Command::Admin(args) => {
            logging::init_stderr();
            runtime().and_then(|runtime| runtime.block_on(admin::run(args)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `gateway serve`, logging as the configuration's `[logging]` says.
fn serve(args: &cli::ServeArgs) -> anyhow::Result<()> {
    logging::init_serve(&config::Config::load_with_env(args.config.as_deref())?)?;
    serve::main(args)
}

/// Replaces the default panic report, which prints the panic's message (a message from deep
/// in a tokenizer or template engine may quote the text it worked on), with a log line that
/// names only where it happened.
fn log_panics_without_their_message() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|at| format!("{}:{}", at.file(), at.line()))
            .unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        tracing::error!(%location, %thread, "a thread panicked (its message is not logged)");
        if !tracing::dispatcher::has_been_set() {
            eprintln!("a thread panicked at {location} (its message is not logged)");
        }
    }));
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
