//! Building kernel command lines from untrusted strings. A value can never add a
//! parameter of its own: words with spaces are quoted, and characters the kernel's
//! parser cannot carry (double quotes, control characters) are refused.

/// x86's COMMAND_LINE_SIZE, the smallest limit among the supported guests.
pub const MAX_CMDLINE: usize = 2048;

/// One word for the command line, double-quoted when it contains spaces.
pub fn quote(what: &str, value: &str) -> Result<String, String> {
    if let Some(c) = value.chars().find(|c| c.is_control() || *c == '"') {
        return Err(format!(
            "{what} {value:?} contains {c:?}, which a kernel command line cannot carry"
        ));
    }
    if value.is_empty() || value.contains(' ') {
        Ok(format!("\"{value}\""))
    } else {
        Ok(value.to_string())
    }
}

/// Splits an environment entry and checks that its name is a plain identifier.
pub fn env_pair(entry: &str) -> Result<(&str, &str), String> {
    let (k, v) = entry
        .split_once('=')
        .ok_or_else(|| format!("environment entry {entry:?} has no '='"))?;
    let mut chars = k.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "environment variable name {k:?} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)"
        ));
    }
    Ok((k, v))
}

/// Joins the non-empty parts with single spaces and enforces the length limit.
pub fn join(parts: &[String]) -> Result<String, String> {
    let line = parts
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    if line.len() > MAX_CMDLINE {
        return Err(format!(
            "kernel command line would be {} bytes, more than the {MAX_CMDLINE} allowed",
            line.len()
        ));
    }
    Ok(line)
}

/// The application words, quoted.
pub fn quote_all(what: &str, words: &[String]) -> Result<Vec<String>, String> {
    words.iter().map(|w| quote(what, w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("arg", "plain").unwrap(), "plain");
        assert_eq!(quote("arg", "two words").unwrap(), "\"two words\"");
        assert_eq!(quote("arg", "").unwrap(), "\"\"");
        assert!(quote("arg", "a\"b").unwrap_err().contains("'\"'"));
        assert!(quote("arg", "a\nrdinit=/x").unwrap_err().contains("'\\n'"));
    }

    #[test]
    fn env_names() {
        assert_eq!(env_pair("A_1=x=y").unwrap(), ("A_1", "x=y"));
        assert!(env_pair("1A=x").is_err());
        assert!(env_pair("a.b=x").is_err());
        assert!(env_pair("novalue").is_err());
    }

    #[test]
    fn length_limit() {
        let long = vec!["x".repeat(MAX_CMDLINE + 1)];
        assert!(join(&long)
            .unwrap_err()
            .contains("more than the 2048 allowed"));
    }
}
