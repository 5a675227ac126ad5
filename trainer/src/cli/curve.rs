//! `trainer curve`: accuracy after r random deletions, S3T against SISA without retraining, on one stream.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use plotters::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use s3t::model::serve::Evaluator;
use s3t::{Action, SampleId};

use crate::bundle_dir::{Bundle, Serving};
use crate::cli::EvalOptions;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory (its ledger is not touched: the curve starts from the state after the ledger's
    /// deletions and retrains, and draws further deletions among the samples not deleted yet).
    pub bundle: PathBuf,
    /// Deletion counts to report: `0,100,200`, or `0..1000:100` (from..to inclusive, step).
    #[arg(long, default_value = "0..400:25")]
    pub deletions: String,
    /// Seed of the random deletion stream.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub eval: EvalOptions,
    /// Also draw the curve into an SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// One point of the curve.
#[derive(Debug, serde::Serialize)]
pub struct Point {
    pub deletions: usize,
    pub s3t_accuracy: Option<f64>,
    pub sisa_accuracy: Option<f64>,
    pub s3t_live_shards: usize,
    pub sisa_live_shards: usize,
    pub s3t_mean_prefix: f64,
    pub sisa_mean_prefix: f64,
}

/// `0,100,200` or `FROM..TO:STEP`; sorted, deduplicated.
pub fn parse_deletions(text: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim) {
        if let Some((range, step)) = item.split_once(':') {
            let (lo, hi) =
                range.split_once("..").with_context(|| format!("--deletions {item:?}: expected FROM..TO:STEP"))?;
            let num = |s: &str| {
                s.trim().parse::<usize>().with_context(|| format!("--deletions {item:?}: {s:?} is not a count"))
            };
            let (lo, hi, step) = (num(lo)?, num(hi)?, num(step)?);
            ensure!(step > 0 && lo <= hi, "--deletions {item:?}: needs FROM ≤ TO and STEP ≥ 1");
            ensure!((hi - lo) / step < 100_000, "--deletions {item:?}: too many points");
            out.extend((lo..=hi).step_by(step));
        } else {
            out.push(item.parse().with_context(|| format!("--deletions {item:?} is not a count"))?);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

pub fn run(args: &Args) -> Result<()> {
    let points_at = parse_deletions(&args.deletions)?;
    let bundle = Bundle::open(&args.bundle)?;
    if bundle.manifest.sisa.is_empty() {
        bail!("{} was built with --no-sisa: there is no SISA baseline to compare with", args.bundle.display());
    }
    let max = *points_at.last().unwrap_or(&0);
    ensure!(
        max <= bundle.manifest.data.deletable,
        "--deletions up to {max} but the bundle has {} deletable samples",
        bundle.manifest.data.deletable
    );
    let (splits, device) = args.eval.prepare(&bundle)?;
    let serving = bundle.serving()?;
    let model = bundle.load_model(&device.device, &serving.guard)?;
    let mut evaluator = Evaluator::new(&model, &splits.test);
    let points = compute(&bundle, &serving, &model, &mut evaluator, &points_at, args.seed)?;
    if let Some(path) = &args.svg {
        draw(path, &points)?;
        output::note(&format!("wrote {}", path.display()));
    }
    if args.eval.json {
        return output::print(&format!("{}\n", serde_json::to_string_pretty(&points)?));
    }
    let pct = |a: Option<f64>| a.map_or("offline".to_owned(), |a| format!("{:.2}%", a * 100.0));
    let mut text = format!("{:>9}  {:>9} {:>5}  {:>9} {:>5}\n", "deletions", "S3T", "live", "SISA", "live");
    for p in &points {
        text.push_str(&format!(
            "{:>9}  {:>9} {:>5}  {:>9} {:>5}\n",
            p.deletions,
            pct(p.s3t_accuracy),
            p.s3t_live_shards,
            pct(p.sisa_accuracy),
            p.sisa_live_shards
        ));
    }
    output::print(&text)
}

/// Accuracy of S3T and of SISA without retraining after each count of `points_at` random deletions, drawn from
/// one seeded stream and applied to both, on top of the ledger's state (`start`, checked by the guard; further
/// deletions only shorten prefixes, so every component served later was allowed then).
pub fn compute(
    bundle: &Bundle,
    start: &Serving,
    model: &s3t::model::serve::Model,
    evaluator: &mut Evaluator,
    points_at: &[usize],
    seed: u64,
) -> Result<Vec<Point>> {
    let mut ids: Vec<u64> = (0..bundle.manifest.data.deletable as u64).collect();
    ids.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    ids.retain(|&id| !start.guard.is_deleted(&SampleId::Int(id)));
    let mut s3t = start.state.clone();
    let mut sisa = start.sisa_state.clone();
    let mut done = 0usize;
    let mut points = Vec::new();
    let mean_prefix = |state: &s3t::State| {
        (0..state.shards()).map(|s| state.served(s).map_or(0.0, |x| f64::from(x.prefix))).sum::<f64>()
            / f64::from(state.shards())
    };
    for &r in points_at {
        while done < r.min(ids.len()) {
            let action = Action::Delete(SampleId::Int(ids[done]));
            bundle.router.apply_in_place(&mut s3t, &action)?;
            bundle.sisa_router.apply_in_place(&mut sisa, &action)?;
            done += 1;
        }
        let a = evaluator.evaluate(model, &s3t)?;
        let b = evaluator.evaluate_sisa(model, &sisa)?;
        points.push(Point {
            deletions: r,
            s3t_accuracy: a.accuracy,
            sisa_accuracy: b.accuracy,
            s3t_live_shards: a.live_shards,
            sisa_live_shards: b.live_shards,
            s3t_mean_prefix: mean_prefix(&s3t),
            sisa_mean_prefix: mean_prefix(&sisa),
        });
    }
    Ok(points)
}

fn draw(path: &std::path::Path, points: &[Point]) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("drawing: {e}"))?;
        let max_x = points.last().map_or(1, |p| p.deletions.max(1)) as f64;
        let acc = |a: Option<f64>| a.unwrap_or(0.0) * 100.0;
        let min_y = points.iter().flat_map(|p| [acc(p.s3t_accuracy), acc(p.sisa_accuracy)]).fold(100.0f64, f64::min);
        let mut chart = ChartBuilder::on(&root)
            .caption("Accuracy after deletions (no retraining)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..max_x, (min_y - 2.0).max(0.0)..100.0)
            .map_err(|e| anyhow::anyhow!("drawing: {e}"))?;
        chart
            .configure_mesh()
            .x_desc("deletions")
            .y_desc("test accuracy (%)")
            .draw()
            .map_err(|e| anyhow::anyhow!("drawing: {e}"))?;
        for (name, color, values) in [
            ("S3T", BLUE, points.iter().map(|p| (p.deletions as f64, acc(p.s3t_accuracy))).collect::<Vec<_>>()),
            ("SISA", RED, points.iter().map(|p| (p.deletions as f64, acc(p.sisa_accuracy))).collect::<Vec<_>>()),
        ] {
            chart
                .draw_series(LineSeries::new(values, color.stroke_width(2)))
                .map_err(|e| anyhow::anyhow!("drawing: {e}"))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(|e| anyhow::anyhow!("drawing: {e}"))?;
        root.present().map_err(|e| anyhow::anyhow!("drawing: {e}"))?;
    }
    output::write_atomic(path, svg.as_bytes())
}
