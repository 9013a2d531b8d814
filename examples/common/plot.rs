//! PNG plots for the examples, drawn without fonts (a bare machine may have none):
//! each plot's numbers are also written as CSV beside it, and its legend goes to
//! the console.
#![allow(dead_code)] // each example uses its own subset

use std::path::Path;

use plotters::prelude::*;

type Failed = Box<dyn std::error::Error>;

/// Colours of successive series, with their names for the legend.
const COLOURS: [(RGBColor, &str); 6] = [
    (BLUE, "blue"),
    (RED, "red"),
    (GREEN, "green"),
    (MAGENTA, "magenta"),
    (CYAN, "cyan"),
    (BLACK, "black"),
];

/// Curves of (x, y) points on shared axes (a frame, no ticks) as `path` (PNG),
/// and `path` with extension csv holding `series,x,y` rows.
pub fn curves(path: &Path, series: &[(&str, Vec<(f64, f64)>)]) -> Result<(), Failed> {
    let points = series.iter().flat_map(|(_, s)| s.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return Ok(()); // nothing to draw
    }
    let (w, h, m) = (800i32, 500i32, 20i32);
    let area = BitMapBackend::new(path, (w as u32, h as u32)).into_drawing_area();
    area.fill(&WHITE)?;
    area.draw(&Rectangle::new(
        [(m, m), (w - m, h - m)],
        BLACK.stroke_width(1),
    ))?;
    let px = |x: f64, y: f64| -> (i32, i32) {
        let fx = if x1 > x0 { (x - x0) / (x1 - x0) } else { 0.5 };
        let fy = if y1 > y0 { (y - y0) / (y1 - y0) } else { 0.5 };
        (
            m + (fx * f64::from(w - 2 * m)) as i32,
            h - m - (fy * f64::from(h - 2 * m)) as i32,
        )
    };
    let mut csv = String::from("series,x,y\n");
    for (i, (name, s)) in series.iter().enumerate() {
        let line: Vec<(i32, i32)> = s.iter().map(|&(x, y)| px(x, y)).collect();
        area.draw(&PathElement::new(
            line,
            COLOURS[i % COLOURS.len()].0.stroke_width(2),
        ))?;
        for (x, y) in s {
            csv.push_str(&format!("{name},{x},{y}\n"));
        }
    }
    area.present()?;
    std::fs::write(path.with_extension("csv"), csv)?;
    let legend: Vec<String> = series
        .iter()
        .zip(COLOURS.iter().cycle())
        .map(|((name, _), (_, colour))| format!("{colour} = {name}"))
        .collect();
    println!(
        "wrote {} ({}; x {x0:.3}..{x1:.3}, y {y0:.3}..{y1:.3})",
        path.display(),
        legend.join(", ")
    );
    Ok(())
}

/// Each point's y averaged with the `window − 1` points before it (fewer at the
/// start), so that noisy training losses can be told apart on one plot.
pub fn smooth(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    (0..points.len())
        .map(|i| {
            let w = &points[(i + 1).saturating_sub(window.max(1))..=i];
            (
                points[i].0,
                w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64,
            )
        })
        .collect()
}

/// A heat map of `rows` (each a row of weights in 0..=1): one cell per weight,
/// white for 0 to dark blue for 1; the rows top to bottom. Also writes the
/// weights as CSV beside it.
pub fn heat_map(path: &Path, rows: &[Vec<f32>]) -> Result<(), Failed> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    if rows.is_empty() || cols == 0 {
        return Ok(());
    }
    let cell = 32i32;
    let (w, h) = (cols as i32 * cell, rows.len() as i32 * cell);
    let area = BitMapBackend::new(path, (w as u32, h as u32)).into_drawing_area();
    area.fill(&WHITE)?;
    let mut csv = String::new();
    for (r, row) in rows.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let v = f64::from(v.clamp(0.0, 1.0));
            let shade = |full: f64| (255.0 - v * (255.0 - full)) as u8;
            let colour = RGBColor(shade(8.0), shade(48.0), shade(107.0));
            let (x, y) = (c as i32 * cell, r as i32 * cell);
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
