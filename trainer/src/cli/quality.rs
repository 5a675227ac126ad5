//! `trainer quality`: the quality figures `docs/performance.md` reports, from one command, over build seeds and deletion
//! streams.
//!
//! For each bundle (one per build seed): backbone-only accuracy; S3T and SISA without deletions; a single LoRA
//! fine-tune of the same backbone and adapters on all deletable data (trained here, same settings); and the
//! accuracy against deletions on every stream. Then means with their standard errors: over bundles for the figures
//! without deletions, over every (bundle, stream) pair for the curve, with the checks of a sound comparison.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use plotters::prelude::*;
use s3t::model::ensemble::{accuracy, softmax_rows};
use s3t::model::features::{Features, logits_all};
use s3t::model::serve::Evaluator;
use s3t::model::train::{SisaRun, TrainInputs, train_sisa};
use s3t::model::vit::Component;

use crate::bundle_dir::Bundle;
use crate::cli::EvalOptions;
use crate::cli::curve::{Point, compute, parse_deletions};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bundle directories built with SISA, one per build seed (same data, layout and settings; `--seed` differs).
    #[arg(required = true, num_args = 1..)]
    pub bundles: Vec<PathBuf>,
    /// Deletion counts of the curve: `0,100,200` or `FROM..TO:STEP`.
    #[arg(long, default_value = "0..120:4")]
    pub deletions: String,
    /// Seeds of the deletion streams: `0,1,2` or `FROM..TO` (inclusive); every bundle sees every stream.
    #[arg(long, default_value = "0..19")]
    pub seeds: String,
    /// Also draw the mean curves (± one standard error) into an SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    #[command(flatten)]
    pub eval: EvalOptions,
}

/// `0,1,2` or `FROM..TO` (inclusive), or both mixed; sorted, deduplicated.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim) {
        let num = |s: &str| s.trim().parse::<u64>().with_context(|| format!("--seeds {item:?}: {s:?} is not a seed"));
        match item.split_once("..") {
            Some((lo, hi)) => {
                let (lo, hi) = (num(lo)?, num(hi)?);
                ensure!(lo <= hi && hi - lo < 100_000, "--seeds {item:?}: needs FROM ≤ TO, at most 100,000 seeds");
                out.extend(lo..=hi);
            }
            None => out.push(num(item)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A mean and its standard error (the sample standard deviation over √n; 0 for a single value).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub mean: f64,
    pub se: f64,
    pub n: usize,
}

impl Estimate {
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let se = if n < 2 {
            0.0
        } else {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            (var / n as f64).sqrt()
        };
        Some(Self { mean, se, n })
    }

    fn percent(self) -> String {
        format!("{:.2} ± {:.2}", self.mean * 100.0, self.se * 100.0)
    }
}

/// One bundle's figures.
#[derive(Debug, serde::Serialize)]
struct BundleFigures {
    bundle: String,
    seed: u64,
    backbone_accuracy: f64,
    finetune_accuracy: f64,
    s3t_accuracy: f64,
    sisa_accuracy: f64,
    /// One curve per deletion stream.
    #[serde(skip)]
    curves: Vec<Vec<Point>>,
}

/// The curve at one deletion count, over every (bundle, stream) pair.
#[derive(Debug, serde::Serialize)]
struct CurvePoint {
    deletions: usize,
    /// Over the pairs where S3T (SISA) still serves; `None` when none does.
    s3t_accuracy: Option<Estimate>,
    sisa_accuracy: Option<Estimate>,
    /// S3T − SISA over the pairs where both serve.
    difference: Option<Estimate>,
    s3t_live_shards: Option<Estimate>,
    sisa_live_shards: Option<Estimate>,
    /// Pairs where every shard of S3T (SISA) is offline.
    s3t_offline: usize,
    sisa_offline: usize,
}

pub fn run(args: &Args) -> Result<()> {
    let points_at = parse_deletions(&args.deletions)?;
    let seeds = parse_seeds(&args.seeds)?;
    let mut figures = Vec::new();
    let mut shards = None;
    for path in &args.bundles {
        let (f, m) = measure(path, &args.eval, &points_at, &seeds)?;
        match shards {
            Some(s) if s != m => bail!("{}: {m} shards, but {} has {s}", path.display(), args.bundles[0].display()),
            _ => shards = Some(m),
        }
        figures.push(f);
    }
    let m = shards.unwrap_or(1);
    let est = |f: &dyn Fn(&BundleFigures) -> f64| Estimate::of(&figures.iter().map(f).collect::<Vec<_>>());
    let backbone = est(&|f| f.backbone_accuracy);
    let finetune = est(&|f| f.finetune_accuracy);
    let s3t = est(&|f| f.s3t_accuracy);
    let sisa = est(&|f| f.sisa_accuracy);
    let s3t_minus_finetune = est(&|f| f.s3t_accuracy - f.finetune_accuracy);
    let s3t_minus_sisa = est(&|f| f.s3t_accuracy - f.sisa_accuracy);
    let curve = aggregate(&figures, &points_at);

    // The curve's checks: S3T keeps at least as many live shards as SISA without retraining at every point of every
    // stream, and once SISA has lost a shard (on some stream) S3T's mean is not below SISA's by more than one
    // standard error of the paired difference.
    let live_shards_hold =
        figures.iter().flat_map(|f| f.curves.iter().flatten()).all(|p| p.s3t_live_shards >= p.sisa_live_shards);
    let after_sisa_loses: Vec<&CurvePoint> =
        curve.iter().filter(|p| p.sisa_offline > 0 || p.sisa_live_shards.is_some_and(|e| e.mean < m as f64)).collect();
    let mean_holds = after_sisa_loses.iter().all(|p| p.difference.is_none_or(|d| d.mean >= -d.se));
    let worst = curve
        .iter()
        .filter_map(|p| p.difference.map(|d| (p.deletions, d)))
        .min_by(|a, b| a.1.mean.total_cmp(&b.1.mean));

    if let Some(path) = &args.svg {
        draw(path, &curve)?;
        output::note(&format!("wrote {}", path.display()));
    }
    let report = serde_json::json!({
        "bundles": figures,
        "build_seeds": figures.len(),
        "streams": seeds.len(),
        "backbone_accuracy": backbone,
        "finetune_accuracy": finetune,
        "s3t_accuracy": s3t,
        "sisa_accuracy": sisa,
        "s3t_minus_finetune": s3t_minus_finetune,
        "s3t_minus_sisa": s3t_minus_sisa,
        "curve": curve,
        "s3t_live_shards_at_least_sisa_everywhere": live_shards_hold,
        "s3t_mean_within_one_se_once_sisa_lost_a_shard": mean_holds,
        "points_after_sisa_lost_a_shard": after_sisa_loses.len(),
        "largest_s3t_deficit": worst.map(|(deletions, d)| serde_json::json!({ "deletions": deletions, "difference": d })),
    });
    if args.eval.json {
        return output::print(&format!("{}\n", serde_json::to_string_pretty(&report)?));
    }
    let pct = |e: Option<Estimate>| e.map_or("–".to_owned(), |e| format!("{}%", e.percent()));
    let pts = |e: Option<Estimate>| e.map_or("–".to_owned(), |e| format!("{} points", e.percent()));
    let mut text = format!(
        "{} bundle(s) (build seeds {:?}), {} deletion streams each; mean ± standard error over build seeds:\n",
        figures.len(),
        figures.iter().map(|f| f.seed).collect::<Vec<_>>(),
        seeds.len()
    );
    text.push_str(&format!("  backbone only (public data):           {}\n", pct(backbone)));
    text.push_str(&format!("  single LoRA fine-tune, all deletable:  {}\n", pct(finetune)));
    text.push_str(&format!("  S3T, no deletions:                     {}\n", pct(s3t)));
    text.push_str(&format!("  SISA, no deletions:                    {}\n", pct(sisa)));
    text.push_str(&format!("  S3T − fine-tune:                       {}\n", pts(s3t_minus_finetune)));
    text.push_str(&format!("  S3T − SISA:                            {}\n", pts(s3t_minus_sisa)));
    text.push_str(&format!(
        "accuracy against deletions, mean ± standard error over {} (bundle, stream) pairs; live shards of {m}:\n",
        figures.len() * seeds.len()
    ));
    text.push_str(&format!(
        "{:>9}  {:>15} {:>5}  {:>15} {:>5}  {:>16}\n",
        "deletions", "S3T %", "live", "SISA %", "live", "S3T − SISA"
    ));
    let cell = |e: Option<Estimate>| e.map_or("offline".to_owned(), Estimate::percent);
    let live = |e: Option<Estimate>| e.map_or("–".to_owned(), |e| format!("{:.2}", e.mean));
    for p in &curve {
        text.push_str(&format!(
            "{:>9}  {:>15} {:>5}  {:>15} {:>5}  {:>16}\n",
            p.deletions,
            cell(p.s3t_accuracy),
            live(p.s3t_live_shards),
            cell(p.sisa_accuracy),
            live(p.sisa_live_shards),
            p.difference.map_or("–".to_owned(), Estimate::percent)
        ));
    }
    let yes = |b: bool| if b { "yes" } else { "NO" };
    text.push_str(&format!(
        "S3T keeps at least as many live shards as SISA at every point: {}\n",
        yes(live_shards_hold)
    ));
    text.push_str(&format!(
        "once SISA has lost a shard ({} points), S3T's mean is within one standard error of SISA's or above: {}\n",
        after_sisa_loses.len(),
        yes(mean_holds)
    ));
    output::print(&text)
}

/// One bundle's figures and its shard count.
fn measure(path: &Path, eval: &EvalOptions, points_at: &[usize], seeds: &[u64]) -> Result<(BundleFigures, usize)> {
    let bundle = Bundle::open(path)?;
    if bundle.manifest.sisa.is_empty() {
        bail!("{} was built with --no-sisa: there is no SISA baseline to compare with", path.display());
    }
    let max = *points_at.last().unwrap_or(&0);
    ensure!(
        max <= bundle.manifest.data.deletable,
        "--deletions up to {max} but {} has {} deletable samples",
        path.display(),
        bundle.manifest.data.deletable
    );
    let (splits, device) = eval.prepare(&bundle)?;
    // Figures after the ledger's deletions (none for a fresh bundle); the guard refuses a stale served component.
    let serving = bundle.serving()?;
    let model = bundle.load_model(&device.device, &serving.guard)?;
    let mut evaluator = Evaluator::new(&model, &splits.test);
    let s3t = evaluator.evaluate(&model, &serving.state)?.accuracy.unwrap_or(0.0);
    let sisa = evaluator.evaluate_sisa(&model, &serving.sisa_state)?.accuracy.unwrap_or(0.0);

    // The reference: one LoRA fine-tune (every group and the head) of the same backbone on all deletable data that
    // is not deleted.
    let config = model.config();
    let all: Vec<usize> =
        (0..splits.deletable.len()).filter(|&i| !serving.guard.is_deleted(&s3t::SampleId::Int(i as u64))).collect();
    let backbone = &model.pretrained.backbone;
    let embedded = Features::embedded(config, backbone, &splits.deletable, &device.device);
    let validation = Features::embedded(config, backbone, &splits.validation, &device.device);
    let inputs = TrainInputs {
        config,
        backbone,
        features: &embedded,
        data: &splits.deletable,
        validation: Some((&validation, &splits.validation.labels)),
        device: &device.device,
    };
    let seed = s3t::plan::sisa_seed(bundle.manifest.seed, u16::MAX, 0);
    let run = SisaRun { previous: None, samples: all, seed, run: bundle.manifest.train.clone() };
    let finetune = train_sisa(&inputs, &model.pretrained.head, run, &mut |_| {});
    drop(embedded);
    let features = Features::embedded(config, backbone, &splits.test, &device.device);
    let groups: Vec<_> = finetune.adapters.iter().collect();
    let logits = logits_all(config, backbone, Component { groups: &groups, head: &finetune.head }, &features);
    let classes = config.vit.classes;
    let finetune_accuracy = accuracy(&softmax_rows(&logits, classes), classes, &splits.test.labels);

    let mut curves = Vec::new();
    for &seed in seeds {
        curves.push(compute(&bundle, &serving, &model, &mut evaluator, points_at, seed)?);
    }
    let figures = BundleFigures {
        bundle: path.display().to_string(),
        seed: bundle.manifest.seed,
        backbone_accuracy: bundle.manifest.backbone.test_accuracy,
        finetune_accuracy,
        s3t_accuracy: s3t,
        sisa_accuracy: sisa,
        curves,
    };
    Ok((figures, usize::from(bundle.manifest.partition.shards)))
}

/// Means over every (bundle, stream) pair at each deletion count.
fn aggregate(figures: &[BundleFigures], points_at: &[usize]) -> Vec<CurvePoint> {
    let pairs: Vec<&Vec<Point>> = figures.iter().flat_map(|f| f.curves.iter()).collect();
    (0..points_at.len())
        .map(|i| {
            let at: Vec<&Point> = pairs.iter().filter_map(|c| c.get(i)).collect();
            let of =
                |f: &dyn Fn(&Point) -> Option<f64>| Estimate::of(&at.iter().filter_map(|p| f(p)).collect::<Vec<_>>());
            CurvePoint {
                deletions: points_at[i],
                s3t_accuracy: of(&|p| p.s3t_accuracy),
                sisa_accuracy: of(&|p| p.sisa_accuracy),
                difference: of(&|p| Some(p.s3t_accuracy? - p.sisa_accuracy?)),
                s3t_live_shards: of(&|p| Some(p.s3t_live_shards as f64)),
                sisa_live_shards: of(&|p| Some(p.sisa_live_shards as f64)),
                s3t_offline: at.iter().filter(|p| p.s3t_accuracy.is_none()).count(),
                sisa_offline: at.iter().filter(|p| p.sisa_accuracy.is_none()).count(),
            }
        })
        .collect()
}

/// The mean curves with a band of one standard error on each side.
fn draw(path: &Path, curve: &[CurvePoint]) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let max_x = curve.last().map_or(1, |p| p.deletions.max(1)) as f64;
        let lows = curve.iter().flat_map(|p| [p.s3t_accuracy, p.sisa_accuracy]).flatten().map(|e| e.mean - e.se);
        let min_y = lows.fold(1.0f64, f64::min) * 100.0;
        let mut chart = ChartBuilder::on(&root)
            .caption("Accuracy after deletions, mean ± 1 SE (no retraining)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..max_x, (min_y - 1.0).max(0.0)..100.0)
            .map_err(|e| fail(&e))?;
        chart.configure_mesh().x_desc("deletions").y_desc("test accuracy (%)").draw().map_err(|e| fail(&e))?;
        type Pick = fn(&CurvePoint) -> Option<Estimate>;
        let series: [(&str, RGBColor, Pick); 2] =
            [("S3T", BLUE, |p| p.s3t_accuracy), ("SISA", RED, |p| p.sisa_accuracy)];
        for (name, color, pick) in series {
            let line = |k: f64| -> Vec<(f64, f64)> {
                curve
                    .iter()
                    .filter_map(|p| pick(p).map(|e| (p.deletions as f64, (e.mean + k * e.se) * 100.0)))
                    .collect()
            };
            for k in [-1.0, 1.0] {
                chart.draw_series(LineSeries::new(line(k), color.mix(0.35).stroke_width(1))).map_err(|e| fail(&e))?;
            }
            chart
                .draw_series(LineSeries::new(line(0.0), color.stroke_width(2)))
                .map_err(|e| fail(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    output::write_atomic(path, svg.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_lists_and_ranges() {
        assert_eq!(parse_seeds("0..3,7,2").unwrap(), vec![0, 1, 2, 3, 7]);
        assert!(parse_seeds("3..1").is_err());
        assert!(parse_seeds("x").unwrap_err().to_string().contains("--seeds"));
    }

    #[test]
    fn the_standard_error_is_the_sample_deviation_over_root_n() {
        let e = Estimate::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((e.mean - 2.5).abs() < 1e-12);
        // Sample variance 5/3; SE = sqrt(5/3 / 4).
        assert!((e.se - (5.0f64 / 12.0).sqrt()).abs() < 1e-12);
        assert_eq!(Estimate::of(&[0.7]).unwrap().se, 0.0);
        assert!(Estimate::of(&[]).is_none());
    }
}
