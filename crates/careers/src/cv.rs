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
        return Some(CvKind::Pdf);
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

    #[test]
    fn the_type_comes_from_the_content_not_the_name() {
        assert_eq!(check("cv.pdf", b"%PDF-1.7\n...").expect("pdf").0, CvKind::Pdf);
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
            assert!(check(bad, b"%PDF-1.4").is_err(), "{bad}");
        }
        let big = [b"%PDF-".as_slice(), &vec![b'x'; MAX_CV_BYTES]].concat();
        assert!(check("big.pdf", &big).expect_err("too big").to_string().contains("limit"));
    }
}
