//! `urunc`: the runc-compatible CLI. Parsing and output live here; everything a
//! container does lives in the `urunc` library.

mod cli;
mod commands;
mod logging;
mod runc;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let log = logging::Logger {
        path: cli.log.clone(),
        format: cli.log_format,
        debug: cli.debug,
    };
    let code = match commands::dispatch(&cli, &log) {
        Ok(code) => code,
        Err(e) => {
            log.error(&format!("{e:#}"));
            1
        }
    };
    std::process::exit(code);
}
