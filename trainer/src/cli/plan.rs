//! `trainer plan`: the sequences each shard trains and the training steps (prefix-trie nodes) they need.

use anyhow::{Context, Result, bail};
use s3t::{Node, Plan, Prior, Sequence, ShardPlan};
use serde::Serialize;

use crate::args::{Layout, StrategyArg};
use crate::output;
use crate::table::{Align, Table};

// The subcommand's help text is the doc comment on its `Command` variant.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub layout: Layout,

    /// Budget B: the number of sequences (slice orders) each shard trains. Default: L, or L! for --strategy full.
    #[arg(long, value_name = "B")]
    pub budget: Option<usize>,

    /// Seed of --strategy random (each shard derives its own); other strategies ignore it.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// Print one JSON object instead of the human-readable plan.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let layout = &args.layout;
    layout.validate()?;
    let budget = args.budget.unwrap_or_else(|| layout.default_budget());
    match args.budget {
        Some(b) => layout.check_budget(b).with_context(|| format!("invalid --budget {b}"))?,
        None => layout.check_budget(budget)?,
    }
    if layout.prior.is_some() && layout.strategy != StrategyArg::Bms {
        // Silently ignoring the file would hide a mistake: only BMS chooses sequences from a prior.
        bail!("--prior only affects --strategy bms, not --strategy {}", layout.strategy.name());
    }
    let prior = layout.load_prior()?;
    let strategy = layout.strategy.build(&prior.clone().unwrap_or_else(|| Prior::uniform(layout.slices)), args.seed);
    let plan = Plan::new(layout.shards, layout.slices, budget, &strategy).context("building the plan")?;
    if args.json {
        let json = PlanJson::new(args, budget, prior.as_ref(), &plan);
        output::print(&format!("{}\n", serde_json::to_string_pretty(&json)?))
    } else {
        output::print(&human(args, budget, &plan))
    }
}

fn human(args: &Args, budget: usize, plan: &Plan) -> String {
    let layout = &args.layout;
    let l = usize::from(layout.slices);
    let mut text = format!(
        "S3T plan: m = {} shards, L = {} slices, B = {budget} sequences per shard, strategy {}\n",
        layout.shards,
        layout.slices,
        layout.strategy.name()
    );
    // Only the random strategy differs between shards; otherwise one block stands for all of them.
    let all_same = plan.shards.windows(2).all(|w| w[0].sequences == w[1].sequences);
    let blocks: Vec<(String, &ShardPlan)> = if all_same {
        plan.shards.first().map(|s| ("all shards".to_owned(), s)).into_iter().collect()
    } else {
        plan.shards.iter().map(|s| (format!("shard {}", s.shard), s)).collect()
    };
    for (label, shard) in blocks {
        text.push_str(&format!("\nsequences ({label}):\n"));
        for (b, seq) in shard.sequences.iter().enumerate() {
            text.push_str(&format!("  {b}: {seq}\n"));
        }
        text.push_str(&format!(
            "\ntraining order ({label}): {} nodes ({} training steps without prefix sharing)\n",
            shard.nodes.len(),
            shard.sequences.len() * l
        ));
        for line in node_table(&shard.nodes).to_string().lines() {
            text.push_str(&format!("  {line}\n"));
        }
    }
    let per_shard = nodes_per_shard(plan);
    let per_shard = if all_same {
        format!("{} (all shards)", per_shard.first().copied().unwrap_or(0))
    } else {
        per_shard.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
    };
    text.push_str(&format!("\nnodes per shard: {per_shard}; total: {}\n", plan.total_nodes()));
    text
}

fn node_table(nodes: &[Node]) -> Table {
    let mut table = Table::new(&[
        ("node", Align::Right),
        ("group", Align::Right),
        ("parent", Align::Right),
        ("prefix", Align::Left),
    ]);
    for node in nodes {
        table.row(vec![
            node.id.to_string(),
            node.group().to_string(),
            node.parent.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            slice_list(&node.prefix),
        ]);
    }
    table
}

/// Slices as `(0 1 2)`, the way `Sequence` displays itself.
fn slice_list(slices: &[u16]) -> String {
    let parts: Vec<String> = slices.iter().map(u16::to_string).collect();
    format!("({})", parts.join(" "))
}

fn nodes_per_shard(plan: &Plan) -> Vec<usize> {
    plan.shards.iter().map(|s| s.nodes.len()).collect()
}

/// The `--json` object.
#[derive(Serialize)]
struct PlanJson<'a> {
    shards: u16,
    slices: u16,
    budget: usize,
    strategy: &'static str,
    /// The seed of the random strategy; null for the others.
    seed: Option<u64>,
    /// The prior BMS chose from (null when uniform by default or for other strategies).
    prior: Option<&'a [f64]>,
    total_nodes: usize,
    nodes_per_shard: Vec<usize>,
    /// `sequences[shard][b]` = the slice order of sequence b.
    sequences: Vec<Vec<&'a [u16]>>,
    /// `training_order[shard]` = that shard's nodes, parents before children.
    training_order: Vec<Vec<NodeJson<'a>>>,
}

#[derive(Serialize)]
struct NodeJson<'a> {
    id: usize,
    group: usize,
    parent: Option<usize>,
    prefix: &'a [u16],
}

impl<'a> PlanJson<'a> {
    fn new(args: &Args, budget: usize, prior: Option<&'a Prior>, plan: &'a Plan) -> Self {
        let layout = &args.layout;
        PlanJson {
            shards: layout.shards,
            slices: layout.slices,
            budget,
            strategy: layout.strategy.name(),
            seed: (layout.strategy == StrategyArg::Random).then_some(args.seed),
            prior: prior.map(Prior::values),
            total_nodes: plan.total_nodes(),
            nodes_per_shard: nodes_per_shard(plan),
            sequences: plan.shards.iter().map(|s| s.sequences.iter().map(Sequence::slices).collect()).collect(),
            training_order: plan
                .shards
                .iter()
                .map(|s| {
                    s.nodes
                        .iter()
                        .map(|n| NodeJson { id: n.id, group: n.group(), parent: n.parent, prefix: &n.prefix })
                        .collect()
                })
                .collect(),
        }
    }
}
