//! The Containerfile subset urunc-pack builds from: `FROM`, `COPY`, `LABEL`, `ENV`,
//! `CMD`, `ENTRYPOINT`, `WORKDIR`, `USER`. Nothing is executed (`RUN` is refused).
//!
//! Lines ending in `\` continue on the next line; lines starting with `#` are comments.
//! `CMD`/`ENTRYPOINT` take the JSON form (`["a", "b"]`) or the shell form (`a b`, run as
//! `/bin/sh -c "a b"`); `LABEL` and `ENV` take `key=value` pairs (values may be quoted)
//! and `ENV` also the old `ENV key value` form.

use anyhow::{anyhow, bail, Result};

/// One instruction, with the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM scratch` (None) or `FROM <path of an image tar or layout dir>`.
    From(Option<String>),
    /// `COPY src... dst`.
    Copy { sources: Vec<String>, dest: String },
    /// `LABEL k=v ...`.
    Label(Vec<(String, String)>),
    /// `ENV k=v ...`.
    Env(Vec<(String, String)>),
    /// `CMD`.
    Cmd(Vec<String>),
    /// `ENTRYPOINT`.
    Entrypoint(Vec<String>),
    /// `WORKDIR dir`.
    Workdir(String),
    /// `USER user[:group]`.
    User(String),
}

/// Parses a Containerfile; errors name the line.
pub fn parse(text: &str) -> Result<Vec<(usize, Instruction)>> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = raw.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if pending.is_empty() {
            start = line_no;
        } else if trimmed.starts_with('#') {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let line = std::mem::take(&mut pending);
        let ins = instruction(&line).map_err(|e| anyhow!("line {start}: {e}"))?;
        out.push((start, ins));
    }
    if !pending.is_empty() {
        bail!("line {start}: the file ends inside a continued line");
    }
    Ok(out)
}

fn instruction(line: &str) -> Result<Instruction> {
    let (word, rest) = line
        .split_once(char::is_whitespace)
        .map(|(w, r)| (w, r.trim()))
        .unwrap_or((line, ""));
    let keyword = word.to_ascii_uppercase();
    if rest.is_empty() {
        bail!("{keyword} needs arguments");
    }
    Ok(match keyword.as_str() {
        "FROM" => {
            let words = shell_words(rest)?;
            if words.iter().any(|w| w.starts_with("--")) {
                bail!("FROM options ({rest}) are not supported");
            }
            match words.as_slice() {
                [w] if w == "scratch" => Instruction::From(None),
                [w] => Instruction::From(Some(w.clone())),
                [_, as_, _] if as_.eq_ignore_ascii_case("as") => {
                    bail!("multi-stage builds (FROM ... AS name) are not supported")
                }
                _ => bail!("FROM takes one image: `scratch` or the path of an image tar or layout directory"),
            }
        }
        "COPY" | "ADD" => {
            if keyword == "ADD" {
                bail!("ADD is not supported: use COPY (archives are not unpacked, URLs not fetched)");
            }
            let words = if rest.starts_with('[') {
                json_list(rest)?
            } else {
                shell_words(rest)?
            };
            if let Some(flag) = words.iter().find(|w| w.starts_with("--")) {
                bail!("COPY option {flag} is not supported");
            }
            let Some((dest, sources)) = words.split_last().filter(|(_, s)| !s.is_empty()) else {
                bail!("COPY needs at least one source and a destination");
            };
            Instruction::Copy {
                sources: sources.to_vec(),
                dest: dest.clone(),
            }
        }
        "LABEL" => Instruction::Label(pairs(rest, false)?),
        "ENV" => Instruction::Env(pairs(rest, true)?),
        "CMD" => Instruction::Cmd(command(rest)?),
        "ENTRYPOINT" => Instruction::Entrypoint(command(rest)?),
        "WORKDIR" => Instruction::Workdir(one(&keyword, rest)?),
        "USER" => Instruction::User(one(&keyword, rest)?),
        "RUN" => bail!("RUN is not supported: urunc-pack does not execute commands (prepare files on the host and COPY them)"),
        other => bail!("unknown or unsupported instruction {other} (supported: FROM, COPY, LABEL, ENV, CMD, ENTRYPOINT, WORKDIR, USER)"),
    })
}

fn one(keyword: &str, rest: &str) -> Result<String> {
    match shell_words(rest)?.as_slice() {
        [w] => Ok(w.clone()),
        _ => bail!("{keyword} takes one argument"),
    }
}

fn command(rest: &str) -> Result<Vec<String>> {
    if rest.starts_with('[') {
        json_list(rest)
    } else {
        Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
    }
}

fn json_list(rest: &str) -> Result<Vec<String>> {
    serde_json::from_str(rest).map_err(|e| anyhow!("not a JSON list of strings: {rest}: {e}"))
}

/// `k=v k2="v 2"` (or, for ENV, the old `k v w` meaning `k` = `v w`).
fn pairs(rest: &str, env: bool) -> Result<Vec<(String, String)>> {
    let words = shell_words(rest)?;
    if env && !words[0].contains('=') {
        let (key, value) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| anyhow!("ENV {rest}: expected KEY=VALUE or KEY VALUE"))?;
        return Ok(vec![(key.to_string(), value.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| anyhow!("{w:?}: expected key=value"))?;
            if k.is_empty() {
                bail!("{w:?}: empty key");
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Splits at whitespace, honouring "double" and 'single' quotes and backslash escapes.
fn shell_words(s: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => cur.extend(chars.next()),
                        Some(c) => cur.push(c),
                        None => bail!("unterminated \" in {s}"),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => bail!("unterminated ' in {s}"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Instruction::*;

    #[test]
    fn parses_every_instruction() {
        let text = r#"
# a comment
FROM scratch
COPY vmlinux initrd.cpio /boot/
LABEL com.urunc.unikernel.unikernelType=linux \
      com.urunc.unikernel.cmdline="console=ttyS0 quiet"
ENV A=1 B="two words"
ENV OLD style value
cmd ["/bin/report", "hello"]
ENTRYPOINT /bin/app --flag
WORKDIR /srv
USER 1000:1000
"#;
        let got: Vec<Instruction> = parse(text).unwrap().into_iter().map(|(_, i)| i).collect();
        assert_eq!(
            got,
            vec![
                From(None),
                Copy {
                    sources: vec!["vmlinux".into(), "initrd.cpio".into()],
                    dest: "/boot/".into()
                },
                Label(vec![
                    ("com.urunc.unikernel.unikernelType".into(), "linux".into()),
                    (
                        "com.urunc.unikernel.cmdline".into(),
                        "console=ttyS0 quiet".into()
                    ),
                ]),
                Env(vec![
                    ("A".into(), "1".into()),
                    ("B".into(), "two words".into())
                ]),
                Env(vec![("OLD".into(), "style value".into())]),
                Cmd(vec!["/bin/report".into(), "hello".into()]),
                Entrypoint(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "/bin/app --flag".into()
                ]),
                Workdir("/srv".into()),
                User("1000:1000".into()),
            ]
        );
    }

    #[test]
    fn clear_errors_with_line_numbers() {
        let err = |t: &str| format!("{:#}", parse(t).unwrap_err());
        assert_eq!(
            err("FROM scratch\nRUN make"),
            "line 2: RUN is not supported: urunc-pack does not execute commands (prepare files on the host and COPY them)"
        );
        assert!(err("FROM a AS b").contains("multi-stage"));
        assert!(err("FROM scratch\nCOPY onlyone").contains("COPY needs"));
        assert!(err("FROM scratch\nCMD [\"a\",").contains("JSON"));
        assert!(err("FROM scratch\nFOO x").contains("unknown or unsupported instruction FOO"));
        assert!(err("FROM scratch\nLABEL a").contains("expected key=value"));
        assert!(err("FROM scratch\nCOPY --chown=1 a b").contains("--chown"));
        assert!(err("FROM scratch \\").contains("ends inside"));
    }
}
