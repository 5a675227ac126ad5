//! The `simulate --svg` figure: two charts side by side, drawn with plotters into an SVG string.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 500;
const S3T_COLOR: RGBColor = RGBColor(31, 119, 180);
const SISA_COLOR: RGBColor = RGBColor(214, 39, 40);
const FONT: &str = "sans-serif";

/// What the figure shows; all means are over the Monte Carlo runs.
#[derive(Debug)]
pub struct Figure<'a> {
    pub shards: u16,
    pub slices: u16,
    pub strategy: &'a str,
    /// Where the deletion prior came from, e.g. "uniform prior".
    pub prior: String,
    /// (budget B, mean deletions until all shards are offline) for S3T, by increasing B.
    pub survival: Vec<(u64, f64)>,
    /// The same mean for SISA (one identity-order sequence per shard), independent of B.
    pub sisa_survival: f64,
    /// The budget of `s3t_curve`.
    pub curve_budget: usize,
    /// (deletions r, mean served prefix length) for S3T at `curve_budget` and for SISA.
    pub s3t_curve: Vec<(u64, f64)>,
    pub sisa_curve: Vec<(u64, f64)>,
}

type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;

/// Renders the figure as an SVG document.
pub fn render_svg(fig: &Figure) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let title = format!(
            "S3T vs SISA: m = {} shards, L = {} slices, strategy {}, {}",
            fig.shards, fig.slices, fig.strategy, fig.prior
        );
        let body = root.titled(&title, (FONT, 20))?;
        let (left, right) = body.split_horizontally(WIDTH / 2);
        survival_chart(&left, fig)?;
        prefix_chart(&right, fig)?;
        root.present()?;
    }
    Ok(svg)
}

/// Chart 1: deletions survived against the budget, with SISA as a horizontal reference.
fn survival_chart(area: &Area, fig: &Figure) -> Result<()> {
    let lo = fig.survival.first().map_or(1, |p| p.0);
    // A single budget still needs a non-empty axis.
    let hi = fig.survival.last().map_or(lo, |p| p.0).max(lo + 1);
    // Headroom above the curves keeps the upper-left legend clear of them (S3T rises with B, SISA is lower).
    let top = fig.survival.iter().map(|p| p.1).fold(fig.sisa_survival, f64::max).max(1.0) * 1.3;
    let mut chart = ChartBuilder::on(area)
        .caption("Deletions survived until all shards are offline", (FONT, 16))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(lo..hi, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("budget B (sequences per shard)")
        .y_desc("mean deletions until all shards offline")
        .draw()?;
    chart
        .draw_series(LineSeries::new(fig.survival.iter().copied(), S3T_COLOR.stroke_width(2)).point_size(3))?
        .label(format!("S3T ({})", fig.strategy))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], S3T_COLOR.stroke_width(2)));
    chart
        .draw_series(DashedLineSeries::new(
            [(lo, fig.sisa_survival), (hi, fig.sisa_survival)],
            8,
            5,
            SISA_COLOR.stroke_width(2),
        ))?
        .label("SISA (one sequence per shard)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], SISA_COLOR.stroke_width(2)));
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Chart 2: how much of the model stack is still served after r deletions.
fn prefix_chart(area: &Area, fig: &Figure) -> Result<()> {
    let end = fig.s3t_curve.iter().chain(&fig.sisa_curve).map(|p| p.0).max().unwrap_or(0).max(1);
    let mut chart = ChartBuilder::on(area)
        .caption("Served prefix after r deletions", (FONT, 16))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0..end, 0.0..f64::from(fig.slices) * 1.05)?;
    chart.configure_mesh().x_desc("deletions r").y_desc("mean served prefix length (layer groups)").draw()?;
    chart
        .draw_series(LineSeries::new(fig.s3t_curve.iter().copied(), S3T_COLOR.stroke_width(2)))?
        .label(format!("S3T ({}, B = {})", fig.strategy, fig.curve_budget))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], S3T_COLOR.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(fig.sisa_curve.iter().copied(), SISA_COLOR.stroke_width(2)))?
        .label("SISA")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], SISA_COLOR.stroke_width(2)));
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn legend<'a, 'b: 'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<()>
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}
