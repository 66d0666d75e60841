//! Large files encrypted at rest as a stream (uploads and results of the
//! Database Upgrade service, up to gigabytes): XChaCha20-Poly1305 in the
//! STREAM construction (each 64 KiB chunk sealed with its position, the
//! last one marked), so a file is written and read in constant memory, and
//! a cut, reordered or altered file fails to open instead of reading wrong.
//!
//! Layout: `SDSEAL1\0`, a 19-byte random nonce prefix, then the chunks.

use std::io::{Read, Write};

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32, NewStream, StreamBE32, StreamPrimitive};

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

/// Chunks sealed or opened together, split over two threads: a file's
/// chunks are independent (each has its position in its nonce), so a
/// gigabyte takes half the time on two cores. 2 MiB in memory at a time.
const BATCH: usize = 32;

fn random_prefix() -> std::io::Result<[u8; PREFIX]> {
    let mut prefix = [0u8; PREFIX];
    getrandom::fill(&mut prefix).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(prefix)
}

/// Runs `f` on every chunk of `batch`, half of them on a second thread.
fn on_two_threads(
    batch: &mut [Vec<u8>],
    first: u32,
    f: &(dyn Fn(u32, &mut Vec<u8>) -> std::io::Result<()> + Sync),
) -> std::io::Result<()> {
    let half = batch.len() / 2;
    let (a, b) = batch.split_at_mut(half);
    std::thread::scope(|scope| {
        let other = scope.spawn(move || a.iter_mut().enumerate().try_for_each(|(i, c)| f(first + i as u32, c)));
        let mine = b.iter_mut().enumerate().try_for_each(|(i, c)| f(first + (half + i) as u32, c));
        other.join().map_err(|_| std::io::Error::other("a sealing thread failed"))??;
        mine
    })
}

fn position(n: u64) -> std::io::Result<u32> {
    u32::try_from(n).map_err(|_| std::io::Error::other("file too large to seal"))
}

/// Seals the file at `from` into `to` (written whole, synced, then renamed),
/// in the same format as [`SealingWriter`].
pub fn seal_file(cipher: &XChaCha20Poly1305, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    let tmp = to.with_extension("sealing");
    let mut input = std::fs::File::open(from)?;
    let len = input.metadata()?.len();
    let full = len / CHUNK as u64;
    position(full)?;
    let prefix = random_prefix()?;
    let stream = StreamBE32::<XChaCha20Poly1305>::from_aead(cipher.clone(), (&prefix).into());
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    out.write_all(MAGIC)?;
    out.write_all(&prefix)?;
    let seal = |at: u32, chunk: &mut Vec<u8>| {
        stream.encrypt_in_place(at, false, &[], chunk).map_err(|_| broken("cannot be sealed"))
    };
    let mut done = 0u64;
    while done < full {
        let n = (full - done).min(BATCH as u64) as usize;
        let mut batch: Vec<Vec<u8>> = (0..n).map(|_| Vec::with_capacity(CHUNK + TAG)).collect();
        for chunk in &mut batch {
            chunk.resize(CHUNK, 0);
            input.read_exact(chunk)?;
        }
        on_two_threads(&mut batch, position(done)?, &seal)?;
        for chunk in &batch {
            out.write_all(chunk)?;
        }
        done += n as u64;
    }
    let mut last = Vec::with_capacity(CHUNK + TAG);
    // At most one chunk: a file that grew meanwhile is refused, not read whole.
    Read::by_ref(&mut input).take(CHUNK as u64).read_to_end(&mut last)?;
    if last.len() >= CHUNK {
        return Err(broken("source grew while it was sealed"));
    }
    stream.encrypt_in_place(position(full)?, true, &[], &mut last).map_err(|_| broken("cannot be sealed"))?;
    out.write_all(&last)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, to)
}

/// Opens the sealed file at `from` into the plain file `to`; an altered,
/// cut or reordered file is an error (and `to` is then incomplete).
pub fn open_file(cipher: &XChaCha20Poly1305, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    let mut input = std::fs::File::open(from)?;
    let len = input.metadata()?.len();
    let mut head = [0u8; HEADER];
    input.read_exact(&mut head).map_err(|_| broken("is too short"))?;
    if &head[..MAGIC.len()] != MAGIC {
        return Err(broken("has no Seldesk seal"));
    }
    let prefix: [u8; PREFIX] = head[MAGIC.len()..].try_into().map_err(|_| broken("has a bad header"))?;
    let stream = StreamBE32::<XChaCha20Poly1305>::from_aead(cipher.clone(), (&prefix).into());
    let body = len - HEADER as u64;
    let sealed_chunk = (CHUNK + TAG) as u64;
    let (full, last_len) = (body / sealed_chunk, (body % sealed_chunk) as usize);
    if last_len < TAG {
        return Err(broken("was altered or cut short"));
    }
    position(full)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(to)?);
    let open = |at: u32, chunk: &mut Vec<u8>| {
        stream.decrypt_in_place(at, false, &[], chunk).map_err(|_| broken("was altered"))
    };
    let mut done = 0u64;
    while done < full {
        let n = (full - done).min(BATCH as u64) as usize;
        let mut batch: Vec<Vec<u8>> = (0..n).map(|_| vec![0u8; CHUNK + TAG]).collect();
        for chunk in &mut batch {
            input.read_exact(chunk)?;
        }
        on_two_threads(&mut batch, position(done)?, &open)?;
        for chunk in &batch {
            out.write_all(chunk)?;
        }
        done += n as u64;
    }
    let mut last = Vec::with_capacity(last_len + 1);
    // One byte more than expected at most: a file that grew is refused.
    Read::by_ref(&mut input).take(last_len as u64 + 1).read_to_end(&mut last)?;
    if last.len() != last_len {
        return Err(broken("changed while it was opened"));
    }
    stream.decrypt_in_place(position(full)?, true, &[], &mut last).map_err(|_| broken("was altered or cut short"))?;
    out.write_all(&last)?;
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

    #[test]
    fn files_sealed_on_two_threads_match_the_stream_both_ways() {
        let dir = tempfile::tempdir().expect("dir");
        let (plain, sealed, back) = (dir.path().join("p"), dir.path().join("s"), dir.path().join("b"));
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, BATCH * CHUNK, (2 * BATCH + 3) * CHUNK + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            std::fs::write(&plain, &data).expect("write");
            // Sealed in parallel, read by the stream.
            seal_file(&cipher(), &plain, &sealed).expect("seal");
            let bytes = std::fs::read(&sealed).expect("read");
            assert_eq!(plain_len(bytes.len() as u64), len as u64);
            assert_eq!(open(&bytes).expect("stream opens it"), data, "length {len}");
            // Sealed by the stream, opened in parallel.
            std::fs::write(&sealed, seal(&data)).expect("write");
            open_file(&cipher(), &sealed, &back).expect("open");
            assert_eq!(std::fs::read(&back).expect("read"), data, "length {len}");
        }
    }

    #[test]
    fn a_file_altered_cut_or_reordered_does_not_open_in_parallel_either() {
        let dir = tempfile::tempdir().expect("dir");
        let (sealed, back) = (dir.path().join("s"), dir.path().join("b"));
        let data: Vec<u8> = (0..(BATCH + 4) * CHUNK + 77).map(|i| (i % 256) as u8).collect();
        let good = seal(&data);
        let mut altered = good.clone();
        altered[HEADER + 40 * (CHUNK + TAG) / 2] ^= 1;
        let cut = good[..good.len() - (CHUNK + TAG)].to_vec();
        let mut swapped = good.clone();
        let (a, b) = (HEADER, HEADER + CHUNK + TAG);
        let first: Vec<u8> = swapped[a..b].to_vec();
        swapped.copy_within(b..b + CHUNK + TAG, a);
        swapped[b..b + CHUNK + TAG].copy_from_slice(&first);
        for (what, bytes) in [("altered", altered), ("cut", cut), ("swapped", swapped)] {
            std::fs::write(&sealed, &bytes).expect("write");
            assert!(open_file(&cipher(), &sealed, &back).is_err(), "{what} opened");
        }
    }
}
