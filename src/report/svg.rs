//! Small building blocks for the inline SVG charts of `report.html`: linear and band scales with
//! "nice" ticks, colour scales, and element writers that escape every piece of text.
//!
//! Everything here is deterministic (coordinates are written with two decimals) so the same
//! summary always renders to the same bytes.

use super::text::html as escape;
use std::fmt::Write;

/// A coordinate or length with at most two decimals and no trailing zeros (`12`, `12.5`, `-0.25`).
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "0".into();
    }
    let mut s = format!("{:.2}", x);
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" { "0".into() } else { s }
}

/// Maps a numeric domain linearly onto a pixel range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearScale {
    /// Domain start.
    pub d0: f64,
    /// Domain end.
    pub d1: f64,
    /// Range start (pixels).
    pub r0: f64,
    /// Range end (pixels).
    pub r1: f64,
}

impl LinearScale {
    /// A scale from `domain` to `range`.
    pub fn new(domain: (f64, f64), range: (f64, f64)) -> LinearScale {
        LinearScale {
            d0: domain.0,
            d1: domain.1,
            r0: range.0,
            r1: range.1,
        }
    }

    /// Pixel position of `v`, clamped to the range so that an out-of-domain value (e.g. an
    /// interval bound outside the axis) cannot draw outside the chart.
    pub fn map(&self, v: f64) -> f64 {
        let span = self.d1 - self.d0;
        let t = if span == 0.0 || !v.is_finite() {
            0.0
        } else {
            ((v - self.d0) / span).clamp(0.0, 1.0)
        };
        self.r0 + t * (self.r1 - self.r0)
    }

    /// About `count` evenly spaced round values (steps of 1, 2 or 5 × 10^k) inside the domain.
    pub fn ticks(&self, count: usize) -> Vec<f64> {
        let (lo, hi) = if self.d0 <= self.d1 {
            (self.d0, self.d1)
        } else {
            (self.d1, self.d0)
        };
        if count == 0 || !lo.is_finite() || !hi.is_finite() || hi <= lo {
            return vec![lo];
        }
        let step = nice_step((hi - lo) / count as f64);
        let first = (lo / step).ceil() as i64;
        let last = (hi / step + 1e-9).floor() as i64;
        (first..=last)
            .map(|i| {
                // Round away floating noise (0.30000000000000004) so labels and bytes are stable.
                let v = i as f64 * step;
                (v * 1e9).round() / 1e9
            })
            .collect()
    }
}

/// The smallest of 1, 2, 5 × 10^k that is at least `raw`.
pub fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    let fraction = raw / power;
    let nice = if fraction <= 1.0 + 1e-12 {
        1.0
    } else if fraction <= 2.0 + 1e-12 {
        2.0
    } else if fraction <= 5.0 + 1e-12 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// The smallest multiple of `step` that is at least `v` (for an axis end).
pub fn ceil_to(v: f64, step: f64) -> f64 {
    if !v.is_finite() || step <= 0.0 {
        return step;
    }
    ((v / step) - 1e-9).ceil() * step
}

/// Splits a pixel range into `n` equal bands with inner padding (a fraction of the band).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandScale {
    /// Number of bands.
    pub n: usize,
    /// Range start.
    pub r0: f64,
    /// Range end.
    pub r1: f64,
    /// Fraction of each band left empty, split between both sides.
    pub padding: f64,
}

impl BandScale {
    /// Start of band `i` (after its padding).
    pub fn start(&self, i: usize) -> f64 {
        self.r0 + i as f64 * self.step() + self.step() * self.padding / 2.0
    }

    /// Width of a band without its padding.
    pub fn width(&self) -> f64 {
        self.step() * (1.0 - self.padding)
    }

    /// Centre of band `i`.
    pub fn centre(&self, i: usize) -> f64 {
        self.r0 + (i as f64 + 0.5) * self.step()
    }

    fn step(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (self.r1 - self.r0) / self.n as f64
        }
    }
}

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// Parse `#rrggbb`.
    pub fn from_hex(hex: &str) -> Option<Rgb> {
        let h = hex.strip_prefix('#')?;
        if h.len() != 6 || !h.is_ascii() {
            return None;
        }
        let p = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
        Some(Rgb(p(0)?, p(2)?, p(4)?))
    }

    /// `#rrggbb`, lower case.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// Linear interpolation in sRGB between `self` (t = 0) and `other` (t = 1).
    pub fn lerp(self, other: Rgb, t: f64) -> Rgb {
        let t = if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8;
        Rgb(
            mix(self.0, other.0),
            mix(self.1, other.1),
            mix(self.2, other.2),
        )
    }

    /// WCAG relative luminance in [0, 1].
    pub fn luminance(self) -> f64 {
        let lin = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(self.0) + 0.7152 * lin(self.1) + 0.0722 * lin(self.2)
    }
}

/// Interpolate along evenly spaced colour stops; `t` in [0, 1].
pub fn ramp(stops: &[Rgb], t: f64) -> Rgb {
    match stops.len() {
        0 => Rgb(0, 0, 0),
        1 => stops[0],
        n => {
            let t = if t.is_finite() {
                t.clamp(0.0, 1.0)
            } else {
                0.0
            };
            let x = t * (n - 1) as f64;
            let i = (x.floor() as usize).min(n - 2);
            stops[i].lerp(stops[i + 1], x - i as f64)
        }
    }
}

/// Colour stops of the diverging scale (ColorBrewer RdBu, reversed: blue negative, red positive).
pub const DIVERGING: [Rgb; 5] = [
    Rgb(0x21, 0x66, 0xac),
    Rgb(0x92, 0xc5, 0xde),
    Rgb(0xf7, 0xf7, 0xf7),
    Rgb(0xf4, 0xa5, 0x82),
    Rgb(0xb2, 0x18, 0x2b),
];

/// Colour stops of the sequential scale (ColorBrewer Purples).
pub const SEQUENTIAL: [Rgb; 4] = [
    Rgb(0xfc, 0xfb, 0xfd),
    Rgb(0xda, 0xda, 0xeb),
    Rgb(0x9e, 0x9a, 0xc8),
    Rgb(0x54, 0x27, 0x8f),
];

/// Colour of a signed effect `v` on a symmetric domain `[-max, max]`.
pub fn diverging(v: f64, max: f64) -> Rgb {
    let max = if max > 0.0 { max } else { 1.0 };
    ramp(&DIVERGING, (v / max + 1.0) / 2.0)
}

/// Colour of a non-negative value `v` on `[0, max]`.
pub fn sequential(v: f64, max: f64) -> Rgb {
    let max = if max > 0.0 { max } else { 1.0 };
    ramp(&SEQUENTIAL, v / max)
}

/// Black or white, whichever contrasts more with `background` (WCAG contrast ratio).
pub fn text_on(background: Rgb) -> &'static str {
    let l = background.luminance();
    let with_black = (l + 0.05) / 0.05;
    let with_white = 1.05 / (l + 0.05);
    if with_black >= with_white {
        "#111111"
    } else {
        "#ffffff"
    }
}

/// Shorten `text` to at most `max` characters, ending with `…` when cut (for chart labels; the
/// full text goes into a `<title>`).
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Horizontal text alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Left-aligned.
    Start,
    /// Centred.
    Middle,
    /// Right-aligned.
    End,
}

impl Anchor {
    fn attr(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// An SVG document being written: a fixed-size canvas, an accessible title and description, and
/// a body of elements. Attribute values passed to the writers are the renderer's own constants;
/// every text argument is escaped.
#[derive(Debug, Clone)]
pub struct Svg {
    id: String,
    width: f64,
    height: f64,
    title: String,
    desc: String,
    body: String,
}

impl Svg {
    /// A canvas of `width` × `height` pixels. `id` (the renderer's own, unique in the page)
    /// prefixes the ids that `aria-labelledby` points at.
    pub fn new(id: &str, width: f64, height: f64, title: &str, desc: &str) -> Svg {
        Svg {
            id: id.to_string(),
            width,
            height,
            title: title.to_string(),
            desc: desc.to_string(),
            body: String::new(),
        }
    }

    /// Append raw markup produced by the writers below.
    pub fn push(&mut self, markup: &str) {
        self.body.push_str(markup);
    }

    /// A rectangle; `tooltip` becomes a `<title>` child (escaped).
    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, style: &str, tooltip: Option<&str>) {
        self.body.push_str(&rect(x, y, w, h, style, tooltip));
    }

    /// A straight line.
    pub fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, style: &str) {
        self.body.push_str(&line(x1, y1, x2, y2, style));
    }

    /// A text label (escaped).
    pub fn text(&mut self, x: f64, y: f64, content: &str, anchor: Anchor, style: &str) {
        self.body.push_str(&text(x, y, content, anchor, style));
    }

    /// A horizontal axis at `y` with ticks and gridlines down to `grid_to` (if given).
    pub fn x_axis(
        &mut self,
        scale: &LinearScale,
        y: f64,
        ticks: &[f64],
        label: impl Fn(f64) -> String,
        grid_to: Option<f64>,
    ) {
        self.line(
            scale.r0,
            y,
            scale.r1,
            y,
            r##"stroke="#8c959f" stroke-width="1""##,
        );
        for &t in ticks {
            let x = scale.map(t);
            if let Some(bottom) = grid_to {
                self.line(x, y, x, bottom, r##"stroke="#d0d7de" stroke-width="0.5""##);
            }
            self.line(x, y - 4.0, x, y, r##"stroke="#8c959f" stroke-width="1""##);
            self.text(x, y - 7.0, &label(t), Anchor::Middle, "class=\"tick\"");
        }
    }

    /// The finished `<svg>` element.
    pub fn finish(self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" style=\"max-width:100%;height:auto\" aria-labelledby=\"{id}-title {id}-desc\">",
            w = num(self.width),
            h = num(self.height),
            id = self.id
        );
        let _ = write!(
            out,
            "<title id=\"{id}-title\">{}</title><desc id=\"{id}-desc\">{}</desc>",
            escape(&self.title),
            escape(&self.desc),
            id = self.id
        );
        out.push_str(&self.body);
        out.push_str("</svg>");
        out
    }
}

/// `<rect>` markup; `style` holds the renderer's own attributes (fill, class).
pub fn rect(x: f64, y: f64, w: f64, h: f64, style: &str, tooltip: Option<&str>) -> String {
    let head = format!(
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" {style}",
        num(x),
        num(y),
        num(w.max(0.0)),
        num(h.max(0.0))
    );
    match tooltip {
        Some(t) => format!("{head}><title>{}</title></rect>", escape(t)),
        None => format!("{head}/>"),
    }
}

/// `<line>` markup.
pub fn line(x1: f64, y1: f64, x2: f64, y2: f64, style: &str) -> String {
    format!(
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" {style}/>",
        num(x1),
        num(y1),
        num(x2),
        num(y2)
    )
}

/// `<text>` markup with escaped content.
pub fn text(x: f64, y: f64, content: &str, anchor: Anchor, style: &str) -> String {
    format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"{}\" {style}>{}</text>",
        num(x),
        num(y),
        anchor.attr(),
        escape(content)
    )
}

/// `<title>` markup with escaped content (a tooltip for the enclosing element).
pub fn title(content: &str) -> String {
    format!("<title>{}</title>", escape(content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_stable() {
        assert_eq!(num(12.0), "12");
        assert_eq!(num(12.5), "12.5");
        assert_eq!(num(0.126), "0.13");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(f64::NAN), "0");
        assert_eq!(num(-3.456), "-3.46");
    }

    #[test]
    fn linear_scale_maps_and_clamps() {
        let s = LinearScale::new((0.0, 0.5), (100.0, 600.0));
        assert_eq!(s.map(0.0), 100.0);
        assert_eq!(s.map(0.25), 350.0);
        assert_eq!(s.map(0.5), 600.0);
        assert_eq!(s.map(2.0), 600.0, "clamped above");
        assert_eq!(s.map(-1.0), 100.0, "clamped below");
        // Reversed range (y axes grow downwards).
        let y = LinearScale::new((-1.0, 1.0), (200.0, 0.0));
        assert_eq!(y.map(0.0), 100.0);
        assert_eq!(y.map(1.0), 0.0);
        // Degenerate domain does not divide by zero.
        assert_eq!(LinearScale::new((1.0, 1.0), (0.0, 10.0)).map(1.0), 0.0);
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(
            LinearScale::new((0.0, 1.0), (0.0, 1.0)).ticks(5),
            vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        );
        assert_eq!(
            LinearScale::new((0.0, 0.35), (0.0, 1.0)).ticks(4),
            vec![0.0, 0.1, 0.2, 0.3]
        );
        assert_eq!(
            LinearScale::new((-1.0, 1.0), (0.0, 1.0)).ticks(4),
            vec![-1.0, -0.5, 0.0, 0.5, 1.0]
        );
        assert_eq!(nice_step(0.07), 0.1);
        assert_eq!(nice_step(0.15), 0.2);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(ceil_to(0.31, 0.1), 0.4);
        assert!((ceil_to(0.3, 0.1) - 0.3).abs() < 1e-12);
    }

    #[test]
    fn band_scale_splits_evenly() {
        let b = BandScale {
            n: 4,
            r0: 0.0,
            r1: 400.0,
            padding: 0.2,
        };
        assert_eq!(b.start(0), 10.0);
        assert_eq!(b.width(), 80.0);
        assert_eq!(b.start(3), 310.0);
        assert_eq!(b.centre(1), 150.0);
    }

    #[test]
    fn colours_interpolate_and_pick_readable_text() {
        let black = Rgb(0, 0, 0);
        let white = Rgb::from_hex("#FFFFFF").unwrap();
        assert_eq!(black.lerp(white, 0.5), Rgb(128, 128, 128));
        assert_eq!(Rgb::from_hex("#2166ac"), Some(DIVERGING[0]));
        assert_eq!(Rgb::from_hex("2166ac"), None);
        assert_eq!(Rgb::from_hex("#21é6ac"), None);
        assert_eq!(DIVERGING[4].hex(), "#b2182b");
        // Ends and midpoint of the diverging scale are its stops.
        assert_eq!(diverging(-1.0, 1.0), DIVERGING[0]);
        assert_eq!(diverging(0.0, 1.0), DIVERGING[2]);
        assert_eq!(diverging(0.5, 0.5), DIVERGING[4]);
        assert_eq!(diverging(9.0, 1.0), DIVERGING[4], "clamped");
        assert_eq!(sequential(0.0, 0.5), SEQUENTIAL[0]);
        assert_eq!(sequential(0.5, 0.5), SEQUENTIAL[3]);
        // WCAG luminance: white 1, black 0, mid grey #777777 ≈ 0.184.
        assert!((white.luminance() - 1.0).abs() < 1e-12);
        assert_eq!(black.luminance(), 0.0);
        assert!((Rgb(0x77, 0x77, 0x77).luminance() - 0.1845).abs() < 1e-3);
        assert_eq!(text_on(DIVERGING[0]), "#ffffff");
        assert_eq!(text_on(DIVERGING[2]), "#111111");
        assert_eq!(text_on(SEQUENTIAL[3]), "#ffffff");
    }

    #[test]
    fn writers_escape_text_and_tooltips() {
        let t = text(1.0, 2.0, "<b>&\"'", Anchor::End, "class=\"x\"");
        assert_eq!(
            t,
            "<text x=\"1\" y=\"2\" text-anchor=\"end\" class=\"x\">&lt;b&gt;&amp;&quot;&#39;</text>"
        );
        let r = rect(
            0.0,
            0.0,
            -5.0,
            3.0,
            "fill=\"#fff\"",
            Some("</title><script>"),
        );
        assert_eq!(
            r,
            "<rect x=\"0\" y=\"0\" width=\"0\" height=\"3\" fill=\"#fff\"><title>&lt;/title&gt;&lt;script&gt;</title></rect>"
        );
        let mut svg = Svg::new("f1", 100.0, 50.0, "A <chart>", "desc\u{202E}x");
        svg.line(0.0, 0.0, 10.0, 10.0, "stroke=\"#000\"");
        let out = svg.finish();
        assert!(out.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\""));
        assert!(out.contains("<title id=\"f1-title\">A &lt;chart&gt;</title>"));
        assert!(out.contains("<desc id=\"f1-desc\">desc\\u{202E}x</desc>"));
        assert!(out.contains("aria-labelledby=\"f1-title f1-desc\""));
        assert!(
            out.ends_with("<line x1=\"0\" y1=\"0\" x2=\"10\" y2=\"10\" stroke=\"#000\"/></svg>")
        );
    }

    #[test]
    fn clip_counts_characters_not_bytes() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééééééé", 4), "ééé…");
        assert_eq!(clip("abcdef", 6), "abcdef");
    }

    #[test]
    fn axis_draws_one_label_per_tick() {
        let mut svg = Svg::new("ax", 200.0, 50.0, "t", "d");
        let s = LinearScale::new((0.0, 1.0), (0.0, 200.0));
        svg.x_axis(&s, 20.0, &[0.0, 0.5, 1.0], |v| format!("{v}"), Some(40.0));
        let out = svg.finish();
        assert_eq!(out.matches("<text").count(), 3);
        assert!(out.contains(">0.5</text>"));
        assert!(out.contains("x1=\"100\" y1=\"20\" x2=\"100\" y2=\"40\""));
    }
}
