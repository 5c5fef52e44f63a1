//! Normalisation of destination paths inside the image.

use crate::{Error, Result};

/// Turns a user supplied destination (`/bin/sh`, `bin//sh`, `./bin/sh`) into
/// the canonical relative form used as the layer's tar entry name (`bin/sh`).
///
/// `..` components are rejected so that nothing can escape the image root, and
/// the image root itself (an empty path) is rejected as well.
pub(crate) fn normalize(dest: &str) -> Result<String> {
    let mut parts = Vec::new();
    for component in dest.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(Error::InvalidPath(dest.to_string())),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(Error::InvalidPath(dest.to_string()));
    }
    Ok(parts.join("/"))
}

/// All proper ancestors of a normalised path, outermost first
/// (`a/b/c` gives `a`, `a/b`).
pub(crate) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_slashes_and_dots() {
        assert_eq!(normalize("/bin/sh").unwrap(), "bin/sh");
        assert_eq!(normalize("bin//./sh/").unwrap(), "bin/sh");
        assert_eq!(normalize("etc").unwrap(), "etc");
    }

    #[test]
    fn rejects_escape_and_root() {
        assert!(normalize("../etc").is_err());
        assert!(normalize("/a/../../b").is_err());
        assert!(normalize("/").is_err());
        assert!(normalize("").is_err());
    }

    #[test]
    fn lists_ancestors() {
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(ancestors("a").count(), 0);
    }
}
