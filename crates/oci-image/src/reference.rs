//! Parsing of the image reference an archive is tagged with.

use crate::{Error, Result};

/// An image name with a tag, e.g. `docker.io/library/busybox:latest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// The full reference including the tag.
    pub full: String,
    /// The tag alone (`latest`).
    pub tag: String,
}

impl ImageRef {
    /// Parses `name[:tag]`; a missing tag becomes `latest`.
    ///
    /// The name is used verbatim (no `docker.io/library/` is added): containerd
    /// stores exactly this name, while docker and podman normalise short names
    /// themselves. Digest references (`name@sha256:...`) are rejected.
    pub fn parse(reference: &str) -> Result<ImageRef> {
        let bad = |why| Error::InvalidReference(reference.to_string(), why);
        if reference.is_empty() {
            return Err(bad("empty"));
        }
        if reference.contains('@') {
            return Err(bad("digest references cannot name an archived image"));
        }
        if reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("contains whitespace"));
        }
        let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
        match reference[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &reference[last_slash + i + 1..];
                if tag.is_empty() || i == 0 {
                    return Err(bad("empty name or tag"));
                }
                Ok(ImageRef {
                    full: reference.to_string(),
                    tag: tag.to_string(),
                })
            }
            None => Ok(ImageRef {
                full: format!("{reference}:latest"),
                tag: "latest".to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags() {
        let r = ImageRef::parse("docker.io/library/busybox:1.36").unwrap();
        assert_eq!(r.full, "docker.io/library/busybox:1.36");
        assert_eq!(r.tag, "1.36");
        let r = ImageRef::parse("localhost:5000/demo").unwrap();
        assert_eq!(r.full, "localhost:5000/demo:latest");
        assert_eq!(r.tag, "latest");
    }

    #[test]
    fn rejects_bad_refs() {
        assert!(ImageRef::parse("").is_err());
        assert!(ImageRef::parse("a@sha256:00").is_err());
        assert!(ImageRef::parse("a:").is_err());
        assert!(ImageRef::parse("a b").is_err());
    }
}
