//! 256-bit secret keys kept in files of the keys folder (`<data>/keys/`),
//! outside every database: whoever can change a database cannot read them.

use std::path::Path;

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path} is not a 256-bit key written as 64 hex digits")]
    Malformed { path: String },
    #[error("cannot read or write {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// Reads the key at `path`, or makes a new random one there (readable by
/// the owner only). Returns the key and whether it was just made, so the
/// caller can tell the operator to keep a copy.
pub fn load_or_create(path: &Path) -> Result<([u8; 32], bool), KeyFileError> {
    let io = |source| KeyFileError::Io { path: path.display().to_string(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            Ok((parse(text.trim()).ok_or_else(|| KeyFileError::Malformed { path: path.display().to_string() })?, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| KeyFileError::Random(e.to_string()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let tmp = path.with_extension("new");
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(&tmp, hex).map_err(io)?;
            restrict(&tmp);
            std::fs::rename(&tmp, path).map_err(io)?;
            Ok((key, true))
        }
        Err(e) => Err(io(e)),
    }
}

fn parse(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

#[cfg(unix)]
fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_then_read_back_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("keys").join("test.key");
        let (made, created) = load_or_create(&path).expect("make");
        assert!(created);
        let (read, created) = load_or_create(&path).expect("read");
        assert!(!created);
        assert_eq!(made, read);
        std::fs::write(&path, "not hex").expect("spoil");
        let err = load_or_create(&path).expect_err("malformed");
        assert!(err.to_string().contains("test.key"), "{err}");
    }
}
