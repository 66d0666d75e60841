//! Invoice PDF rendering.
//!
//! Turns an [`InvoiceDoc`] into the bytes of an A4 PDF with [`render`]. The document is written directly with
//! the low-level `pdf-writer` crate and uses only the standard 14 Type 1 fonts (Helvetica and Helvetica-Bold)
//! with `WinAnsiEncoding`. Every PDF viewer ships those fonts, so no font files are embedded or needed at build
//! time: the dependency is small, the output is a few kilobytes, and the layout code stays simple enough to test.
//!
//! The price of the base fonts is their character set: text is encoded to WinAnsi (Windows-1252), so Latin-1
//! accents (é, ü, ß, …) and a handful of typographic characters (€, –, “ ”) survive, while everything else is
//! replaced by an ASCII fallback (currency signs by their ISO code, e.g. "₹" → "INR", other Latin letters by
//! their base letter, anything else by "?"). Line widths are measured with the real Adobe metrics of the two
//! fonts, so addresses and descriptions wrap to their column. Content streams are left uncompressed.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

/// Everything printed on an invoice; amounts in minor units (cents).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct InvoiceDoc {
    /// Invoice number, e.g. "2026-000001".
    pub number: String,
    /// Issue date, already formatted, e.g. "2026-11-30".
    pub issued: String,
    /// Seller's legal name; also printed in the footer.
    pub seller_name: String,
    /// Address lines.
    pub seller_address: Vec<String>,
    /// Seller's VAT / tax number, printed as "Tax ID: ...".
    pub seller_tax_id: Option<String>,
    /// Seller's contact e-mail; also printed in the footer.
    pub seller_email: String,
    /// Buyer's name (first line of the "Bill to" block).
    pub buyer_name: String,
    /// Buyer's company, if any.
    pub buyer_company: Option<String>,
    /// Buyer's e-mail.
    pub buyer_email: String,
    /// Address lines.
    pub buyer_address: Vec<String>,
    /// Country name.
    pub buyer_country: Option<String>,
    /// ISO currency code, e.g. "EUR".
    pub currency: String,
    /// Table rows, in order.
    pub lines: Vec<InvoiceLine>,
    /// Sum of the line amounts.
    pub subtotal_cents: i64,
    /// E.g. "VAT 20%"; `None` means no tax line is printed.
    pub tax_label: Option<String>,
    /// Tax amount; only printed when `tax_label` is set.
    pub tax_cents: i64,
    /// Amount due (printed in bold).
    pub total_cents: i64,
    /// E.g. "Paid on 2026-11-30 by PayPal (ref 5O190127TN364715T)".
    pub paid_note: Option<String>,
}

/// One row of the invoice table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct InvoiceLine {
    /// Free text; wrapped to the column, explicit newlines are kept.
    pub description: String,
    /// Number of units.
    pub quantity: i64,
    /// Price of one unit (negative for credits).
    pub unit_cents: i64,
    /// Line total (negative for credits).
    pub amount_cents: i64,
}

/// Formats minor units as "1,234.56 EUR" style text (two decimals, thousands separators, code after).
#[must_use]
pub fn money(cents: i64, currency: &str) -> String {
    let number = amount(cents);
    let currency = currency.trim();
    if currency.is_empty() { number } else { format!("{number} {currency}") }
}

/// The PDF bytes of the invoice (A4, one page; if there are more lines than fit, continue on further pages).
#[must_use]
pub fn render(doc: &InvoiceDoc) -> Vec<u8> {
    let pages = layout(doc);
    let page_count = pages.len();

    let catalog_id = Ref::new(1);
    let tree_id = Ref::new(2);
    let info_id = Ref::new(3);
    let regular_id = Ref::new(4);
    let bold_id = Ref::new(5);
    let page_ids: Vec<(Ref, Ref)> = (0..page_count)
        .map(|i| {
            let base = 6 + 2 * i32::try_from(i).unwrap_or(i32::MAX / 4);
            (Ref::new(base), Ref::new(base + 1))
        })
        .collect();

    let mut pdf = Pdf::new();
    pdf.catalog(catalog_id).pages(tree_id);
    pdf.pages(tree_id)
        .kids(page_ids.iter().map(|&(page, _)| page))
        .count(i32::try_from(page_count).unwrap_or(i32::MAX));
    let title = format!("Invoice {}", doc.number.trim());
    pdf.document_info(info_id).title(TextStr(&title)).producer(TextStr("Seldesk"));
    for (id, font) in [(regular_id, Font::Regular), (bold_id, Font::Bold)] {
        pdf.type1_font(id).base_font(Name(font.base_font())).encoding_predefined(Name(b"WinAnsiEncoding"));
    }

    let footer_left = footer_text(doc);
    for (index, (mut content, &(page_id, content_id))) in pages.into_iter().zip(&page_ids).enumerate() {
        draw_footer(&mut content, &footer_left, index + 1, page_count);

        let mut page = pdf.page(page_id);
        page.parent(tree_id).media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT)).contents(content_id);
        page.resources()
            .fonts()
            .pair(Name(Font::Regular.resource()), regular_id)
            .pair(Name(Font::Bold.resource()), bold_id);
        page.finish();

        let data = content.finish();
        pdf.stream(content_id, &data);
    }
    pdf.finish()
}

// ---------------------------------------------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------------------------------------------

const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const LEFT: f32 = 50.0;
const RIGHT: f32 = 545.0;
const TOP: f32 = 792.0;
/// Lowest baseline the body may use; the footer lives below.
const BOTTOM: f32 = 72.0;
const FOOTER_RULE_Y: f32 = 56.0;
const FOOTER_Y: f32 = 42.0;

/// Right column ("Bill to") of the address blocks.
const BUYER_X: f32 = 310.0;
const BLOCK_WIDTH: f32 = 235.0;

/// Table columns: description (left aligned) and the right edges of the number columns.
const DESC_WIDTH: f32 = 250.0;
const QTY_RIGHT: f32 = 350.0;
const UNIT_RIGHT: f32 = 445.0;
const AMOUNT_RIGHT: f32 = RIGHT;

const BODY_SIZE: f32 = 10.0;
const BODY_LEADING: f32 = 13.0;
const LABEL_SIZE: f32 = 8.5;
const HEADER_ROW_HEIGHT: f32 = 18.0;
const ROW_PADDING: f32 = 5.0;

const TEXT_GRAY: f32 = 0.0;
const MUTED_GRAY: f32 = 0.4;
const RULE_GRAY: f32 = 0.8;
const HEADER_FILL_GRAY: f32 = 0.93;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Font {
    Regular,
    Bold,
}

impl Font {
    fn resource(self) -> &'static [u8] {
        match self {
            Font::Regular => b"F1",
            Font::Bold => b"F2",
        }
    }

    fn base_font(self) -> &'static [u8] {
        match self {
            Font::Regular => b"Helvetica",
            Font::Bold => b"Helvetica-Bold",
        }
    }
}

/// Accumulates the content streams of the pages while tracking the vertical position on the current page.
struct Pages {
    done: Vec<Content>,
    current: Content,
    /// Baseline for the next line of text on the current page.
    y: f32,
}

impl Pages {
    fn new() -> Self {
        Self { done: Vec::new(), current: Content::new(), y: TOP }
    }

    fn new_page(&mut self) {
        let finished = std::mem::replace(&mut self.current, Content::new());
        self.done.push(finished);
        self.y = TOP;
    }

    fn into_pages(mut self) -> Vec<Content> {
        self.done.push(self.current);
        self.done
    }

    fn text(&mut self, x: f32, y: f32, font: Font, size: f32, gray: f32, text: &[u8]) {
        draw_text(&mut self.current, x, y, font, size, gray, text);
    }

    fn text_right(&mut self, right: f32, y: f32, font: Font, size: f32, gray: f32, text: &[u8]) {
        let x = right - text_width(text, font, size);
        self.text(x, y, font, size, gray, text);
    }

    fn rule(&mut self, x1: f32, x2: f32, y: f32, width: f32, gray: f32) {
        draw_rule(&mut self.current, x1, x2, y, width, gray);
    }

    fn fill_rect(&mut self, x: f32, y: f32, width: f32, height: f32, gray: f32) {
        self.current.set_fill_gray(gray).rect(x, y, width, height).fill_nonzero();
    }
}

fn draw_text(content: &mut Content, x: f32, y: f32, font: Font, size: f32, gray: f32, text: &[u8]) {
    if text.is_empty() {
        return;
    }
    content.set_fill_gray(gray);
    content.begin_text();
    content.set_font(Name(font.resource()), size);
    content.next_line(x, y);
    content.show(Str(text));
    content.end_text();
}

fn draw_rule(content: &mut Content, x1: f32, x2: f32, y: f32, width: f32, gray: f32) {
    content.set_stroke_gray(gray).set_line_width(width).move_to(x1, y).line_to(x2, y).stroke();
}

/// Lays out the whole invoice; returns one content stream per page (footers are added by [`render`]).
fn layout(doc: &InvoiceDoc) -> Vec<Content> {
    let mut pages = Pages::new();
    let currency = encode(doc.currency.trim());

    // Title and issue date.
    let title = encode(&format!("Invoice {}", doc.number.trim()));
    let title_lines = wrap_bytes(&title, Font::Bold, 20.0, RIGHT - LEFT);
    pages.y = TOP - 14.0;
    for line in &title_lines {
        pages.text(LEFT, pages.y, Font::Bold, 20.0, TEXT_GRAY, line);
        pages.y -= 24.0;
    }
    let issued = encode(&format!("Issue date: {}", doc.issued.trim()));
    pages.text(LEFT, pages.y + 4.0, Font::Regular, BODY_SIZE, MUTED_GRAY, &issued);
    pages.y -= 30.0;

    // Seller (left) and buyer (right) blocks, side by side.
    let top = pages.y;
    let seller_end = address_block(&mut pages, LEFT, top, "From", &seller_lines(doc));
    let buyer_end = address_block(&mut pages, BUYER_X, top, "Bill to", &buyer_lines(doc));
    pages.y = seller_end.min(buyer_end) - 22.0;
    if pages.y < BOTTOM + 60.0 {
        // Absurdly long address blocks: start the table on a fresh page.
        continuation_page(&mut pages, doc);
    }

    // Table of lines.
    table_header(&mut pages, &currency);
    for line in &doc.lines {
        let description = wrap_text(&line.description, Font::Regular, BODY_SIZE, DESC_WIDTH);
        let height = description.len() as f32 * BODY_LEADING + 2.0 * ROW_PADDING;
        if pages.y - height < BOTTOM {
            continuation_page(&mut pages, doc);
            table_header(&mut pages, &currency);
        }
        let first_baseline = pages.y - ROW_PADDING - BODY_SIZE;
        let mut baseline = first_baseline;
        for text in &description {
            pages.text(LEFT + 4.0, baseline, Font::Regular, BODY_SIZE, TEXT_GRAY, text);
            baseline -= BODY_LEADING;
        }
        let quantity = encode(&line.quantity.to_string());
        let unit = encode(&amount(line.unit_cents));
        let total = encode(&amount(line.amount_cents));
        pages.text_right(QTY_RIGHT - 4.0, first_baseline, Font::Regular, BODY_SIZE, TEXT_GRAY, &quantity);
        pages.text_right(UNIT_RIGHT - 4.0, first_baseline, Font::Regular, BODY_SIZE, TEXT_GRAY, &unit);
        pages.text_right(AMOUNT_RIGHT - 4.0, first_baseline, Font::Regular, BODY_SIZE, TEXT_GRAY, &total);
        pages.y -= height;
        pages.rule(LEFT, RIGHT, pages.y, 0.5, RULE_GRAY);
    }

    // Totals.
    let mut totals: Vec<(Vec<u8>, Vec<u8>)> =
        vec![(b"Subtotal".to_vec(), encode(&money(doc.subtotal_cents, &doc.currency)))];
    if let Some(label) = doc.tax_label.as_deref() {
        totals.push((encode(label.trim()), encode(&money(doc.tax_cents, &doc.currency))));
    }
    let totals_height = totals.len() as f32 * 16.0 + 32.0;
    if pages.y - totals_height < BOTTOM {
        continuation_page(&mut pages, doc);
    }
    pages.y -= 18.0;
    for (label, value) in &totals {
        let label = fit_line(label, Font::Regular, BODY_SIZE, UNIT_RIGHT - LEFT - 8.0);
        pages.text_right(UNIT_RIGHT - 4.0, pages.y, Font::Regular, BODY_SIZE, TEXT_GRAY, &label);
        pages.text_right(AMOUNT_RIGHT - 4.0, pages.y, Font::Regular, BODY_SIZE, TEXT_GRAY, value);
        pages.y -= 16.0;
    }
    pages.rule(QTY_RIGHT, RIGHT, pages.y + 10.0, 1.0, TEXT_GRAY);
    pages.y -= 6.0;
    let total = encode(&money(doc.total_cents, &doc.currency));
    pages.text_right(UNIT_RIGHT - 4.0, pages.y, Font::Bold, 12.0, TEXT_GRAY, b"Total");
    pages.text_right(AMOUNT_RIGHT - 4.0, pages.y, Font::Bold, 12.0, TEXT_GRAY, &total);
    pages.y -= 30.0;

    // Payment note.
    if let Some(note) = doc.paid_note.as_deref().filter(|note| !note.trim().is_empty()) {
        for line in wrap_text(note, Font::Regular, BODY_SIZE, RIGHT - LEFT) {
            if pages.y < BOTTOM {
                continuation_page(&mut pages, doc);
            }
            pages.text(LEFT, pages.y, Font::Regular, BODY_SIZE, TEXT_GRAY, &line);
            pages.y -= BODY_LEADING;
        }
    }

    pages.into_pages()
}

/// Draws a labelled block of lines (first line bold) and returns the baseline below its last line.
fn address_block(pages: &mut Pages, x: f32, top: f32, label: &str, lines: &[(Font, Vec<u8>)]) -> f32 {
    let mut y = top;
    pages.text(x, y, Font::Bold, LABEL_SIZE, MUTED_GRAY, &encode(&label.to_uppercase()));
    y -= 15.0;
    for (font, text) in lines {
        let size = if *font == Font::Bold { 11.0 } else { BODY_SIZE };
        for line in wrap_bytes(text, *font, size, BLOCK_WIDTH) {
            pages.text(x, y, *font, size, TEXT_GRAY, &line);
            y -= BODY_LEADING;
        }
    }
    y
}

fn non_empty(text: &str) -> Option<&str> {
    let text = text.trim();
    (!text.is_empty()).then_some(text)
}

fn seller_lines(doc: &InvoiceDoc) -> Vec<(Font, Vec<u8>)> {
    let mut lines = vec![(Font::Bold, encode(doc.seller_name.trim()))];
    lines.extend(doc.seller_address.iter().filter_map(|l| non_empty(l)).map(|l| (Font::Regular, encode(l))));
    if let Some(tax_id) = doc.seller_tax_id.as_deref().and_then(non_empty) {
        lines.push((Font::Regular, encode(&format!("Tax ID: {tax_id}"))));
    }
    if let Some(email) = non_empty(&doc.seller_email) {
        lines.push((Font::Regular, encode(email)));
    }
    lines
}

fn buyer_lines(doc: &InvoiceDoc) -> Vec<(Font, Vec<u8>)> {
    let mut lines = vec![(Font::Bold, encode(doc.buyer_name.trim()))];
    if let Some(company) = doc.buyer_company.as_deref().and_then(non_empty) {
        lines.push((Font::Regular, encode(company)));
    }
    lines.extend(doc.buyer_address.iter().filter_map(|l| non_empty(l)).map(|l| (Font::Regular, encode(l))));
    if let Some(country) = doc.buyer_country.as_deref().and_then(non_empty) {
        lines.push((Font::Regular, encode(country)));
    }
    if let Some(email) = non_empty(&doc.buyer_email) {
        lines.push((Font::Regular, encode(email)));
    }
    lines
}

fn table_header(pages: &mut Pages, currency: &[u8]) {
    let top = pages.y;
    pages.fill_rect(LEFT, top - HEADER_ROW_HEIGHT, RIGHT - LEFT, HEADER_ROW_HEIGHT, HEADER_FILL_GRAY);
    let baseline = top - 12.5;
    let size = 9.0;
    let with_currency = |label: &[u8]| {
        let mut text = label.to_vec();
        if !currency.is_empty() {
            text.extend_from_slice(b" (");
            text.extend_from_slice(currency);
            text.push(b')');
        }
        text
    };
    pages.text(LEFT + 4.0, baseline, Font::Bold, size, TEXT_GRAY, b"Description");
    pages.text_right(QTY_RIGHT - 4.0, baseline, Font::Bold, size, TEXT_GRAY, b"Qty");
    pages.text_right(UNIT_RIGHT - 4.0, baseline, Font::Bold, size, TEXT_GRAY, &with_currency(b"Unit price"));
    pages.text_right(AMOUNT_RIGHT - 4.0, baseline, Font::Bold, size, TEXT_GRAY, &with_currency(b"Amount"));
    pages.y = top - HEADER_ROW_HEIGHT;
}

/// Starts a new page headed by a short "continued" title.
fn continuation_page(pages: &mut Pages, doc: &InvoiceDoc) {
    pages.new_page();
    let heading = encode(&format!("Invoice {} (continued)", doc.number.trim()));
    let heading = fit_line(&heading, Font::Bold, 11.0, RIGHT - LEFT);
    pages.text(LEFT, pages.y - 4.0, Font::Bold, 11.0, MUTED_GRAY, &heading);
    pages.y -= 24.0;
}

fn footer_text(doc: &InvoiceDoc) -> Vec<u8> {
    let name = doc.seller_name.trim();
    let email = doc.seller_email.trim();
    let text = match (name.is_empty(), email.is_empty()) {
        (false, false) => format!("{name} \u{b7} {email}"),
        (false, true) => name.to_owned(),
        (true, _) => email.to_owned(),
    };
    encode(&text)
}

fn draw_footer(content: &mut Content, left: &[u8], page: usize, page_count: usize) {
    draw_rule(content, LEFT, RIGHT, FOOTER_RULE_Y, 0.5, RULE_GRAY);
    let page_text = format!("Page {page} of {page_count}").into_bytes();
    let page_width = text_width(&page_text, Font::Regular, LABEL_SIZE);
    let left = fit_line(left, Font::Regular, LABEL_SIZE, RIGHT - LEFT - page_width - 20.0);
    draw_text(content, LEFT, FOOTER_Y, Font::Regular, LABEL_SIZE, MUTED_GRAY, &left);
    draw_text(content, RIGHT - page_width, FOOTER_Y, Font::Regular, LABEL_SIZE, MUTED_GRAY, &page_text);
}

// ---------------------------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------------------------

/// Formats minor units as "-1,234.56" (no currency).
fn amount(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let digits = (abs / 100).to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped}.{:02}", abs % 100)
}

// ---------------------------------------------------------------------------------------------------------------
// Text encoding (WinAnsi) and measuring
// ---------------------------------------------------------------------------------------------------------------

/// Encodes text to WinAnsi (Windows-1252) bytes, replacing what the encoding cannot represent.
///
/// Control characters become spaces (tabs, newlines) or are dropped; combining accents are dropped (the base
/// letter stays); currency signs become their ISO code; other characters become an ASCII look-alike or "?".
fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(byte) = winansi_byte(c) {
            out.push(byte);
            continue;
        }
        if let Some(code) = currency_code(c) {
            if out.last().is_some_and(u8::is_ascii_alphanumeric) {
                out.push(b' ');
            }
            out.extend_from_slice(code.as_bytes());
            if chars.peek().is_some_and(char::is_ascii_alphanumeric) {
                out.push(b' ');
            }
            continue;
        }
        out.extend_from_slice(fallback(c).as_bytes());
    }
    out
}

/// The WinAnsi byte of a character, if it has one (printable characters only).
fn winansi_byte(c: char) -> Option<u8> {
    let byte = match c {
        ' '..='~' => c as u8,
        '\u{a0}'..='\u{ff}' => c as u8,
        '€' => 0x80,
        '‚' => 0x82,
        'ƒ' => 0x83,
        '„' => 0x84,
        '…' => 0x85,
        '†' => 0x86,
        '‡' => 0x87,
        'ˆ' => 0x88,
        '‰' => 0x89,
        'Š' => 0x8a,
        '‹' => 0x8b,
        'Œ' => 0x8c,
        'Ž' => 0x8e,
        '\u{2018}' => 0x91,
        '\u{2019}' => 0x92,
        '\u{201c}' => 0x93,
        '\u{201d}' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '˜' => 0x98,
        '™' => 0x99,
        'š' => 0x9a,
        '›' => 0x9b,
        'œ' => 0x9c,
        'ž' => 0x9e,
        'Ÿ' => 0x9f,
        _ => return None,
    };
    Some(byte)
}

/// ISO 4217 code for currency signs missing from WinAnsi ("$", "£", "¥", "€" are encoded as they are).
fn currency_code(c: char) -> Option<&'static str> {
    let code = match c {
        '₹' => "INR",
        '₽' => "RUB",
        '₺' => "TRY",
        '₩' => "KRW",
        '₪' => "ILS",
        '₫' => "VND",
        '₱' => "PHP",
        '₴' => "UAH",
        '₦' => "NGN",
        '₸' => "KZT",
        '₡' => "CRC",
        '₲' => "PYG",
        '₵' => "GHS",
        '₭' => "LAK",
        '₮' => "MNT",
        '₼' => "AZN",
        '₾' => "GEL",
        '฿' => "THB",
        '₿' => "BTC",
        '\u{20a8}' => "Rs",
        _ => return None,
    };
    Some(code)
}

/// Base letters of Latin Extended-A (U+0100..=U+017F), one per code point.
const LATIN_EXTENDED_A: &[u8; 128] = b"AaAaAaCcCcCcCcDdDdEeEeEeEeEeGgGgGgGgHhHhIiIiIiIiIiIiJjKkkLlLlLlLlLlNnNnNnnNnOoOoOoOoRrRrRrSsSsSsSsTtTtTtUuUuUuUuUuUuWwYyYZzZzZzs";

/// ASCII replacement for a character WinAnsi cannot represent.
fn fallback(c: char) -> &'static str {
    match c {
        '\t' | '\n' | '\r' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}' => " ",
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => "",
        // Combining diacritical marks, zero-width characters, byte order mark.
        '\u{300}'..='\u{36f}' | '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}' | '\u{fe00}'..='\u{fe0f}' => "",
        '\u{100}'..='\u{17f}' => {
            let index = c as usize - 0x100;
            LATIN_EXTENDED_A.get(index..=index).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("?")
        }
        'Ș' => "S",
        'ș' => "s",
        'Ț' => "T",
        'ț' => "t",
        '\u{2010}'..='\u{2012}' | '\u{2212}' | '\u{2043}' => "-",
        '\u{2015}' => "-",
        '\u{2032}' | '\u{201b}' => "'",
        '\u{2033}' | '\u{201f}' => "\"",
        '\u{2192}' => "->",
        '\u{2190}' => "<-",
        '\u{2264}' => "<=",
        '\u{2265}' => ">=",
        '\u{2260}' => "!=",
        '\u{2248}' => "~",
        '\u{2116}' => "No.",
        _ => "?",
    }
}

/// Advance widths (1/1000 em) of Helvetica for the WinAnsi codes 32..=126 (Adobe AFM metrics).
const HELVETICA_WIDTHS: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // space ... /
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // 0 ... ?
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // @ ... O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // P ... _
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // ` ... o
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // p ... ~
];

/// Advance widths (1/1000 em) of Helvetica-Bold for the WinAnsi codes 32..=126 (Adobe AFM metrics).
const HELVETICA_BOLD_WIDTHS: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, // space ... /
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, // 0 ... ?
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778, // @ ... O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556, // P ... _
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611, // ` ... o
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584, // p ... ~
];

/// Base letters used to estimate the widths of the accented letters 0xC0..=0xFF.
const LATIN1_LETTER_BASES: &[u8; 64] = b"AAAAAA\xc6CEEEEIIIIDNOOOOO+OUUUUYPbaaaaaa\xe6ceeeeiiiidnooooo+ouuuuypy";

/// Advance width (1/1000 em) of one WinAnsi byte.
fn char_width(byte: u8, font: Font) -> u16 {
    let table = match font {
        Font::Regular => &HELVETICA_WIDTHS,
        Font::Bold => &HELVETICA_BOLD_WIDTHS,
    };
    if let Some(&width) = byte.checked_sub(32).and_then(|i| table.get(usize::from(i))) {
        return width;
    }
    match byte {
        0xc6 | 0x85 | 0x89 | 0x8c | 0x97 | 0x99 => 1000,
        0xe6 => 889,
        0x9c => 944,
        0xa9 | 0xae => 737,
        0xbc..=0xbe => 834,
        0xc0..=0xff => {
            let base = LATIN1_LETTER_BASES.get(usize::from(byte - 0xc0)).copied().unwrap_or(b'M');
            if base >= 0x80 { 1000 } else { char_width(base, font) }
        }
        _ => match font {
            Font::Regular => 556,
            Font::Bold => 611,
        },
    }
}

/// Width in points of WinAnsi text set in `font` at `size`.
fn text_width(text: &[u8], font: Font, size: f32) -> f32 {
    let units: u32 = text.iter().map(|&b| u32::from(char_width(b, font))).sum();
    units as f32 * size / 1000.0
}

/// Encodes and wraps text to `width`; explicit newlines start new lines. Always returns at least one line.
fn wrap_text(text: &str, font: Font, size: f32, width: f32) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for paragraph in text.trim().lines() {
        lines.extend(wrap_bytes(&encode(paragraph), font, size, width));
    }
    if lines.is_empty() {
        lines.push(Vec::new());
    }
    lines
}

/// Wraps WinAnsi text at spaces so that every line fits `width`; words longer than a line are broken.
/// Always returns at least one (possibly empty) line.
fn wrap_bytes(text: &[u8], font: Font, size: f32, width: f32) -> Vec<Vec<u8>> {
    let fits = |line: &[u8]| text_width(line, font, size) <= width;
    let mut lines = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    for word in text.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        if !line.is_empty() {
            let mut candidate = line.clone();
            candidate.push(b' ');
            candidate.extend_from_slice(word);
            if fits(&candidate) {
                line = candidate;
                continue;
            }
            lines.push(std::mem::take(&mut line));
        }
        if fits(word) {
            line = word.to_vec();
            continue;
        }
        // A single word wider than the line: break it between characters.
        for &byte in word {
            line.push(byte);
            if line.len() > 1 && !fits(&line) {
                line.pop();
                lines.push(std::mem::replace(&mut line, vec![byte]));
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Truncates one line of WinAnsi text to `width`, ending it with an ellipsis when shortened.
fn fit_line(text: &[u8], font: Font, size: f32, width: f32) -> Vec<u8> {
    const ELLIPSIS: u8 = 0x85;
    if text_width(text, font, size) <= width {
        return text.to_vec();
    }
    let budget = width - text_width(&[ELLIPSIS], font, size);
    let mut out = Vec::with_capacity(text.len());
    let mut used = 0.0;
    for &byte in text {
        let w = text_width(&[byte], font, size);
        if used + w > budget {
            break;
        }
        used += w;
        out.push(byte);
    }
    while out.last() == Some(&b' ') {
        out.pop();
    }
    out.push(ELLIPSIS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> InvoiceDoc {
        InvoiceDoc {
            number: "2026-000001".into(),
            issued: "2026-11-30".into(),
            seller_name: "Seldesk Ltd".into(),
            seller_address: vec!["1 Example Street".into(), "London EC1A 1AA".into(), "United Kingdom".into()],
            seller_tax_id: Some("GB123456789".into()),
            seller_email: "billing@seldesk.example".into(),
            buyer_name: "Ada Lovelace".into(),
            buyer_company: Some("Analytical Engines (Pty) Ltd".into()),
            buyer_email: "ada@example.com".into(),
            buyer_address: vec![
                "Flat 3, 12 A Rather Long Street Name That Keeps Going And Going, Near The Old Mill".into(),
                "Cape Town 8001".into(),
            ],
            buyer_country: Some("South Africa".into()),
            currency: "EUR".into(),
            lines: vec![
                InvoiceLine {
                    description: "Seldesk Pro subscription, November 2026 (monthly plan, 5 seats, includes priority \
                                  support and unlimited tickets)"
                        .into(),
                    quantity: 5,
                    unit_cents: 2_000,
                    amount_cents: 10_000,
                },
                InvoiceLine {
                    description: "Onboarding credit".into(),
                    quantity: 1,
                    unit_cents: -1_500,
                    amount_cents: -1_500,
                },
            ],
            subtotal_cents: 8_500,
            tax_label: Some("VAT 20%".into()),
            tax_cents: 1_700,
            total_cents: 123_456,
            paid_note: Some("Paid on 2026-11-30 by PayPal (ref 5O190127TN364715T)".into()),
        }
    }

    /// All string operands of the file (literal and hex), decoded to their bytes.
    fn pdf_strings(pdf: &[u8]) -> Vec<Vec<u8>> {
        let mut strings = Vec::new();
        let mut i = 0;
        while i < pdf.len() {
            match pdf[i] {
                b'%' => {
                    // Comment (header, binary marker, %%EOF): skip to end of line.
                    while i < pdf.len() && pdf[i] != b'\n' {
                        i += 1;
                    }
                }
                b'<' if pdf.get(i + 1) == Some(&b'<') => i += 1,
                b'<' => {
                    let mut hex = Vec::new();
                    i += 1;
                    while i < pdf.len() && pdf[i] != b'>' {
                        if pdf[i].is_ascii_hexdigit() {
                            hex.push(pdf[i]);
                        }
                        i += 1;
                    }
                    if hex.len() % 2 == 1 {
                        hex.push(b'0');
                    }
                    let decoded = hex
                        .chunks(2)
                        .map(|pair| {
                            let text = std::str::from_utf8(pair).unwrap_or("3F");
                            u8::from_str_radix(text, 16).unwrap_or(b'?')
                        })
                        .collect();
                    strings.push(decoded);
                }
                b'(' => {
                    let mut depth = 1;
                    let mut out = Vec::new();
                    i += 1;
                    while i < pdf.len() {
                        let byte = pdf[i];
                        match byte {
                            b'\\' => {
                                i += 1;
                                let escaped = pdf.get(i).copied().unwrap_or(b'\\');
                                match escaped {
                                    b'n' => out.push(b'\n'),
                                    b'r' => out.push(b'\r'),
                                    b't' => out.push(b'\t'),
                                    b'b' => out.push(0x08),
                                    b'f' => out.push(0x0c),
                                    b'0'..=b'7' => {
                                        let mut value = 0u32;
                                        let mut n = 0;
                                        while n < 3 && i < pdf.len() && (b'0'..=b'7').contains(&pdf[i]) {
                                            value = value * 8 + u32::from(pdf[i] - b'0');
                                            i += 1;
                                            n += 1;
                                        }
                                        i -= 1;
                                        out.push((value & 0xff) as u8);
                                    }
                                    other => out.push(other),
                                }
                            }
                            b'(' => {
                                depth += 1;
                                out.push(byte);
                            }
                            b')' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                                out.push(byte);
                            }
                            _ => out.push(byte),
                        }
                        i += 1;
                    }
                    strings.push(out);
                }
                _ => {}
            }
            i += 1;
        }
        strings
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn has_string(pdf: &[u8], needle: &[u8]) -> bool {
        pdf_strings(pdf).iter().any(|s| contains(s, needle))
    }

    fn count_pages(pdf: &[u8]) -> usize {
        let needle = b"/Type /Page";
        (0..pdf.len().saturating_sub(needle.len()))
            .filter(|&i| &pdf[i..i + needle.len()] == needle && pdf.get(i + needle.len()) != Some(&b's'))
            .count()
    }

    /// Baselines (y of every `x y Td`) in all content streams.
    fn text_baselines(pdf: &[u8]) -> Vec<f32> {
        let text = String::from_utf8_lossy(pdf);
        text.lines()
            .filter_map(|line| line.strip_suffix(" Td"))
            .filter_map(|operands| operands.split_whitespace().nth(1)?.parse().ok())
            .collect()
    }

    fn assert_well_formed(pdf: &[u8]) {
        assert!(pdf.starts_with(b"%PDF-"), "missing header");
        let trimmed = pdf.trim_ascii_end();
        assert!(trimmed.ends_with(b"%%EOF"), "missing %%EOF");
        // startxref must point at the cross-reference table.
        let tail = String::from_utf8_lossy(&trimmed[trimmed.len().saturating_sub(40)..]).into_owned();
        let offset: usize = tail
            .split("startxref")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        assert!(pdf.get(offset..).is_some_and(|rest| rest.starts_with(b"xref")), "bad startxref {offset}");
    }

    #[test]
    fn money_formats() {
        assert_eq!(money(123_456, "EUR"), "1,234.56 EUR");
        assert_eq!(money(-500, "USD"), "-5.00 USD");
        assert_eq!(money(5, "INR"), "0.05 INR");
        assert_eq!(money(0, "EUR"), "0.00 EUR");
        assert_eq!(money(-5, "EUR"), "-0.05 EUR");
        assert_eq!(money(99_999, "EUR"), "999.99 EUR");
        assert_eq!(money(100_000, "EUR"), "1,000.00 EUR");
        assert_eq!(money(123_456_789_012, "JPY"), "1,234,567,890.12 JPY");
        assert_eq!(money(i64::MIN, "EUR"), "-92,233,720,368,547,758.08 EUR");
        assert_eq!(money(100, ""), "1.00");
    }

    #[test]
    fn renders_well_formed_pdf_with_key_texts() {
        let doc = sample();
        let pdf = render(&doc);
        assert_well_formed(&pdf);
        assert!(has_string(&pdf, b"2026-000001"));
        assert!(has_string(&pdf, b"Ada Lovelace"));
        assert!(has_string(&pdf, b"1,234.56 EUR"));
        assert!(has_string(&pdf, b"-15.00"), "credit line prints with a leading minus");
        assert!(has_string(&pdf, b"VAT 20%"));
        assert!(has_string(&pdf, b"5O190127TN364715T"));
        assert!(has_string(&pdf, b"billing@seldesk.example"));
        // The texts really sit in (uncompressed) content streams.
        assert!(contains(&pdf, b"(Ada Lovelace) Tj"));
        assert!(!contains(&pdf, b"/Filter"));
        // Document info and fonts.
        assert!(contains(&pdf, b"/Title (Invoice 2026-000001)"));
        assert!(contains(&pdf, b"/Producer (Seldesk)"));
        assert!(contains(&pdf, b"/BaseFont /Helvetica-Bold"));
        assert!(contains(&pdf, b"/Encoding /WinAnsiEncoding"));
        assert_eq!(count_pages(&pdf), 1);
    }

    #[test]
    fn accents_are_winansi_encoded() {
        let mut doc = sample();
        doc.buyer_name = "Zoë Müller".into();
        doc.lines[0].description = "Café crème für Zoë".into();
        let pdf = render(&doc);
        assert_well_formed(&pdf);
        assert!(has_string(&pdf, b"Zo\xeb M\xfcller"));
        assert!(has_string(&pdf, b"Caf\xe9 cr\xe8me f\xfcr Zo\xeb"));
        // No UTF-8 sequences leaked into any string.
        assert!(!has_string(&pdf, "ë".as_bytes()));
        assert!(!has_string(&pdf, "é".as_bytes()));
    }

    #[test]
    fn unencodable_characters_fall_back() {
        let mut doc = sample();
        doc.lines[0].description = "Plan ₹999 for 東京 office".into();
        doc.buyer_name = "Łukasz Żółć".into();
        doc.currency = "₹".into();
        let pdf = render(&doc);
        assert_well_formed(&pdf);
        assert!(has_string(&pdf, b"Plan INR 999 for ?? office"));
        assert!(has_string(&pdf, b"Lukasz Z\xf3lc"));
        assert!(has_string(&pdf, b"1,234.56 INR"));
        assert!(!has_string(&pdf, "₹".as_bytes()));
        assert!(!has_string(&pdf, "東".as_bytes()));
    }

    #[test]
    fn encode_maps_to_winansi() {
        assert_eq!(encode("abc ()\\"), b"abc ()\\".to_vec());
        assert_eq!(encode("é€—“”"), vec![0xe9, 0x80, 0x97, 0x93, 0x94]);
        assert_eq!(encode("5 ₹"), b"5 INR".to_vec());
        assert_eq!(encode("₹5"), b"INR 5".to_vec());
        assert_eq!(encode("e\u{301}"), b"e".to_vec());
        assert_eq!(encode("a\tb\nc\u{7}"), b"a b c".to_vec());
        assert_eq!(encode("Привет"), b"??????".to_vec());
        assert_eq!(encode("Čőž"), vec![b'C', b'o', 0x9e]);
        assert_eq!(encode("Ķ"), b"K".to_vec());
        assert_eq!(encode("ſ"), b"s".to_vec());
    }

    #[test]
    fn fallbacks_are_ascii() {
        for c in ('\u{0}'..='\u{3100}').chain(['\u{feff}', '\u{1f600}']) {
            assert!(fallback(c).is_ascii(), "{c:?}");
            assert!(currency_code(c).is_none_or(str::is_ascii), "{c:?}");
            let encoded = encode(&c.to_string());
            assert!(encoded.iter().all(|&b| b >= 0x20 && b != 0x7f), "{c:?} -> {encoded:?}");
        }
    }

    #[test]
    fn widths_use_helvetica_metrics() {
        assert!((text_width(b"i", Font::Regular, 10.0) - 2.22).abs() < 1e-4);
        assert!((text_width(b"W", Font::Bold, 10.0) - 9.44).abs() < 1e-4);
        assert!(text_width(b"MMMM", Font::Regular, 10.0) > text_width(b"iiii", Font::Regular, 10.0));
        assert_eq!(char_width(0xe9, Font::Regular), char_width(b'e', Font::Regular));
        assert_eq!(char_width(0xc6, Font::Bold), 1000);
    }

    #[test]
    fn wrapping_respects_width() {
        let text = encode("The quick brown fox jumps over the lazy dog and keeps running through the field");
        let lines = wrap_bytes(&text, Font::Regular, 10.0, 100.0);
        assert!(lines.len() > 2);
        for line in &lines {
            assert!(text_width(line, Font::Regular, 10.0) <= 100.0, "{:?}", String::from_utf8_lossy(line));
        }
        assert_eq!(lines.join(&b' '), text);

        let long_word = vec![b'W'; 40];
        let lines = wrap_bytes(&long_word, Font::Bold, 10.0, 50.0);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| text_width(l, Font::Bold, 10.0) <= 50.0 && !l.is_empty()));
        assert_eq!(lines.concat(), long_word);

        assert_eq!(wrap_bytes(b"", Font::Regular, 10.0, 50.0), vec![Vec::<u8>::new()]);
        assert_eq!(wrap_text("one\ntwo", Font::Regular, 10.0, 500.0), vec![b"one".to_vec(), b"two".to_vec()]);
    }

    #[test]
    fn fit_line_truncates_with_ellipsis() {
        let text = b"A fairly long footer line that will not fit";
        let fitted = fit_line(text, Font::Regular, 10.0, 60.0);
        assert!(text_width(&fitted, Font::Regular, 10.0) <= 60.0);
        assert_eq!(fitted.last(), Some(&0x85));
        assert_eq!(fit_line(b"short", Font::Regular, 10.0, 60.0), b"short".to_vec());
    }

    #[test]
    fn many_lines_continue_on_further_pages() {
        let mut doc = sample();
        doc.lines = (1..=60)
            .map(|i| InvoiceLine {
                description: format!("Line item number {i}"),
                quantity: i,
                unit_cents: 1_000,
                amount_cents: i * 1_000,
            })
            .collect();
        let pdf = render(&doc);
        assert_well_formed(&pdf);
        let pages = count_pages(&pdf);
        assert!(pages >= 2, "expected at least 2 pages, got {pages}");
        assert!(contains(&pdf, format!("/Count {pages}").as_bytes()));
        assert!(has_string(&pdf, b"Line item number 1"));
        assert!(has_string(&pdf, b"Line item number 60"));
        assert!(has_string(&pdf, format!("Page {pages} of {pages}").as_bytes()));
        assert!(has_string(&pdf, b"Invoice 2026-000001 (continued)"));
        // The table header is repeated on every page holding rows, and nothing is drawn off the page body.
        let headers = pdf_strings(&pdf).iter().filter(|s| s.as_slice() == b"Description").count();
        assert!(headers >= 2, "table header printed {headers} times");
        let baselines = text_baselines(&pdf);
        assert!(baselines.len() > 180);
        assert!(baselines.iter().all(|&y| (FOOTER_Y..=PAGE_HEIGHT).contains(&y)), "{baselines:?}");
        assert!(baselines.iter().filter(|&&y| y < BOTTOM).all(|&y| y == FOOTER_Y), "{baselines:?}");
    }

    #[test]
    fn minimal_document_renders() {
        let doc = InvoiceDoc {
            number: String::new(),
            issued: String::new(),
            seller_name: String::new(),
            seller_address: Vec::new(),
            seller_tax_id: None,
            seller_email: String::new(),
            buyer_name: String::new(),
            buyer_company: None,
            buyer_email: String::new(),
            buyer_address: Vec::new(),
            buyer_country: None,
            currency: String::new(),
            lines: Vec::new(),
            subtotal_cents: 0,
            tax_label: None,
            tax_cents: 0,
            total_cents: 0,
            paid_note: None,
        };
        let pdf = render(&doc);
        assert_well_formed(&pdf);
        assert_eq!(count_pages(&pdf), 1);
        assert!(has_string(&pdf, b"0.00"));
    }
}
