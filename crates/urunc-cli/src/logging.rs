//! Log lines in the shape containerd expects from runc: with `--log-format json`,
//! `{"level":"error","msg":"…","time":"<RFC3339>"}` per line in the `--log` file; the
//! shim reads the last error from there and shows it to the user.

use std::io::Write;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Logger {
    pub path: Option<PathBuf>,
    pub format: Format,
    pub debug: bool,
    /// False when the configuration file asks for errors only.
    pub warn: bool,
    /// The configuration file's `[timestamps] enabled`: each command logs when it
    /// starts and ends.
    pub timestamps: bool,
}

impl Logger {
    /// From the command line, then the configuration file, then the defaults.
    pub fn new(cli: &crate::cli::Cli, file: &urunc::config::Config) -> Logger {
        use urunc::config::{LogFormat, LogLevel};
        let format = cli.log_format.unwrap_or(match file.log.format {
            Some(LogFormat::Json) => Format::Json,
            _ => Format::Text,
        });
        Logger {
            path: cli.log.clone(),
            format,
            debug: cli.debug || file.log.level == LogLevel::Debug,
            warn: file.log.level != LogLevel::Error,
            timestamps: file.timestamps.enabled,
        }
    }

    /// For a command line that could not be parsed: only what it said about logging.
    pub fn for_usage_error(path: Option<PathBuf>, format: Option<Format>) -> Logger {
        Logger {
            path,
            format: format.unwrap_or(Format::Text),
            debug: false,
            warn: true,
            timestamps: false,
        }
    }

    /// A timestamped line for one step of a command, when timestamps are enabled.
    pub fn timestamp(&self, what: &str) {
        if self.timestamps {
            self.write("info", &format!("timestamp: {what}"));
        }
    }

    pub fn error(&self, msg: &str) {
        self.write("error", msg);
        // Callers without a log file (or a person at a terminal) still see the error.
        if self.path.is_some() || self.format == Format::Text {
            eprintln!("urunc: {msg}");
        }
    }

    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }

    pub fn warn(&self, msg: &str) {
        if self.warn {
            self.write("warning", msg);
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let time = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false);
        let line = match self.format {
            Format::Json => {
                serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
            }
            Format::Text => format!("time=\"{time}\" level={level} msg={msg:?}"),
        };
        match &self.path {
            Some(p) => {
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                {
                    let _ = writeln!(f, "{line}");
                }
            }
            None if self.format == Format::Json => eprintln!("{line}"),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_what_containerd_parses() {
        let dir = std::env::temp_dir().join(format!("urunc-log-{}", std::process::id()));
        let log = Logger {
            path: Some(dir.clone()),
            format: Format::Json,
            debug: false,
            warn: true,
            timestamps: false,
        };
        log.error("kernel \"x\" not found");
        log.debug("hidden");
        let text = std::fs::read_to_string(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "kernel \"x\" not found");
        chrono::DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).unwrap();
    }
}
