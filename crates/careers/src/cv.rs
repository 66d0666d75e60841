//! CV uploads are untrusted: the type comes from the bytes, never from the
//! name; the name is only shown, never used as a path.

use std::io::Read;

use crate::CareerError;

/// Largest CV we accept.
pub const MAX_CV_BYTES: usize = 5 * 1024 * 1024;

/// A CV format we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CvKind {
    Pdf,
    Docx,
    Odt,
}

impl CvKind {
    pub fn content_type(self) -> &'static str {
        match self {
            CvKind::Pdf => "application/pdf",
            CvKind::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            CvKind::Odt => "application/vnd.oasis.opendocument.text",
        }
    }

    pub fn from_content_type(t: &str) -> Option<Self> {
        [CvKind::Pdf, CvKind::Docx, CvKind::Odt].into_iter().find(|k| k.content_type() == t)
    }
}

fn refuse(message: impl Into<String>) -> CareerError {
    CareerError::Invalid { field: "cv", message: message.into() }
}

/// Checks a CV's name and bytes; returns its kind and the name to show.
pub fn check(file_name: &str, bytes: &[u8]) -> Result<(CvKind, String), CareerError> {
    let name = file_name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(refuse("Give the CV a file name of at most 200 characters."));
    }
    if name.contains('/') || name.contains('\\') || name.contains("..") || name.chars().any(char::is_control) {
        return Err(refuse("The CV's file name may not contain a path (/, \\ or ..); rename the file and try again."));
    }
    if seldesk_privacy::card::contains_card_number(name) {
        return Err(refuse(seldesk_privacy::card::CARD_NUMBER_REFUSED));
    }
    if bytes.is_empty() {
        return Err(refuse("The CV file is empty."));
    }
    if bytes.len() > MAX_CV_BYTES {
        return Err(refuse(format!(
            "The CV is {:.1} MB; the limit is {} MB. Send a smaller PDF, DOCX or ODT file.",
            bytes.len() as f64 / 1_048_576.0,
            MAX_CV_BYTES / 1_048_576
        )));
    }
    let kind = sniff(bytes).ok_or_else(|| {
        refuse(
            "The CV must be a PDF, DOCX or ODT document; this file's content is none of these, whatever its name says.",
        )
    })?;
    Ok((kind, name.to_string()))
}

/// The document type from the content: PDF by its header; DOCX and ODT are
/// zip files told apart by their parts. Only small entries are read, so a zip
/// bomb costs nothing.
fn sniff(bytes: &[u8]) -> Option<CvKind> {
    if bytes.starts_with(b"%PDF-") {
        return is_pdf(bytes).then_some(CvKind::Pdf);
    }
    if !bytes.starts_with(b"PK\x03\x04") {
        return None;
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).ok()?;
    if let Ok(entry) = zip.by_name("mimetype") {
        let mut mimetype = String::new();
        entry.take(100).read_to_string(&mut mimetype).ok()?;
        return (mimetype.trim() == CvKind::Odt.content_type()).then_some(CvKind::Odt);
    }
    let has_types = zip.by_name("[Content_Types].xml").is_ok();
    let has_document = zip.by_name("word/document.xml").is_ok();
    (has_types && has_document).then_some(CvKind::Docx)
}

/// Whether a file that starts like a PDF is built like one, checked without
/// decompressing anything (a crafted stream could unpack to gigabytes, which
/// is why no general PDF parser reads it here): the version header, a
/// trailer ending in `startxref` and `%%EOF`, and the cross-reference
/// section it points to. A classic table must list objects whose headers
/// (`N G obj`) stand at the offsets it gives, and name the document's
/// `/Root`; a cross-reference stream must be an object of `/Type /XRef`. A
/// binary behind a `%PDF-` line has none of this.
fn is_pdf(bytes: &[u8]) -> bool {
    let header = bytes.get(5..8).is_some_and(|v| v[0].is_ascii_digit() && v[1] == b'.' && v[2].is_ascii_digit());
    if !header {
        return false;
    }
    let tail_start = bytes.len().saturating_sub(2048);
    let tail = &bytes[tail_start..];
    let Some(sx) = rfind(tail, b"startxref") else { return false };
    let after = &tail[sx + b"startxref".len()..];
    let (offset, rest) = number(skip_space(after));
    let Some(offset) = offset else { return false };
    if !skip_space(rest).starts_with(b"%%EOF") || offset >= bytes.len() {
        return false;
    }
    let section = skip_space(&bytes[offset..]);
    if let Some(table) = section.strip_prefix(b"xref") {
        xref_table(bytes, table)
    } else {
        object_header(section).is_some_and(|body| body.get(..1024).unwrap_or(body).windows(5).any(|w| w == b"/XRef"))
    }
}

/// Checks a classic cross-reference table (after `xref`) and its trailer.
fn xref_table(bytes: &[u8], mut rest: &[u8]) -> bool {
    let mut objects = 0;
    loop {
        rest = skip_space(rest);
        if let Some(trailer) = rest.strip_prefix(b"trailer") {
            let dict = trailer.get(..4096).unwrap_or(trailer);
            return objects > 0 && dict.windows(5).any(|w| w == b"/Root");
        }
        let (first, r) = number(rest);
        let (count, r) = number(skip_space(r));
        let (Some(_), Some(count)) = (first, count) else { return false };
        if count > 1_000_000 {
            return false;
        }
        rest = r;
        for _ in 0..count {
            rest = skip_space(rest);
            // `nnnnnnnnnn ggggg n`: a ten-digit offset, a generation, in use or free.
            let Some(entry) = rest.get(..18) else { return false };
            let digits = |r: std::ops::Range<usize>| entry[r].iter().all(u8::is_ascii_digit);
            if !digits(0..10) || entry[10] != b' ' || !digits(11..16) || entry[16] != b' ' {
                return false;
            }
            match entry[17] {
                b'n' => {
                    let at: usize = std::str::from_utf8(&entry[..10]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                    if at == 0 || at >= bytes.len() || object_header(&bytes[at..]).is_none() {
                        return false;
                    }
                    objects += 1;
                }
                b'f' => {}
                _ => return false,
            }
            rest = &rest[18..];
        }
    }
}

/// The bytes after `N G obj` when `at` starts with an object header.
fn object_header(at: &[u8]) -> Option<&[u8]> {
    let (n, r) = number(at);
    n?;
    let (g, r) = number(skip_space(r));
    g?;
    skip_space(r).strip_prefix(b"obj")
}

fn skip_space(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t' | b'\x0c' | b'\0')).count();
    &b[n..]
}

/// A decimal number of at most 12 digits at the start of `b`.
fn number(b: &[u8]) -> (Option<usize>, &[u8]) {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || n > 12 {
        return (None, b);
    }
    (std::str::from_utf8(&b[..n]).ok().and_then(|s| s.parse().ok()), &b[n..])
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, body) in entries {
            out.start_file(*name, zip::write::SimpleFileOptions::default()).expect("entry");
            out.write_all(body).expect("write");
        }
        out.finish().expect("finish").into_inner()
    }

    /// The smallest PDF a reader opens: a catalog, an empty page tree,
    /// their cross-reference table and trailer.
    pub(crate) const PDF: &[u8] = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\nxref\n0 3\n0000000000 65535 f \n0000000009 00000 n \n0000000058 00000 n \ntrailer\n<< /Size 3 /Root 1 0 R >>\nstartxref\n110\n%%EOF\n";

    #[test]
    fn a_pdf_is_checked_through_its_cross_reference_table() {
        assert_eq!(check("cv.pdf", PDF).expect("pdf").0, CvKind::Pdf);
        // A binary behind a PDF header, with or without a forged trailer.
        let elf = [b"%PDF-1.4\n".as_slice(), b"\x7fELF\x02\x01\x01\0", &[0u8; 4000]].concat();
        assert!(check("cv.pdf", &elf).is_err());
        let forged = [elf.as_slice(), b"\nstartxref\n9\n%%EOF\n"].concat();
        assert!(check("cv.pdf", &forged).is_err());
        // A table whose offsets point at nothing, and one without a root.
        let wrong = String::from_utf8_lossy(PDF).replace("0000000058", "0000000070");
        assert!(check("cv.pdf", wrong.as_bytes()).is_err());
        let rootless = String::from_utf8_lossy(PDF).replace("/Root 1 0 R", "/Info 1 0 R");
        assert!(check("cv.pdf", rootless.as_bytes()).is_err());
        assert!(check("cv.pdf", b"%PDF-1.7\n...").is_err());
        // A cross-reference stream (PDF 1.5 and later).
        let stream = b"%PDF-1.7\n1 0 obj\n<< /Type /XRef /Size 1 >>\nstream\nendstream\nendobj\nstartxref\n9\n%%EOF\n";
        assert_eq!(check("cv.pdf", stream).expect("xref stream").0, CvKind::Pdf);
    }

    #[test]
    fn the_type_comes_from_the_content_not_the_name() {
        assert_eq!(check("cv.pdf", PDF).expect("pdf").0, CvKind::Pdf);
        let docx = zip_with(&[("[Content_Types].xml", b"<Types/>"), ("word/document.xml", b"<w:document/>")]);
        assert_eq!(check("cv.docx", &docx).expect("docx").0, CvKind::Docx);
        let odt = zip_with(&[("mimetype", b"application/vnd.oasis.opendocument.text"), ("content.xml", b"<x/>")]);
        assert_eq!(check("cv.odt", &odt).expect("odt").0, CvKind::Odt);
        // A PDF name on other content, a spreadsheet, a plain zip: refused.
        assert!(check("cv.pdf", b"MZ\x90\x00 an executable").is_err());
        let ods = zip_with(&[("mimetype", b"application/vnd.oasis.opendocument.spreadsheet")]);
        assert!(check("cv.odt", &ods).is_err());
        assert!(check("cv.docx", &zip_with(&[("a.txt", b"hi")])).is_err());
        for bad in ["../../etc/passwd.pdf", "a/b.pdf", "c:\\x.pdf", ""] {
            assert!(check(bad, PDF).is_err(), "{bad}");
        }
        let big = [b"%PDF-".as_slice(), &vec![b'x'; MAX_CV_BYTES]].concat();
        assert!(check("big.pdf", &big).expect_err("too big").to_string().contains("limit"));
    }
}
