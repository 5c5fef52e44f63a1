//! `urunc`: the runc-compatible CLI. Parsing and output live here; everything a
//! container does lives in the `urunc` library.

mod cli;
mod commands;
mod logging;
mod runc;

fn main() {
    let cli = match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli::Parsed::Run(cli)) => cli,
        Ok(cli::Parsed::Help(text)) => {
            print!("{text}");
            return;
        }
        Ok(cli::Parsed::Version) => {
            println!("{}", cli::VERSION);
            return;
        }
        Err(e) => {
            // Usage errors reach the caller's log too (containerd shows its last line).
            logging::Logger::for_usage_error(e.log, e.log_format).error(&e.msg);
            std::process::exit(2);
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
            std::process::exit(1);
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
    std::process::exit(code);
}
