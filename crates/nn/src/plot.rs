//! PNG line charts (training curves, ROC curves) drawn with `plotters` into an `image` buffer,
//! and text labels for the pictures the workspace writes. The typeface (DejaVu Sans) is compiled
//! in and rendered by `ab_glyph`, so no font file or system library is needed at run time.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::{Error, Result};

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
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

/// Pixel ranges (x, y) of a chart's plot area.
type PlotArea = (Range<i32>, Range<i32>);

const W: u32 = 720;
const H: u32 = 440;

/// The one family name the bundled typeface is registered under.
const FAMILY: &str = "sans-serif";

/// Registers the bundled typeface with plotters (once per process). False if it could not be
/// parsed, which the tests rule out for the bundled file.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        static TTF: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
        register_font(FAMILY, FontStyle::Normal, TTF).is_ok()
    })
}

/// The label style for text `scale` times the base size (11 px).
fn text_style(color: &RGBColor, scale: i64) -> TextStyle<'_> {
    let px = 11.0 * scale.max(1) as f64;
    TextStyle::from((FAMILY, px).into_font()).color(color)
}

fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// Draws `text` with its top-left corner at `(x, y)`, `scale` times the base size (11 px).
/// Text outside the image is clipped.
pub fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, color: [u8; 3], scale: i64) {
    if !font_ready() || text.is_empty() {
        return;
    }
    let (w, h) = img.dimensions();
    let root = BitMapBackend::with_buffer(img.as_mut(), (w, h)).into_drawing_area();
    let (x, y) = (
        x.clamp(-1 << 20, 1 << 20) as i32,
        y.clamp(-1 << 20, 1 << 20) as i32,
    );
    // Drawing into memory only fails for a font error, and then there is nothing to draw.
    let _ = root.draw_text(text, &text_style(&rgb(color), scale), (x, y));
}

/// Width and height in pixels that [`draw_text`] covers for `text` at `scale`.
pub fn text_size(text: &str, scale: i64) -> (u32, u32) {
    if !font_ready() {
        return (0, 0);
    }
    let mut probe = [0u8; 3];
    let root = BitMapBackend::with_buffer(&mut probe, (1, 1)).into_drawing_area();
    root.estimate_text_size(text, &text_style(&BLACK, scale))
        .unwrap_or((0, 0))
}

/// A linear axis' tick label: whole numbers without decimals, others with up to three
/// significant digits and no trailing zeros.
fn tick(v: f64) -> String {
    if v == v.round() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else if v.abs() >= 1e4 || v.abs() < 1e-3 {
        format!("{v:.2e}")
    } else {
        let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 5) as usize;
        let text = format!("{v:.decimals$}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
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

    /// The x range drawn (in data units, positive on a log axis), the y range, and how an x
    /// value is placed (clamped to the smallest decade on a log axis).
    fn ranges(&self) -> ((f64, f64), (f64, f64), impl Fn(f64) -> f64 + use<>) {
        // On a logarithmic axis the smallest positive x, down to its decade, is the left edge.
        let floor = 10f64.powf(
            self.series
                .iter()
                .flat_map(|s| s.points.iter())
                .map(|p| p.0)
                .filter(|x| x.is_finite() && *x > 0.0)
                .fold(1.0f64, f64::min)
                .max(LOG_FLOOR)
                .log10()
                .floor(),
        );
        let x_log = self.x_log;
        let place = move |x: f64| if x_log { x.max(floor) } else { x };
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|&(x, y)| (place(x), y)))
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        let bounds = |v: &mut dyn Iterator<Item = f64>| {
            v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            })
        };
        let (mut x0, mut x1) = bounds(&mut pts.iter().map(|p| p.0));
        let (mut y0, mut y1) = self
            .y_range
            .unwrap_or_else(|| bounds(&mut pts.iter().map(|p| p.1)));
        if !(x0.is_finite() && x1.is_finite()) {
            (x0, x1) = if x_log { (floor, 1.0) } else { (0.0, 1.0) };
        }
        if !(y0.is_finite() && y1.is_finite()) {
            (y0, y1) = (0.0, 1.0);
        }
        if x1 <= x0 {
            x1 = if x_log { x0 * 10.0 } else { x0 + 1.0 };
        }
        if y1 <= y0 {
            y1 = y0 + 1.0;
        }
        ((x0, x1), (y0, y1), place)
    }

    /// Draws the chart on `root`; returns the plot area's pixel ranges (x, y).
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<PlotArea, String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let ((x0, x1), (y0, y1), place) = self.ranges();
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(&self.title, (FAMILY, 20).into_font())
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64);
        let grey = RGBColor(200, 200, 200);
        let label_color = RGBColor(60, 60, 60);
        let label = text_style(&label_color, 1);
        let clamp_y = |y: f64| y.clamp(y0, y1);
        let x_tick = |v: &f64| {
            if self.x_log {
                format!("{v:.0e}")
            } else {
                tick(*v)
            }
        };
        // The log and linear charts differ in type only: one body for both.
        macro_rules! finish {
            ($chart:ident) => {{
                $chart
                    .configure_mesh()
                    .x_desc(self.x_label.as_str())
                    .y_desc(self.y_label.as_str())
                    .label_style(label.clone())
                    .light_line_style(TRANSPARENT)
                    .bold_line_style(grey)
                    .x_labels(6)
                    .y_labels(6)
                    .x_label_formatter(&x_tick)
                    .y_label_formatter(&|v| tick(*v))
                    .draw()
                    .map_err(|e| err(&e))?;
                for s in &self.series {
                    let color = rgb(s.color);
                    let points = s
                        .points
                        .iter()
                        .map(|&(x, y)| (place(x), clamp_y(y)))
                        .filter(|p| p.0.is_finite() && p.1.is_finite());
                    $chart
                        .draw_series(LineSeries::new(points, color.stroke_width(2)))
                        .map_err(|e| err(&e))?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                }
                if !self.series.is_empty() {
                    // ROC curves (log axis) rise to the top right: their legend sits below.
                    $chart
                        .configure_series_labels()
                        .position(if self.x_log {
                            SeriesLabelPosition::LowerRight
                        } else {
                            SeriesLabelPosition::UpperRight
                        })
                        .background_style(WHITE.mix(0.85))
                        .border_style(grey)
                        .label_font(label.clone())
                        .draw()
                        .map_err(|e| err(&e))?;
                }
                $chart.plotting_area().get_pixel_range()
            }};
        }
        let ranges = if self.x_log {
            let mut chart = builder
                .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(|e| err(&e))?;
            finish!(chart)
        } else {
            let mut chart = builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| err(&e))?;
            finish!(chart)
        };
        root.present().map_err(|e| err(&e))?;
        Ok(ranges)
    }

    /// Renders the chart to an image; also the plot area's pixel ranges (x, y).
    fn render_with_area(&self) -> Result<(RgbImage, PlotArea)> {
        if !font_ready() {
            return Err(Error::arg(
                "chart",
                "the bundled typeface could not be read",
            ));
        }
        let mut buf = vec![255u8; (W * H * 3) as usize];
        let area = {
            let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
            self.draw(&root)
                .map_err(|e| Error::arg("chart", format!("cannot draw {:?}: {e}", self.title)))?
        };
        let img = RgbImage::from_raw(W, H, buf)
            .ok_or_else(|| Error::arg("chart", "drawing buffer of the wrong size"))?;
        Ok((img, area))
    }

    /// Renders the chart to an image.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the chart cannot be drawn (the bundled font unreadable).
    pub fn render(&self) -> Result<RgbImage> {
        Ok(self.render_with_area()?.0)
    }

    /// Renders and writes a PNG (atomically).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file, or as [`Chart::render`].
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let img = self.render()?;
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
        (img, (xs, ys)): &(RgbImage, PlotArea),
        color: [u8; 3],
        (fx0, fx1): (f64, f64),
        (fy0, fy1): (f64, f64),
    ) -> bool {
        let (pw, ph) = ((xs.end - xs.start) as f64, (ys.end - ys.start) as f64);
        let (left, bottom) = (xs.start as f64, ys.end as f64);
        let px = (left + fx0 * pw) as u32..=(left + fx1 * pw) as u32;
        let py = (bottom - fy1 * ph) as u32..=(bottom - fy0 * ph) as u32;
        px.into_iter()
            .any(|x| py.clone().any(|y| img.get_pixel(x, y).0 == color))
    }

    #[test]
    fn a_logarithmic_axis_spreads_the_small_rates_over_decades() {
        // Flat at 0.5 from FAR 1e-3 to 1e-2, then up to 1 at FAR 1.
        let points = vec![(0.0, 0.0), (1e-3, 0.5), (1e-2, 0.5), (1.0, 1.0)];
        let mut chart = Chart::lines("ROC", "FAR", "TAR", vec![("A", points)]);
        chart.y_range = Some((0.0, 1.0));
        let color = PALETTE[0];
        let linear = chart.render_with_area().unwrap();
        chart.x_log = true;
        let log = chart.render_with_area().unwrap();
        // Decades 1e-3..1: the flat part fills the first third of the axis on a log scale,
        // and is squeezed into the first percent on a linear one.
        assert!(coloured_in(&log, color, (0.1, 0.3), (0.47, 0.53)));
        assert!(!coloured_in(&linear, color, (0.1, 0.3), (0.47, 0.53)));
    }

    #[test]
    fn labels_are_drawn_with_the_bundled_typeface() {
        assert!(font_ready());
        let mut img = RgbImage::from_pixel(120, 30, image::Rgb([255, 255, 255]));
        draw_text(&mut img, 2, 2, "Person 7 (unknown)", [0, 0, 0], 1);
        let dark = img.pixels().filter(|p| p.0[0] < 128).count();
        let (w, h) = text_size("Person 7 (unknown)", 1);
        // Ink covers part of the text box, and the box is about as tall as the font size.
        assert!(
            dark > 50 && dark < (w * h) as usize,
            "{dark} dark pixels, box {w}x{h}"
        );
        assert!((8..=16).contains(&h) && w > 60, "box {w}x{h}");
        // Twice the scale, about twice the width.
        let (w2, _) = text_size("Person 7 (unknown)", 2);
        assert!(w2 > w * 3 / 2, "{w} -> {w2}");
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick(10.0), "10");
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(-0.25), "-0.25");
        assert_eq!(tick(2.25), "2.25");
        assert_eq!(tick(123.4), "123");
        assert_eq!(tick(0.0001), "1.00e-4");
    }

    #[test]
    fn empty_and_degenerate_charts_still_render() {
        let empty = Chart::lines("nothing", "x", "y", vec![]);
        assert_eq!(empty.render().unwrap().dimensions(), (W, H));
        let mut one = Chart::lines("one point", "x", "y", vec![("a", vec![(0.0, 0.0)])]);
        assert!(one.render().is_ok());
        one.x_log = true;
        assert!(one.render().is_ok());
        let nan = Chart::lines(
            "nan",
            "x",
            "y",
            vec![("a", vec![(f64::NAN, 1.0), (1.0, f64::INFINITY)])],
        );
        assert!(nan.render().is_ok());
    }
}
