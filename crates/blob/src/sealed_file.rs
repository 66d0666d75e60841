//! Large files encrypted at rest as a stream (uploads and results of the
//! Database Upgrade service, up to gigabytes): XChaCha20-Poly1305 in the
//! STREAM construction (each 64 KiB chunk sealed with its position, the
//! last one marked), so a file is written and read in constant memory, and
//! a cut, reordered or altered file fails to open instead of reading wrong.
//!
//! Layout: `SDSEAL1\0`, a 19-byte random nonce prefix, then the chunks.

use std::io::{Read, Write};

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};

const MAGIC: &[u8; 8] = b"SDSEAL1\0";
const PREFIX: usize = 19;
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
/// Bytes before the first chunk.
pub const HEADER: usize = MAGIC.len() + PREFIX;

fn broken(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("sealed file {what}"))
}

/// The plaintext length of a sealed file of `sealed` bytes.
pub fn plain_len(sealed: u64) -> u64 {
    let body = sealed.saturating_sub(HEADER as u64);
    let chunks = body.div_ceil((CHUNK + TAG) as u64).max(1);
    body.saturating_sub(chunks * TAG as u64)
}

/// Seals what is written to it; [`SealingWriter::finish`] writes the last chunk.
pub struct SealingWriter<W: Write> {
    inner: W,
    sealer: Option<EncryptorBE32<XChaCha20Poly1305>>,
    buf: Vec<u8>,
}

impl<W: Write> SealingWriter<W> {
    pub fn new(cipher: &XChaCha20Poly1305, mut inner: W) -> std::io::Result<Self> {
        let mut prefix = [0u8; PREFIX];
        getrandom::fill(&mut prefix).map_err(|e| std::io::Error::other(e.to_string()))?;
        inner.write_all(MAGIC)?;
        inner.write_all(&prefix)?;
        let sealer = EncryptorBE32::from_aead(cipher.clone(), (&prefix).into());
        Ok(Self { inner, sealer: Some(sealer), buf: Vec::with_capacity(CHUNK) })
    }

    /// Seals the rest as the last chunk and returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        let sealer = self.sealer.take().ok_or_else(|| broken("already finished"))?;
        let last = sealer.encrypt_last(self.buf.as_slice()).map_err(|_| broken("cannot be sealed"))?;
        self.inner.write_all(&last)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for SealingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let take = (CHUNK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() == CHUNK {
            let sealer = self.sealer.as_mut().ok_or_else(|| broken("already finished"))?;
            let sealed = sealer.encrypt_next(self.buf.as_slice()).map_err(|_| broken("cannot be sealed"))?;
            self.inner.write_all(&sealed)?;
            self.buf.clear();
        }
        Ok(take)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Opens a sealed file as it is read; any alteration is an error.
pub struct OpeningReader<R: Read> {
    inner: R,
    opener: Option<DecryptorBE32<XChaCha20Poly1305>>,
    /// Sealed bytes read ahead: one chunk and one byte, to know the last.
    ahead: Vec<u8>,
    plain: Vec<u8>,
    at: usize,
}

impl<R: Read> OpeningReader<R> {
    pub fn new(cipher: &XChaCha20Poly1305, mut inner: R) -> std::io::Result<Self> {
        let mut head = [0u8; HEADER];
        inner.read_exact(&mut head).map_err(|_| broken("is too short"))?;
        if &head[..MAGIC.len()] != MAGIC {
            return Err(broken("has no Seldesk seal"));
        }
        let prefix: [u8; PREFIX] = head[MAGIC.len()..].try_into().map_err(|_| broken("has a bad header"))?;
        let opener = DecryptorBE32::from_aead(cipher.clone(), (&prefix).into());
        Ok(Self { inner, opener: Some(opener), ahead: Vec::new(), plain: Vec::new(), at: 0 })
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let Some(opener) = self.opener.as_mut() else { return Ok(()) };
        let want = CHUNK + TAG + 1;
        while self.ahead.len() < want {
            let mut buf = vec![0u8; want - self.ahead.len()];
            let n = self.inner.read(&mut buf)?;
            if n == 0 {
                break;
            }
            self.ahead.extend_from_slice(&buf[..n]);
        }
        if self.ahead.len() == want {
            let rest = self.ahead.split_off(CHUNK + TAG);
            self.plain = opener.decrypt_next(self.ahead.as_slice()).map_err(|_| broken("was altered"))?;
            self.ahead = rest;
        } else {
            let opener = self.opener.take().ok_or_else(|| broken("is closed"))?;
            self.plain = opener.decrypt_last(self.ahead.as_slice()).map_err(|_| broken("was altered or cut short"))?;
            self.ahead.clear();
        }
        self.at = 0;
        Ok(())
    }
}

impl<R: Read> Read for OpeningReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.plain.len() {
            if self.opener.is_none() {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = (self.plain.len() - self.at).min(out.len());
        out[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Seals the file at `from` into `to` (written whole, then renamed).
pub fn seal_file(cipher: &XChaCha20Poly1305, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    let tmp = to.with_extension("sealing");
    let out = std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(&tmp)?);
    let mut writer = SealingWriter::new(cipher, out)?;
    std::io::copy(&mut std::io::BufReader::with_capacity(256 * 1024, std::fs::File::open(from)?), &mut writer)?;
    writer.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, to)
}

/// Opens the sealed file at `from` into the plain file `to`.
pub fn open_file(cipher: &XChaCha20Poly1305, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    let mut reader =
        OpeningReader::new(cipher, std::io::BufReader::with_capacity(256 * 1024, std::fs::File::open(from)?))?;
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(to)?);
    std::io::copy(&mut reader, &mut out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::KeyInit;

    fn cipher() -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new_from_slice(&[7u8; 32]).expect("key")
    }

    fn seal(data: &[u8]) -> Vec<u8> {
        let mut w = SealingWriter::new(&cipher(), Vec::new()).expect("writer");
        w.write_all(data).expect("write");
        w.finish().expect("finish")
    }

    fn open(sealed: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        OpeningReader::new(&cipher(), sealed)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn any_length_round_trips_and_its_length_is_known() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal(&data);
            assert_eq!(open(&sealed).expect("opens"), data, "{len}");
            assert_eq!(plain_len(sealed.len() as u64), len as u64, "{len}");
            if len > 16 {
                assert!(!sealed.windows(16).any(|w| w == &data[..16]), "no plaintext at rest");
            }
        }
    }

    #[test]
    fn a_cut_altered_or_foreign_file_does_not_open() {
        let data = vec![42u8; 3 * CHUNK + 5];
        let sealed = seal(&data);
        assert!(open(&sealed[..sealed.len() - 1]).is_err(), "cut inside the last chunk");
        assert!(open(&sealed[..HEADER + CHUNK + TAG]).is_err(), "cut at a chunk boundary");
        let mut altered = sealed.clone();
        altered[HEADER + 10] ^= 1;
        assert!(open(&altered).is_err(), "one bit changed");
        let other = XChaCha20Poly1305::new_from_slice(&[8u8; 32]).expect("key");
        let mut out = Vec::new();
        assert!(OpeningReader::new(&other, sealed.as_slice()).and_then(|mut r| r.read_to_end(&mut out)).is_err());
        assert!(open(b"SQLite format 3\0 plain").is_err(), "an unsealed file is refused");
    }
}
