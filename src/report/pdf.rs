//! A small page-layout kit over printpdf: headings, wrapped paragraphs, tables that continue
//! across pages with their header repeated, bar charts drawn as vector shapes, and "Page N of
//! M" footers. Text is set in the embedded DejaVu Sans (Latin, Greek, Cyrillic and more; its
//! licence is `assets/fonts/LICENSE`); a character the font lacks prints as U+FFFD, visibly.
//!
//! Output is a pure function of what is laid out: font resource names and the document id are
//! fixed (printpdf would pick random ones), so the same content gives the same bytes.

use std::sync::OnceLock;

use printpdf::{
    Color, FontId, Line, LinePoint, Mm, Op, PaintMode, ParsedFont, PdfDocument, PdfFontHandle,
    PdfPage, PdfSaveOptions, Point, Pt, Rect, Rgb, TextItem, WindingOrder,
};

static REGULAR_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static BOLD_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

pub const PAGE_W: f32 = 595.28;
pub const PAGE_H: f32 = 841.89;
pub const LEFT: f32 = 56.0;
pub const RIGHT: f32 = PAGE_W - 56.0;
const TOP: f32 = PAGE_H - 56.0;
const BOTTOM: f32 = 64.0;
/// What a character the font lacks is shown as.
pub const MISSING: char = '\u{FFFD}';

struct Face {
    parsed: ParsedFont,
    id: FontId,
}

struct Fonts {
    regular: Face,
    bold: Face,
}

fn fonts() -> &'static Fonts {
    static FONTS: OnceLock<Fonts> = OnceLock::new();
    FONTS.get_or_init(|| {
        let load = |bytes: &[u8], id: &str| {
            let mut warnings = Vec::new();
            Face {
                parsed: ParsedFont::from_bytes(bytes, 0, &mut warnings)
                    .expect("the embedded DejaVu font parses"),
                // Six capitals: printpdf uses the first six characters as the subset tag.
                id: FontId(id.into()),
            }
        };
        Fonts {
            regular: load(REGULAR_TTF, "ATREGU"),
            bold: load(BOLD_TTF, "ATBOLD"),
        }
    })
}

fn face(bold: bool) -> &'static Face {
    let f = fonts();
    if bold { &f.bold } else { &f.regular }
}

/// `s` with every character the font cannot show replaced by [`MISSING`] (control characters
/// by nothing).
pub fn printable(s: &str) -> String {
    let f = &fonts().regular.parsed;
    s.chars()
        .filter(|c| !c.is_control())
        .map(|c| {
            if f.lookup_glyph_index(c as u32).is_some() {
                c
            } else {
                MISSING
            }
        })
        .collect()
}

/// The width of `s` set at `size` points.
pub fn width(s: &str, size: f32, bold: bool) -> f32 {
    let f = &face(bold).parsed;
    let upem = f32::from(f.units_per_em.max(1));
    let mut w = 0u32;
    for c in s.chars() {
        let gid = f
            .lookup_glyph_index(c as u32)
            .or_else(|| f.lookup_glyph_index(MISSING as u32))
            .unwrap_or(0);
        w += u32::from(f.get_glyph_width(gid).unwrap_or(0));
    }
    w as f32 * size / upem
}

/// `s` cut to fit `max` points, ending in "…" when cut.
pub fn fit(s: &str, size: f32, bold: bool, max: f32) -> String {
    if width(s, size, bold) <= max {
        return s.to_owned();
    }
    let mut out = String::new();
    for c in s.chars() {
        out.push(c);
        if width(&out, size, bold) + width("…", size, bold) > max {
            out.pop();
            break;
        }
    }
    out.push('…');
    out
}

/// `s` broken into lines no wider than `max` points (at spaces; a word longer than a line is
/// broken anywhere).
pub fn wrap(s: &str, size: f32, bold: bool, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in s.split(' ') {
        let candidate = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if width(&candidate, size, bold) <= max {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        let mut rest = word.to_owned();
        while width(&rest, size, bold) > max {
            let mut head = String::new();
            for c in rest.chars() {
                head.push(c);
                if width(&head, size, bold) > max {
                    head.pop();
                    break;
                }
            }
            if head.is_empty() {
                break;
            }
            rest = rest[head.len()..].to_owned();
            lines.push(head);
        }
        line = rest;
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

pub fn grey(v: f32) -> Color {
    Color::Rgb(Rgb {
        r: v,
        g: v,
        b: v,
        icc_profile: None,
    })
}

pub fn rgb(r: f32, g: f32, b: f32) -> Color {
    Color::Rgb(Rgb {
        r,
        g,
        b,
        icc_profile: None,
    })
}

/// A table column: heading, width in points, right-aligned or not.
pub struct Column<'a> {
    pub heading: &'a str,
    pub width: f32,
    pub right: bool,
}

/// A document being laid out, top to bottom.
pub struct Doc {
    pages: Vec<Vec<Op>>,
    ops: Vec<Op>,
    /// Baseline of the next line.
    y: f32,
    footer: String,
}

impl Doc {
    /// A new document; `footer` is printed at the foot of every page beside "Page N of M".
    pub fn new(footer: &str) -> Self {
        Doc {
            pages: Vec::new(),
            ops: Vec::new(),
            y: TOP,
            footer: printable(footer),
        }
    }

    pub fn new_page(&mut self) {
        self.pages.push(std::mem::take(&mut self.ops));
        self.y = TOP;
    }

    /// Starts a new page unless `height` points fit above the bottom margin.
    pub fn need(&mut self, height: f32) {
        if self.y - height < BOTTOM {
            self.new_page();
        }
    }

    pub fn space(&mut self, points: f32) {
        self.y -= points;
    }

    /// Text at `x` on the baseline `y`, already fitted by the caller.
    fn put(&mut self, x: f32, y: f32, s: &str, size: f32, bold: bool, color: Color) {
        self.ops.extend([
            Op::StartTextSection,
            Op::SetFillColor { col: color },
            Op::SetFont {
                font: PdfFontHandle::External(face(bold).id.clone()),
                size: Pt(size),
            },
            Op::SetTextCursor {
                pos: Point { x: Pt(x), y: Pt(y) },
            },
            Op::ShowText {
                items: vec![TextItem::Text(s.to_owned())],
            },
            Op::EndTextSection,
        ]);
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, color: Color) {
        self.ops.push(Op::SetFillColor { col: color });
        self.ops.push(Op::DrawRectangle {
            rectangle: Rect {
                x: Pt(x),
                y: Pt(y),
                width: Pt(w),
                height: Pt(h),
                mode: Some(PaintMode::Fill),
                winding_order: Some(WindingOrder::NonZero),
            },
        });
    }

    fn hline(&mut self, x1: f32, x2: f32, y: f32, color: Color, thickness: f32) {
        self.ops.push(Op::SetOutlineColor { col: color });
        self.ops.push(Op::SetOutlineThickness { pt: Pt(thickness) });
        self.ops.push(Op::DrawLine {
            line: Line {
                points: vec![
                    LinePoint {
                        p: Point {
                            x: Pt(x1),
                            y: Pt(y),
                        },
                        bezier: false,
                    },
                    LinePoint {
                        p: Point {
                            x: Pt(x2),
                            y: Pt(y),
                        },
                        bezier: false,
                    },
                ],
                is_closed: false,
            },
        });
    }

    /// A line of text at the current position (cut to the page width).
    pub fn line(&mut self, s: &str, size: f32, bold: bool, color: Color) {
        let lead = size * 1.45;
        self.need(lead);
        self.y -= lead;
        let s = fit(&printable(s), size, bold, RIGHT - LEFT);
        self.put(LEFT, self.y, &s, size, bold, color);
    }

    pub fn title(&mut self, s: &str) {
        self.line(s, 20.0, true, rgb(0.1, 0.2, 0.4));
        self.space(6.0);
    }

    /// A section heading, kept with at least a few lines of what follows.
    pub fn heading(&mut self, s: &str) {
        // Room for the heading and what opens the section (a table or a control), so a
        // heading never ends a page.
        self.need(300.0);
        self.space(10.0);
        self.line(s, 13.5, true, rgb(0.1, 0.2, 0.4));
        let y = self.y - 4.0;
        self.hline(LEFT, RIGHT, y, rgb(0.6, 0.68, 0.8), 0.8);
        self.space(8.0);
    }

    pub fn subheading(&mut self, s: &str) {
        self.need(60.0);
        self.space(4.0);
        self.line(s, 11.0, true, grey(0.1));
        self.space(2.0);
    }

    /// A paragraph wrapped to the page width.
    pub fn para(&mut self, s: &str) {
        self.para_sized(s, 9.5, grey(0.1));
    }

    pub fn note(&mut self, s: &str) {
        self.para_sized(s, 8.5, grey(0.35));
    }

    fn para_sized(&mut self, s: &str, size: f32, color: Color) {
        for l in wrap(&printable(s), size, false, RIGHT - LEFT) {
            let lead = size * 1.45;
            self.need(lead);
            self.y -= lead;
            self.put(LEFT, self.y, &l, size, false, color.clone());
        }
        self.space(4.0);
    }

    /// Label/value pairs in two columns.
    pub fn pairs(&mut self, rows: &[(&str, String)]) {
        let size = 9.5;
        let label_w = 170.0;
        let wrapped: Vec<Vec<String>> = rows
            .iter()
            .map(|(_, value)| wrap(&printable(value), size, false, RIGHT - LEFT - label_w))
            .collect();
        // A short block is kept on one page (with the heading above it, which asked for room).
        let total: usize = wrapped.iter().map(Vec::len).sum();
        if total <= 16 {
            self.need(total as f32 * size * 1.45);
        }
        for ((label, _), lines) in rows.iter().zip(wrapped) {
            for (i, l) in lines.iter().enumerate() {
                let lead = size * 1.45;
                self.need(lead);
                self.y -= lead;
                if i == 0 {
                    let label = fit(&printable(label), size, true, label_w - 8.0);
                    self.put(LEFT, self.y, &label, size, true, grey(0.25));
                }
                self.put(LEFT + label_w, self.y, l, size, false, grey(0.05));
            }
        }
        self.space(4.0);
    }

    /// A table; rows that do not fit continue on the next page under a repeated header.
    /// Cells too wide for their column are cut with "…".
    pub fn table(&mut self, columns: &[Column<'_>], rows: &[Vec<String>]) {
        let size = 8.8;
        let lead = size * 1.6;
        let header = |doc: &mut Doc| {
            doc.need(lead * 2.0);
            doc.y -= lead;
            doc.rect(LEFT, doc.y - 4.0, RIGHT - LEFT, lead, rgb(0.88, 0.91, 0.96));
            let mut x = LEFT + 3.0;
            for c in columns {
                let s = fit(c.heading, size, true, c.width - 6.0);
                let at = if c.right {
                    x + c.width - 6.0 - width(&s, size, true)
                } else {
                    x
                };
                doc.put(at, doc.y, &s, size, true, grey(0.1));
                x += c.width;
            }
        };
        // A short table is kept on one page.
        let whole = lead * (rows.len() as f32 + 2.0);
        if whole < 420.0 {
            self.need(whole);
        }
        header(self);
        if rows.is_empty() {
            self.y -= lead;
            self.put(LEFT + 3.0, self.y, "(none)", size, false, grey(0.4));
        }
        for (i, row) in rows.iter().enumerate() {
            if self.y - lead < BOTTOM {
                self.new_page();
                header(self);
            }
            self.y -= lead;
            if i % 2 == 1 {
                self.rect(LEFT, self.y - 4.0, RIGHT - LEFT, lead, grey(0.965));
            }
            let mut x = LEFT + 3.0;
            for (c, cell) in columns.iter().zip(row) {
                let s = fit(&printable(cell), size, false, c.width - 6.0);
                let at = if c.right {
                    x + c.width - 6.0 - width(&s, size, false)
                } else {
                    x
                };
                self.put(at, self.y, &s, size, false, grey(0.05));
                x += c.width;
            }
        }
        self.space(10.0);
    }

    /// A vertical bar chart of `bars` (label, value), drawn with rectangles; at most one label
    /// in every few bars is printed so they never overlap.
    pub fn bar_chart(&mut self, caption: &str, bars: &[(String, u64)], color: Color) {
        let height = 120.0;
        self.need(height + 50.0);
        self.line(caption, 9.5, true, grey(0.2));
        self.space(6.0);
        let top = self.y;
        let base = top - height;
        let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
        let chart_left = LEFT + 40.0;
        let chart_w = RIGHT - chart_left;
        self.hline(chart_left, RIGHT, base, grey(0.5), 0.6);
        self.hline(chart_left, RIGHT, top, grey(0.85), 0.4);
        self.put(LEFT, top - 8.0, &max.to_string(), 7.5, false, grey(0.4));
        self.put(LEFT, base, "0", 7.5, false, grey(0.4));
        if bars.is_empty() {
            self.put(
                chart_left + 4.0,
                base + 8.0,
                "(no data)",
                8.0,
                false,
                grey(0.4),
            );
        } else {
            let slot = chart_w / bars.len() as f32;
            let label_every = ((45.0 / slot).ceil() as usize).max(1);
            for (i, (label, v)) in bars.iter().enumerate() {
                let h = height * (*v as f32) / (max as f32);
                let x = chart_left + slot * i as f32;
                if *v > 0 {
                    self.rect(
                        x + slot * 0.15,
                        base,
                        (slot * 0.7).max(0.5),
                        h.max(0.5),
                        color.clone(),
                    );
                }
                if i % label_every == 0 {
                    let l = fit(label, 6.5, false, slot * label_every as f32);
                    self.put(x, base - 10.0, &l, 6.5, false, grey(0.35));
                }
            }
        }
        self.y = base - 22.0;
    }

    /// The finished PDF: footers on every page, `info` as the document's subject, and `facts`
    /// (any bytes) embedded in the document information as `/AuditTrailFacts` (hex).
    pub fn finish(mut self, title: &str, facts: &[u8]) -> Vec<u8> {
        if !self.ops.is_empty() || self.pages.is_empty() {
            self.new_page();
        }
        let total = self.pages.len();
        let pages = std::mem::take(&mut self.pages);
        let mut out = Vec::with_capacity(total);
        for (i, ops) in pages.into_iter().enumerate() {
            self.ops = ops;
            let footer_y = 34.0;
            self.hline(LEFT, RIGHT, footer_y + 12.0, grey(0.8), 0.5);
            let left = fit(&self.footer, 7.5, false, RIGHT - LEFT - 90.0);
            self.put(LEFT, footer_y, &left, 7.5, false, grey(0.4));
            let n = format!("Page {} of {}", i + 1, total);
            let w = width(&n, 7.5, false);
            self.put(RIGHT - w, footer_y, &n, 7.5, false, grey(0.4));
            out.push(PdfPage::new(
                Mm(PAGE_W * 25.4 / 72.0),
                Mm(PAGE_H * 25.4 / 72.0),
                std::mem::take(&mut self.ops),
            ));
        }
        let f = fonts();
        let mut doc = PdfDocument::new(title);
        for face in [&f.regular, &f.bold] {
            doc.resources
                .fonts
                .map
                .insert(face.id.clone(), printpdf::PdfFont::new(face.parsed.clone()));
        }
        doc.metadata.info.creator = "AuditTrail".into();
        doc.metadata.info.producer = "AuditTrail (printpdf)".into();
        doc.with_pages(out);
        let mut warnings = Vec::new();
        let mut lo = doc.to_lopdf_document(&PdfSaveOptions::default(), &mut warnings);
        // A fixed document id (printpdf draws a random one): derived from the facts.
        let id = {
            use sha2::{Digest, Sha256};
            let d = Sha256::digest(facts);
            crate::store::chain::to_hex(&d[..16])
        };
        lo.trailer.set(
            "ID",
            lopdf::Object::Array(vec![
                lopdf::Object::String(id.clone().into_bytes(), lopdf::StringFormat::Literal),
                lopdf::Object::String(id.into_bytes(), lopdf::StringFormat::Literal),
            ]),
        );
        if let Ok(info_id) = lo
            .trailer
            .get(b"Info")
            .and_then(lopdf::Object::as_reference)
            && let Ok(info) = lo
                .get_object_mut(info_id)
                .and_then(lopdf::Object::as_dict_mut)
        {
            info.set(
                "AuditTrailFacts",
                lopdf::Object::String(
                    crate::store::chain::to_hex(facts).into_bytes(),
                    lopdf::StringFormat::Literal,
                ),
            );
        }
        lo.compress();
        let mut bytes = Vec::new();
        lo.save_to(&mut bytes)
            .expect("writing a PDF into memory cannot fail");
        bytes
    }
}

/// The facts embedded by [`Doc::finish`], if `pdf` holds them.
pub fn embedded_facts(pdf: &[u8]) -> Option<Vec<u8>> {
    let key = b"/AuditTrailFacts";
    let at = pdf.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &pdf[at..];
    let open = rest.iter().position(|&b| b == b'(')?;
    let close = rest[open..].iter().position(|&b| b == b')')? + open;
    let hex = std::str::from_utf8(&rest[open + 1..close]).ok()?;
    crate::store::chain::from_hex_vec(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_and_fit_respect_the_width() {
        let s = "a fairly long sentence that will need to be wrapped onto several lines here";
        for l in wrap(s, 10.0, false, 120.0) {
            assert!(width(&l, 10.0, false) <= 120.0, "{l}");
        }
        let cut = fit(s, 10.0, false, 80.0);
        assert!(cut.ends_with('…') && width(&cut, 10.0, false) <= 80.0);
        assert_eq!(wrap("", 10.0, false, 100.0), vec![String::new()]);
    }

    #[test]
    fn characters_the_font_lacks_are_a_visible_placeholder() {
        assert_eq!(printable("Ωμέγα Привет é"), "Ωμέγα Привет é");
        // A Private Use Area code point: no glyph in DejaVu Sans.
        assert_eq!(printable("a\u{E000}b"), format!("a{MISSING}b"));
    }

    #[test]
    fn the_same_content_gives_the_same_bytes_and_the_facts_come_back() {
        let make = || {
            let mut d = Doc::new("footer");
            d.title("Title");
            d.para("Some text.");
            let rows: Vec<Vec<String>> = (0..120)
                .map(|i| vec![format!("row {i}"), i.to_string()])
                .collect();
            d.table(
                &[
                    Column {
                        heading: "name",
                        width: 200.0,
                        right: false,
                    },
                    Column {
                        heading: "n",
                        width: 80.0,
                        right: true,
                    },
                ],
                &rows,
            );
            d.finish("t", b"{\"x\":1}")
        };
        let a = make();
        assert_eq!(a, make());
        assert!(a.starts_with(b"%PDF-"));
        assert_eq!(embedded_facts(&a).as_deref(), Some(&b"{\"x\":1}"[..]));
    }
}
