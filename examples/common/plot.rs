//! PNG plots for the examples: titled charts with axes, ticks, labels and a
//! legend, text drawn from a font the repository carries (DejaVu Sans, in
//! `fonts/` with its licence), so a machine without fonts draws them too. Each
//! plot's numbers are also written as CSV beside it.
#![allow(dead_code)] // each example uses its own subset

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

type Failed = Box<dyn std::error::Error>;

const FONT: &str = "sans-serif";

/// Colours of successive series.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 90, 200),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn fonts() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("fonts/DejaVuSans.ttf");
        // The bundled file is a valid font: registering it cannot fail.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, bytes);
    });
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Style {
    /// Per-step values: a faint line of the raw points under their moving
    /// average ([`smoothed`]).
    Noisy,
    /// A line with a marker at every point (per-epoch figures).
    Points,
    /// As `Points`, on the right-hand axis.
    Right,
}

/// One named series of (x, y) points; series of one `group` share a colour.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: &'a [(f64, f64)],
    pub style: Style,
    pub group: usize,
}

/// The chart's title and axis labels; `right` labels the right-hand axis that
/// [`Style::Right`] series use; `legend` is where the legend goes (where the
/// curves leave room).
pub struct Chart<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
    pub right: Option<&'a str>,
    pub legend: Legend,
}

pub use plotters::chart::SeriesLabelPosition as Legend;

/// The range of the finite values, widened by 5% (or around a single value).
fn range(values: impl Iterator<Item = f64>) -> Option<std::ops::Range<f64>> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return None;
    }
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.5 };
    Some(lo - pad..hi + pad)
}

/// The exponential moving average of `points`' y over a window of about a
/// fortieth of the series (1 to 50 points), debiased as Adam debiases its
/// moments so that it follows the first points instead of starting from zero.
pub fn smoothed(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let window = (points.len() / 40).clamp(1, 50) as f64;
    let decay = 1.0 - 2.0 / (window + 1.0);
    let mut e = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            e = decay * e + (1.0 - decay) * y;
            (x, e / (1.0 - decay.powi(i as i32 + 1)))
        })
        .collect()
}

/// `series` on one chart as `path` (PNG), and `path` with extension csv holding
/// `series,x,y` rows of the raw points.
pub fn curves(path: &Path, chart: &Chart, series: &[Series]) -> Result<(), Failed> {
    fonts();
    let left = series.iter().filter(|s| s.style != Style::Right);
    let right = series.iter().filter(|s| s.style == Style::Right);
    let all_x = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (Some(xs), Some(ys)) = (
        range(all_x),
        range(left.flat_map(|s| s.points.iter().map(|p| p.1))),
    ) else {
        return Ok(()); // nothing to draw
    };
    let rs = range(right.flat_map(|s| s.points.iter().map(|p| p.1))).unwrap_or(0.0..1.0);
    let xs_span = xs.end - xs.start;
    let root = BitMapBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(&root)
        .caption(chart.title, (FONT, 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .right_y_label_area_size(if chart.right.is_some() { 70 } else { 0 })
        .build_cartesian_2d(xs.clone(), ys)?
        .set_secondary_coord(xs, rs);
    // Whole numbers where the axis spans more than a few units (steps, minutes).
    let tick = |v: &f64| {
        if (xs_span >= 10.0) || v.fract() == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    };
    c.configure_mesh()
        .x_label_formatter(&tick)
        .x_desc(chart.x)
        .y_desc(chart.y)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    if let Some(label) = chart.right {
        c.configure_secondary_axes()
            .y_desc(label)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
    }
    let mut csv = String::from("series,x,y\n");
    // A series without points (say, a curve not asked for) gets no legend entry.
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let colour = COLOURS[s.group % COLOURS.len()];
        let points = s
            .points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite());
        match s.style {
            Style::Noisy => {
                c.draw_series(LineSeries::new(points, colour.mix(0.25).stroke_width(1)))?;
                c.draw_series(LineSeries::new(smoothed(s.points), colour.stroke_width(3)))?
                    .label(format!("{} (moving average)", s.name))
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 24, y)], colour.stroke_width(3))
                    });
            }
            Style::Points => {
                c.draw_series(LineSeries::new(points, colour.stroke_width(2)).point_size(4))?
                    .label(s.name)
                    .legend(move |(x, y)| Circle::new((x + 12, y), 4, colour.filled()));
            }
            Style::Right => {
                c.draw_secondary_series(
                    LineSeries::new(points, colour.stroke_width(2)).point_size(4),
                )?
                .label(format!("{} (right axis)", s.name))
                .legend(move |(x, y)| Circle::new((x + 12, y), 4, colour.filled()));
            }
        }
        for (x, y) in s.points {
            csv.push_str(&format!("{},{x},{y}\n", s.name));
        }
    }
    c.configure_series_labels()
        .position(chart.legend.clone())
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()?;
    root.present()?;
    std::fs::write(path.with_extension("csv"), csv)?;
    println!("wrote {} (and its numbers as CSV)", path.display());
    Ok(())
}

/// A heat map of `rows` (each a row of weights in 0..=1): one cell per weight,
/// white for 0 to dark blue for 1, the rows labelled with `row_labels` down the
/// left and the columns with `col_labels` along the top, under `title`. Also
/// writes the weights as CSV beside it.
pub fn heat_map(
    path: &Path,
    title: &str,
    rows: &[Vec<f32>],
    row_labels: &[String],
    col_labels: &[String],
) -> Result<(), Failed> {
    fonts();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    if rows.is_empty() || cols == 0 {
        return Ok(());
    }
    let cell = 34i32;
    let label_w = 12
        + 9 * row_labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(1) as i32;
    let label_h = 12
        + 9 * col_labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(1) as i32;
    let (top, left) = (40 + label_h, label_w);
    let title_w = 20 + 10 * title.chars().count() as i32;
    let w = (left + cols as i32 * cell + 20).max(title_w);
    let h = top + rows.len() as i32 * cell + 20;
    let area = BitMapBackend::new(path, (w as u32, h as u32)).into_drawing_area();
    area.fill(&WHITE)?;
    area.draw(&Text::new(
        title.to_string(),
        (10, 8),
        (FONT, 18).into_font(),
    ))?;
    let small = (FONT, 15).into_font();
    let vertical = (FONT, 15).into_font().transform(FontTransform::Rotate270);
    for (c, label) in col_labels.iter().enumerate().take(cols) {
        let x = left + c as i32 * cell + cell / 2 - 8;
        area.draw(&Text::new(label.clone(), (x, top - 6), vertical.clone()))?;
    }
    let mut csv = String::new();
    for (r, row) in rows.iter().enumerate() {
        let y = top + r as i32 * cell;
        if let Some(label) = row_labels.get(r) {
            area.draw(&Text::new(
                label.clone(),
                (6, y + cell / 2 - 8),
                small.clone(),
            ))?;
        }
        for (c, &v) in row.iter().enumerate() {
            let v = f64::from(v.clamp(0.0, 1.0));
            let shade = |full: f64| (255.0 - v * (255.0 - full)) as u8;
            let colour = RGBColor(shade(8.0), shade(48.0), shade(107.0));
            let x = left + c as i32 * cell;
            area.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                colour.filled(),
            ))?;
        }
        let line: Vec<String> = row.iter().map(|v| format!("{v:.4}")).collect();
        csv.push_str(&line.join(","));
        csv.push('\n');
    }
    area.present()?;
    std::fs::write(path.with_extension("csv"), csv)?;
    Ok(())
}
