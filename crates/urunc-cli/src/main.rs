//! `urunc`: the runc-compatible CLI. Parsing and output live here; everything a
//! container does lives in the `urunc` library.

#![cfg_attr(not(test), no_main)]

mod cli;
mod commands;
mod logging;
mod runc;

urunc::c_main!(run);

/// The command line's work; returns the exit status.
fn run() -> i32 {
    let cli = match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli::Parsed::Run(cli)) => cli,
        Ok(cli::Parsed::Help(text)) => {
            print!("{text}");
            return 0;
        }
        Ok(cli::Parsed::Version) => {
            println!("{}", cli::VERSION);
            return 0;
        }
        Err(e) => {
            // Usage errors reach the caller's log too (containerd shows its last line).
            logging::Logger::for_usage_error(e.log, e.log_format).error(&e.msg);
            return 2;
        }
    };
    let config = urunc::config::Config::load(cli.config.as_deref());
    let file = config.as_ref().cloned().unwrap_or_default();
    let log = logging::Logger::new(&cli, &file);
    let config = match config {
        Ok(c) => c,
        // Only creating a container depends on the file; managing existing ones (which
        // recorded their settings) must keep working while an edit is being fixed.
        Err(e)
            if !matches!(
                cli.command,
                cli::Command::Create(_) | cli::Command::Run { .. }
            ) =>
        {
            log.warn(&e.to_string());
            urunc::config::Config::default()
        }
        Err(e) => {
            log.error(&e.to_string());
            return 1;
        }
    };
    urunc::timestamps::init(&config.timestamps);
    let code = match commands::dispatch(&cli, &config, &log) {
        Ok(code) => code,
        Err(e) => {
            log.error(&format!("{e:#}"));
            1
        }
    };
    code
}
