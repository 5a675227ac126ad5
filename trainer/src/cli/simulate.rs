//! `trainer simulate`: how many deletions a configuration survives, for each budget in a list.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use s3t::Prior;
use s3t::simulate::{MAX_SLICES, PrefixPoint, Report};
use serde::Serialize;

use crate::args::{Layout, StrategyArg, parse_budget_list};
use crate::chart::{self, Figure};
use crate::output;
use crate::sweep::{Design, Sweep, checkpoint_grid};
use crate::table::{Align, Table};

// The subcommand's help text is the doc comment on its `Command` variant.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub layout: Layout,

    /// Budgets B (sequences per shard) to simulate: numbers and inclusive ranges separated by commas, e.g. `1,2,4`,
    /// `1..6` or `1..3,8`. Default: 1..L, or L! for --strategy full.
    #[arg(long, value_name = "LIST")]
    pub budgets: Option<String>,

    /// Monte Carlo runs per budget; each run deletes until every shard is offline.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub runs: u32,

    /// Seed of the Monte Carlo and of --strategy random: the same seed gives the same numbers.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// Print one JSON array, an object per budget, instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Also write an SVG figure to FILE: deletions survived against B (SISA as reference) and the served prefix
    /// length against the number of deletions at the largest budget.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// The estimates for one budget.
struct Outcome {
    budget: usize,
    closed_form: Option<f64>,
    report: Report,
}

pub fn run(args: &Args) -> Result<()> {
    let layout = &args.layout;
    layout.validate()?;
    ensure!(
        usize::from(layout.slices) <= MAX_SLICES,
        "--slices {}: the Monte Carlo supports at most {MAX_SLICES} slices",
        layout.slices
    );
    ensure!(args.runs >= 1, "--runs must be at least 1, got {}", args.runs);
    let budgets = budgets(args)?;
    let file_prior = layout.load_prior()?;
    let prior = file_prior.clone().unwrap_or_else(|| Prior::uniform(layout.slices));
    let sweep = Sweep {
        shards: layout.shards,
        slices: layout.slices,
        strategy: layout.strategy.build(&prior, args.seed),
        prior,
        runs: args.runs,
        seed: args.seed,
    };

    let designs = budgets.iter().map(|&b| sweep.design(b)).collect::<Result<Vec<Design>>>()?;
    let sisa = args.svg.as_ref().map(|_| sweep.sisa());
    // Refuse a simulation that would not end before spending time on the others.
    let prior_name =
        || layout.prior.as_ref().map_or_else(|| "uniform prior".to_owned(), |p| format!("prior file {}", p.display()));
    for (design, budget) in designs.iter().zip(&budgets) {
        sweep.check_terminates(design).with_context(|| format!("{} (B = {budget})", prior_name()))?;
    }
    if let Some(sisa) = &sisa {
        sweep.check_terminates(sisa).with_context(|| format!("{} (SISA reference)", prior_name()))?;
    }

    // One grid for every budget keeps their curves comparable; the largest budget survives longest and sizes it.
    let largest = designs.last().context("--budgets lists no budget")?;
    let checkpoints = checkpoint_grid(sweep.horizon(largest)?);
    let outcomes = designs
        .iter()
        .zip(&budgets)
        .map(|(design, &budget)| {
            let report = sweep.simulate(design, &checkpoints).with_context(|| format!("simulating B = {budget}"))?;
            Ok(Outcome { budget, closed_form: sweep.closed_form(design), report })
        })
        .collect::<Result<Vec<_>>>()?;

    if let (Some(path), Some(sisa)) = (&args.svg, &sisa) {
        let sisa = sweep.simulate(sisa, &checkpoints).context("simulating the SISA reference")?;
        let svg = chart::render_svg(&figure(args, &outcomes, &sisa)).context("drawing the SVG figure")?;
        output::write_atomic(path, svg.as_bytes())?;
        output::note(&format!("wrote {}", path.display()));
    }

    if args.json {
        let rows: Vec<JsonRow> = outcomes.iter().map(|o| JsonRow::new(args, file_prior.as_ref(), o)).collect();
        output::print(&format!("{}\n", serde_json::to_string_pretty(&rows)?))
    } else {
        output::print(&human(args, &outcomes))
    }
}

/// The budgets to simulate, each checked against L and the strategy.
fn budgets(args: &Args) -> Result<Vec<usize>> {
    let layout = &args.layout;
    let Some(text) = &args.budgets else {
        let budgets = match layout.strategy {
            StrategyArg::Full => vec![layout.default_budget()],
            _ => (1..=usize::from(layout.slices)).collect(),
        };
        for &b in &budgets {
            layout.check_budget(b)?;
        }
        return Ok(budgets);
    };
    let budgets = parse_budget_list(text).with_context(|| format!("invalid --budgets {text}"))?;
    for &b in &budgets {
        layout.check_budget(b).with_context(|| format!("invalid --budgets {text}"))?;
    }
    Ok(budgets)
}

fn human(args: &Args, outcomes: &[Outcome]) -> String {
    let layout = &args.layout;
    let prior = match &layout.prior {
        Some(path) => format!("prior from {}", path.display()),
        None => "uniform prior".to_owned(),
    };
    let mut text = format!(
        "S3T simulate: m = {} shards, L = {} slices, strategy {}, {prior}, {} runs, seed {}\n\
         deletions survived (Monte Carlo mean ± std over runs; closed form only for a uniform prior)\n\n",
        layout.shards,
        layout.slices,
        layout.strategy.name(),
        args.runs,
        args.seed,
    );
    let mut table = Table::new(&[
        ("B", Align::Right),
        ("closed form", Align::Right),
        ("until all offline", Align::Right),
        ("until first offline", Align::Right),
    ]);
    for o in outcomes {
        let r = &o.report;
        table.row(vec![
            o.budget.to_string(),
            o.closed_form.map_or_else(|| "-".to_owned(), |c| format!("{c:.1}")),
            format!("{:.1} ± {:.1}", r.mean_deletions_until_all_offline, r.std_deletions_until_all_offline),
            format!("{:.1}", r.mean_deletions_until_first_offline),
        ]);
    }
    text.push_str(&table.to_string());
    text
}

fn figure<'a>(args: &'a Args, outcomes: &[Outcome], sisa: &Report) -> Figure<'a> {
    let curve = |points: &[PrefixPoint]| points.iter().map(|p| (p.deletions, p.mean_served_prefix)).collect();
    let last = outcomes.last();
    Figure {
        shards: args.layout.shards,
        slices: args.layout.slices,
        strategy: args.layout.strategy.name(),
        prior: match args.layout.prior.as_deref().and_then(Path::file_name) {
            Some(name) => format!("prior from {}", name.to_string_lossy()),
            None => "uniform prior".to_owned(),
        },
        survival: outcomes.iter().map(|o| (o.budget as u64, o.report.mean_deletions_until_all_offline)).collect(),
        sisa_survival: sisa.mean_deletions_until_all_offline,
        curve_budget: last.map_or(0, |o| o.budget),
        s3t_curve: last.map_or_else(Vec::new, |o| curve(&o.report.served_prefix)),
        sisa_curve: curve(&sisa.served_prefix),
    }
}

/// One element of the `--json` array.
#[derive(Serialize)]
struct JsonRow<'a> {
    shards: u16,
    slices: u16,
    budget: usize,
    strategy: &'static str,
    runs: u32,
    seed: u64,
    /// The deletion prior from --prior; null for the uniform prior.
    prior: Option<&'a [f64]>,
    /// Null where no closed form applies (a non-uniform prior).
    closed_form: Option<f64>,
    mean_deletions_until_all_offline: f64,
    std_deletions_until_all_offline: f64,
    mean_deletions_until_first_offline: f64,
    std_deletions_until_first_offline: f64,
    served_prefix: &'a [PrefixPoint],
}

impl<'a> JsonRow<'a> {
    fn new(args: &Args, prior: Option<&'a Prior>, o: &'a Outcome) -> Self {
        let r = &o.report;
        JsonRow {
            shards: args.layout.shards,
            slices: args.layout.slices,
            budget: o.budget,
            strategy: args.layout.strategy.name(),
            runs: args.runs,
            seed: args.seed,
            prior: prior.map(Prior::values),
            closed_form: o.closed_form,
            mean_deletions_until_all_offline: r.mean_deletions_until_all_offline,
            std_deletions_until_all_offline: r.std_deletions_until_all_offline,
            mean_deletions_until_first_offline: r.mean_deletions_until_first_offline,
            std_deletions_until_first_offline: r.std_deletions_until_first_offline,
            served_prefix: &r.served_prefix,
        }
    }
}
