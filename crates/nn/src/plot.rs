//! Small PNG line charts (training curves, ROC curves) drawn with the `image` crate, labelled
//! with a built-in 5x7 pixel font so that no font file or system library is needed.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::{Error, Result};

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text (upper-case letters, digits and `.,:-_%()/=+` render; others become spaces).
    pub name: String,
    /// Points.
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub color: [u8; 3],
}

/// A chart: title, axis labels and series, plotted over the data's bounding box.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Lines.
    pub series: Vec<Series>,
    /// Fixed y range, if any.
    pub y_range: Option<(f64, f64)>,
    /// A logarithmic x axis with a tick per decade (ROC curves over false-accept rates, as
    /// face papers draw them): x values at or below zero sit on the smallest decade shown.
    pub x_log: bool,
}

/// The smallest decade a logarithmic axis shows.
const LOG_FLOOR: f64 = 1e-6;

/// Distinct colours for series.
pub const PALETTE: [[u8; 3]; 6] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
];

const W: u32 = 720;
const H: u32 = 440;
const LEFT: u32 = 70;
const RIGHT: u32 = 20;
const TOP: u32 = 40;
const BOTTOM: u32 = 50;

fn glyph(c: char) -> [u8; 7] {
    // Rows of 5 bits, most significant bit on the left.
    match c.to_ascii_uppercase() {
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [30, 1, 1, 14, 1, 1, 30],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        'A' => [14, 17, 17, 31, 17, 17, 17],
        'B' => [30, 17, 17, 30, 17, 17, 30],
        'C' => [14, 17, 16, 16, 16, 17, 14],
        'D' => [28, 18, 17, 17, 17, 18, 28],
        'E' => [31, 16, 16, 30, 16, 16, 31],
        'F' => [31, 16, 16, 30, 16, 16, 16],
        'G' => [14, 17, 16, 23, 17, 17, 15],
        'H' => [17, 17, 17, 31, 17, 17, 17],
        'I' => [14, 4, 4, 4, 4, 4, 14],
        'J' => [7, 2, 2, 2, 2, 18, 12],
        'K' => [17, 18, 20, 24, 20, 18, 17],
        'L' => [16, 16, 16, 16, 16, 16, 31],
        'M' => [17, 27, 21, 21, 17, 17, 17],
        'N' => [17, 17, 25, 21, 19, 17, 17],
        'O' => [14, 17, 17, 17, 17, 17, 14],
        'P' => [30, 17, 17, 30, 16, 16, 16],
        'Q' => [14, 17, 17, 17, 21, 18, 13],
        'R' => [30, 17, 17, 30, 20, 18, 17],
        'S' => [15, 16, 16, 14, 1, 1, 30],
        'T' => [31, 4, 4, 4, 4, 4, 4],
        'U' => [17, 17, 17, 17, 17, 17, 14],
        'V' => [17, 17, 17, 17, 17, 10, 4],
        'W' => [17, 17, 17, 21, 21, 21, 10],
        'X' => [17, 17, 10, 4, 10, 17, 17],
        'Y' => [17, 17, 10, 4, 4, 4, 4],
        'Z' => [31, 1, 2, 4, 8, 16, 31],
        '.' => [0, 0, 0, 0, 0, 12, 12],
        ',' => [0, 0, 0, 0, 12, 4, 8],
        ':' => [0, 12, 12, 0, 12, 12, 0],
        '-' => [0, 0, 0, 31, 0, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 31],
        '%' => [24, 25, 2, 4, 8, 19, 3],
        '(' => [2, 4, 8, 8, 8, 4, 2],
        ')' => [8, 4, 2, 2, 2, 4, 8],
        '/' => [1, 1, 2, 4, 8, 16, 16],
        '=' => [0, 0, 31, 0, 31, 0, 0],
        '+' => [0, 4, 4, 31, 4, 4, 0],
        _ => [0; 7],
    }
}

/// Draws `text` with its top-left corner at `(x, y)`, each font pixel `scale` pixels wide.
pub fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, color: [u8; 3], scale: i64) {
    for (i, c) in text.chars().enumerate() {
        let g = glyph(c);
        for (row, bits) in g.iter().enumerate() {
            for col in 0..5 {
                if bits & (16 >> col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            put(
                                img,
                                x + (i as i64 * 6 + col) * scale + dx,
                                y + row as i64 * scale + dy,
                                color,
                            );
                        }
                    }
                }
            }
        }
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, Rgb(c));
    }
}

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3], thick: bool) {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as i64).max(1);
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (x, y) = (
            (x0 + t * (x1 - x0)).round() as i64,
            (y0 + t * (y1 - y0)).round() as i64,
        );
        put(img, x, y, c);
        if thick {
            put(img, x + 1, y, c);
            put(img, x, y + 1, c);
        }
    }
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.round() && v.abs() < 1e4 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A vertical grid line at `x` pixels with its label under the axis.
fn x_tick(img: &mut RgbImage, x: f64, label: &str) {
    line(
        img,
        (x, TOP as f64),
        (x, (H - BOTTOM) as f64),
        [200, 200, 200],
        false,
    );
    draw_text(
        img,
        x as i64 - 8,
        (H - BOTTOM + 6) as i64,
        label,
        [60, 60, 60],
        1,
    );
}

impl Chart {
    /// A chart of named lines, coloured from [`PALETTE`] in order, scaled to the data.
    pub fn lines(
        title: &str,
        x_label: &str,
        y_label: &str,
        lines: Vec<(&str, Vec<(f64, f64)>)>,
    ) -> Chart {
        let series = lines
            .into_iter()
            .enumerate()
            .map(|(i, (name, points))| Series {
                name: name.to_string(),
                points,
                color: PALETTE[i % PALETTE.len()],
            })
            .collect();
        Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series,
            y_range: None,
            x_log: false,
        }
    }

    /// Renders the chart to an image.
    pub fn render(&self) -> RgbImage {
        let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
        // On a logarithmic axis the smallest positive x, down to its decade, is the left edge.
        let decade_floor = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .map(|p| p.0)
            .filter(|x| x.is_finite() && *x > 0.0)
            .fold(1.0f64, f64::min)
            .max(LOG_FLOOR)
            .log10()
            .floor();
        let tx = |x: f64| {
            if self.x_log {
                x.max(10f64.powf(decade_floor)).log10()
            } else {
                x
            }
        };
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|&(x, y)| (tx(x), y)))
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        let (mut x0, mut x1) = pts
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.0), b.max(p.0))
            });
        let (mut y0, mut y1) = self.y_range.unwrap_or_else(|| {
            pts.iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                    (a.min(p.1), b.max(p.1))
                })
        });
        if !(x0.is_finite() && x1.is_finite()) {
            (x0, x1) = (0.0, 1.0);
        }
        if !(y0.is_finite() && y1.is_finite()) {
            (y0, y1) = (0.0, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if y1 <= y0 {
            y1 = y0 + 1.0;
        }
        let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
        let sx = |x: f64| LEFT as f64 + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| TOP as f64 + ph - (y - y0) / (y1 - y0) * ph;
        let grey = [200, 200, 200];
        for k in 0..=4 {
            let fy = y0 + (y1 - y0) * k as f64 / 4.0;
            line(
                &mut img,
                (LEFT as f64, sy(fy)),
                ((W - RIGHT) as f64, sy(fy)),
                grey,
                false,
            );
            draw_text(
                &mut img,
                4,
                sy(fy) as i64 - 3,
                &fmt_tick(fy),
                [60, 60, 60],
                1,
            );
            if !self.x_log {
                let fx = x0 + (x1 - x0) * k as f64 / 4.0;
                x_tick(&mut img, sx(fx), &fmt_tick(fx));
            }
        }
        if self.x_log {
            let mut d = x0.ceil();
            while d <= x1 + 1e-9 {
                x_tick(&mut img, sx(d), &format!("1E{d:.0}"));
                d += 1.0;
            }
        }
        let black = [0, 0, 0];
        line(
            &mut img,
            (LEFT as f64, (H - BOTTOM) as f64),
            ((W - RIGHT) as f64, (H - BOTTOM) as f64),
            black,
            false,
        );
        line(
            &mut img,
            (LEFT as f64, TOP as f64),
            (LEFT as f64, (H - BOTTOM) as f64),
            black,
            false,
        );
        draw_text(&mut img, LEFT as i64, 10, &self.title, black, 2);
        draw_text(
            &mut img,
            (W / 2) as i64 - 30,
            (H - 22) as i64,
            &self.x_label,
            black,
            1,
        );
        draw_text(&mut img, 4, (TOP - 14) as i64, &self.y_label, black, 1);
        for (i, s) in self.series.iter().enumerate() {
            let mut prev: Option<(f64, f64)> = None;
            for (x, y) in s
                .points
                .iter()
                .map(|&(x, y)| (tx(x), y))
                .filter(|p| p.0.is_finite() && p.1.is_finite())
            {
                let p = (sx(x), sy(y.clamp(y0, y1)));
                if let Some(q) = prev {
                    line(&mut img, q, p, s.color, true);
                }
                prev = Some(p);
            }
            // ROC curves (log axis) rise to the top right: their legend sits at the bottom.
            let ly = if self.x_log {
                (H - BOTTOM) as i64 - 14 * (self.series.len() - i) as i64 - 4
            } else {
                TOP as i64 + 8 + 14 * i as i64
            };
            line(
                &mut img,
                ((W - 200) as f64, ly as f64 + 3.0),
                ((W - 180) as f64, ly as f64 + 3.0),
                s.color,
                true,
            );
            draw_text(&mut img, (W - 174) as i64, ly, &s.name, s.color, 1);
        }
        img
    }

    /// Renders and writes a PNG (atomically).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let img = self.render();
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::corrupt(path, format!("cannot encode PNG: {e}")))?;
        crate::checkpoint::write_atomic(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a pixel of `color` lies in the plot-area rectangle of fractions
    /// `[fx0, fx1] x [fy0, fy1]` (y up, as the data is drawn).
    fn coloured_in(
        img: &RgbImage,
        color: [u8; 3],
        (fx0, fx1): (f64, f64),
        (fy0, fy1): (f64, f64),
    ) -> bool {
        let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
        let xs = (LEFT as f64 + fx0 * pw) as u32..=(LEFT as f64 + fx1 * pw) as u32;
        let ys = (TOP as f64 + ph - fy1 * ph) as u32..=(TOP as f64 + ph - fy0 * ph) as u32;
        xs.into_iter()
            .any(|x| ys.clone().any(|y| img.get_pixel(x, y).0 == color))
    }

    #[test]
    fn a_logarithmic_axis_spreads_the_small_rates_over_decades() {
        // Flat at 0.5 from FAR 1e-3 to 1e-2, then up to 1 at FAR 1.
        let points = vec![(0.0, 0.0), (1e-3, 0.5), (1e-2, 0.5), (1.0, 1.0)];
        let mut chart = Chart::lines("ROC", "FAR", "TAR", vec![("A", points)]);
        chart.y_range = Some((0.0, 1.0));
        let color = PALETTE[0];
        let linear = chart.render();
        chart.x_log = true;
        let log = chart.render();
        // Decades 1e-3..1: the flat part fills the first third of the axis on a log scale,
        // and is squeezed into the first percent on a linear one.
        assert!(coloured_in(&log, color, (0.1, 0.3), (0.47, 0.53)));
        assert!(!coloured_in(&linear, color, (0.1, 0.3), (0.47, 0.53)));
    }
}
