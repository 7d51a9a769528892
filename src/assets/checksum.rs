//! SHA-256 of asset files: streaming file hashing, verification against the registry's digest,
//! and a writer that hashes what passes through it while split parts are concatenated.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::AssetError;
use crate::error::IoError;

/// Writer adapter that hashes and counts everything written through it.
pub(super) struct HashingWriter<W: Write> {
    /// The wrapped writer.
    pub(super) inner: W,
    /// SHA-256 of everything written so far.
    pub(super) hasher: Sha256,
    /// Number of bytes written so far.
    pub(super) bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner` with a fresh hasher and a zero count.
    pub(super) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Lowercase hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-256 of a file as lowercase hex, read in a streaming fashion.
pub fn sha256_file(path: &Path) -> Result<String, AssetError> {
    let mut f = File::open(path).map_err(IoError::at(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(IoError::at(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Checks that the file at `path` has SHA-256 `sha256` (hex, any case).
pub fn verify(path: &Path, sha256: &str) -> Result<(), AssetError> {
    let actual = sha256_file(path)?;
    if actual.eq_ignore_ascii_case(sha256.trim()) {
        Ok(())
    } else {
        Err(AssetError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: sha256.trim().to_lowercase(),
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn sha_mismatch_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        fs::write(&p, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&p).unwrap(), abc);
        verify(&p, abc).unwrap();
        verify(&p, &abc.to_uppercase()).unwrap();
        let wrong = "0".repeat(64);
        let err = verify(&p, &wrong).unwrap_err();
        match &err {
            AssetError::ChecksumMismatch {
                expected, actual, ..
            } => {
                assert_eq!(expected, &wrong);
                assert_eq!(actual, abc);
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("f.bin"));
        let err = sha256_file(&dir.path().join("missing")).unwrap_err();
        assert!(
            matches!(&err, AssetError::Io(e) if e.is_not_found()),
            "{err}"
        );
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
