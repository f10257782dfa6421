//! The report's SVG plots (plotters): latency percentile distribution on a log axis, throughput
//! and availability per second, lock-hold distributions, latency over floor.

use hdrhistogram::Histogram;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;

/// Every plot's frame: its title, margin and the room its axis labels need.
fn framed<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, plotters::coord::Shift>,
    title: &'a str,
) -> ChartBuilder<'a, 'a, DB> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70);
    builder
}

/// The y values of every series.
fn ys<'s>(series: &'s [Series]) -> impl Iterator<Item = f64> + 's {
    series.iter().flat_map(|s| s.points.iter().map(|p| p.1))
}

/// One line or bar group of a plot.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// Latency (ms, log scale) against percentile, HdrHistogram style: x is the number of nines.
pub fn latency_distribution(
    path: &Path,
    title: &str,
    histograms: &[(&str, &Histogram<u64>)],
) -> PlotResult {
    let nines = |q: f64| -(1.0 - q).log10();
    let quantiles: Vec<f64> = (0..=300)
        .map(|i| 1.0 - 10f64.powf(-(i as f64) / 100.0))
        .collect();
    let series: Vec<Series> = histograms
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(name, h)| Series {
            name,
            points: quantiles
                .iter()
                .map(|q| (nines(*q), (h.value_at_quantile(*q).max(1)) as f64 / 1000.0))
                .collect(),
        })
        .collect();
    // Whole decades, so the log axis is labelled at 0.1, 1, 10, 100 ms …
    let max = ys(&series).fold(1.0, f64::max);
    let min = ys(&series).fold(max, f64::min).max(0.001);
    let (min, max) = (
        10f64.powf(min.log10().floor()),
        10f64.powf(max.log10().ceil()),
    );
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = framed(&root, title).build_cartesian_2d(0f64..3f64, (min..max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .y_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })
        .x_labels(4)
        .x_label_formatter(&|x| match x.round() as i32 {
            0 => "p0".into(),
            1 => "p90".into(),
            2 => "p99".into(),
            _ => "p99.9".into(),
        })
        .draw()?;
    draw_lines(
        &mut chart,
        series.as_slice(),
        SeriesLabelPosition::UpperLeft,
    )?;
    root.present()?;
    Ok(())
}

/// A shaded span of the x axis with its label (a fault window: from, to, "pause payment").
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub from: f64,
    pub to: f64,
    pub label: String,
}

/// Values per second (e.g. committed orders/s); `windows` are shaded and labelled.
pub fn timeline(
    path: &Path,
    title: &str,
    y_desc: &str,
    series: &[Series],
    windows: &[Window],
) -> PlotResult {
    lines(path, title, "second of the run", y_desc, series, windows)
}

/// Lines of (x, y) points on linear axes, with optional shaded x windows.
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    windows: &[Window],
) -> PlotResult {
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max)
        + 1.0;
    let y_max = ys(series).fold(1.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = framed(&root, title).build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()?;
    for (i, w) in windows.iter().enumerate() {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(w.from, 0.0), (w.to, y_max)],
            RGBColor(200, 200, 200).mix(0.5).filled(),
        )))?;
        // Labels alternate between two heights so that close windows stay readable.
        let y = y_max * if i % 2 == 0 { 0.97 } else { 0.90 };
        chart.draw_series(std::iter::once(Text::new(
            w.label.clone(),
            (w.from, y),
            ("sans-serif", 12).into_font().color(&BLACK),
        )))?;
    }
    draw_lines(&mut chart, series, SeriesLabelPosition::LowerRight)?;
    root.present()?;
    Ok(())
}

/// Draws each series as a coloured line with a legend entry (any y axis: linear or log).
fn draw_lines<'a, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    series: &[Series],
    legend_at: SeriesLabelPosition,
) -> PlotResult {
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(legend_at)
        .draw()?;
    Ok(())
}

/// Horizontal bars, one per (label, value), e.g. lock-hold p99 per participant or latency/floor;
/// each run of `per_color` consecutive bars shares a colour.
pub fn bars(
    path: &Path,
    title: &str,
    x_desc: &str,
    bars: &[(String, f64)],
    per_color: usize,
) -> PlotResult {
    let height = 90 + 34 * bars.len().max(1) as u32;
    let x_max = bars.iter().map(|b| b.1).fold(1e-9, f64::max) * 1.15;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let mut chart = framed(&root, title)
        .y_label_area_size(420)
        .build_cartesian_2d(0f64..x_max, (0..bars.len()).into_segmented())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_labels(bars.len().max(1))
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .disable_y_mesh()
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        let color = COLORS[(i / per_color.max(1)) % COLORS.len()];
        Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (*v, SegmentValue::Exact(i + 1)),
            ],
            color.mix(0.8).filled(),
        )
    }))?;
    root.present()?;
    Ok(())
}
