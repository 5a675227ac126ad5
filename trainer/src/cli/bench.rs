//! `trainer bench`: training throughput, and the cost of one deletion for S3T (apply and serve) against SISA
//! (retrain the affected checkpoints), measured in the same run, on the default data and ViT or on a text encoder
//! (`--backbone minilm|hf:DIR`) and its data (`--data mr|text:FILE`).

use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use s3t::dataset::Splits;
use s3t::ledger::Ledger;
use s3t::model::ensemble::{mean_probabilities, softmax_rows};
use s3t::model::features::{Features, logits_all};
use s3t::model::hf::HfDir;
use s3t::model::parallel::Batching;
use s3t::model::serve::node_skeleton;
use s3t::model::train::{NodeRun, SisaRun, TrainInputs, train_nodes, train_sisa, train_sisas};
use s3t::model::vit::Component;
use s3t::model::{Backbone, GroupAdapter, Head, LoraConfig, ModelConfig, Pretrained, TrainConfig};
use s3t::partition::{Cell, Partition, PartitionMode};
use s3t::{Action, Plan, Router, SampleId, Strategy};

use crate::cli::build::{IMAGE_DEFAULTS, TEXT_DEFAULTS, text_layers_per_group};
use crate::cli::pretrain::{BackboneArg, PretrainOptions};
use crate::data::Source;
use crate::device::{DeviceArg, choose, cpu_threads};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Samples for the throughput measurement [default: 2048 on the ViT; 192 on a text encoder].
    #[arg(long)]
    pub samples: Option<usize>,
    /// Training runs measured together (a plan level of the default bundle has 16 on the ViT, 4 on a text encoder):
    /// stacked into one batched computation, and one per thread [default: 16 on the ViT; the threads on a text
    /// encoder].
    #[arg(long, value_name = "N")]
    pub batch_nodes: Option<usize>,
    /// Threads for the one-run-per-thread figure [default: the CPU's cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Samples per optimiser step [default: 64 on the ViT; 32 on a text encoder, as the PyTorch + PEFT peer].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed of the deleted sample and of the initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Text encoders: the data whose texts are measured (`mr` or `text:FILE`, with --text-field, --label-field).
    #[arg(long, default_value = "mr")]
    pub data: String,
    /// The model to measure: `--backbone vit` (the default ViT, sized by --preset, --depth, --d-model) or a text
    /// encoder (`minilm`, `hf:DIR`; texts cut to --max-tokens). The deletion comparison uses the same model.
    #[command(flatten)]
    pub model: PretrainOptions,
    /// Text encoders: layers per group of the S3T layout, whose top group a node step trains [default: `build`'s,
    /// depth ÷ slices].
    #[arg(long, value_name = "N")]
    pub layers_per_group: Option<usize>,
    /// Text encoders: measure the padded arithmetic (every position up to --max-tokens, that of text bundles built
    /// before packing) instead of packed tokens.
    #[arg(long)]
    pub padded: bool,
    /// Measure training throughput only (skip the deletion comparison, which retrains SISA checkpoints).
    #[arg(long)]
    pub throughput_only: bool,
    /// Where to run.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// What is measured: two layouts of one model (every adapter trainable; the S3T layout whose top group a node step
/// trains), its data and the default bundle's shape (m, L, B) for the deletion comparison.
struct Setup {
    describe: String,
    /// Every adapter (and the head) trainable: a full LoRA fine-tune step.
    all: ModelConfig,
    /// The default bundle's layout: L groups, group 1 on top.
    s3t: ModelConfig,
    pretrained: Pretrained,
    splits: Splits,
    shape: (u16, u16, usize),
    batch_size: usize,
    samples: usize,
    batch_nodes: usize,
}

fn setup(args: &Args, device: &burn::tensor::Device, quiet: bool) -> Result<Setup> {
    let threads = args.threads.unwrap_or_else(cpu_threads);
    match args.model.backbone(quiet)? {
        BackboneArg::Vit => {
            if let Some(per) = args.layers_per_group {
                bail!("--layers-per-group {per}: for text encoders; the ViT's groups split every block");
            }
            if args.padded {
                bail!("--padded: for text encoders; images have no padding");
            }
            let splits = Source::Default.load()?;
            let vit = args.model.vit();
            let l = IMAGE_DEFAULTS.slices;
            let config = ModelConfig::new().with_vit(vit).with_groups(usize::from(l));
            config.validate().map_err(|e| anyhow!("model configuration: {e}"))?;
            let pretrained =
                Pretrained { backbone: Backbone::new(&config.vit, device), head: Head::new(&config.vit, device) };
            Ok(Setup {
                describe: format!(
                    "ViT, width {}, {} blocks, {} heads",
                    config.vit.d_model, config.vit.depth, config.vit.heads
                ),
                all: config.clone(),
                s3t: config,
                pretrained,
                splits,
                shape: (IMAGE_DEFAULTS.shards, l, usize::from(l)),
                batch_size: args.batch_size.unwrap_or(64),
                samples: args.samples.unwrap_or(2048),
                batch_nodes: args.batch_nodes.unwrap_or(16),
            })
        }
        BackboneArg::Hf(dir) => {
            let source = Source::parse(&args.data)?;
            if !source.is_text() {
                bail!("--data {}: a text encoder is measured on texts (`mr` or `text:FILE`)", source.describe());
            }
            let hf = HfDir::open(&dir)?;
            let max_tokens = args.model.max_tokens;
            let tokenizer = hf.tokenizer(max_tokens)?;
            let (splits, labels) = source.load_text(&source.text_fields(args.model.fields()), &tokenizer, quiet)?;
            let (m, l) = (TEXT_DEFAULTS.shards, TEXT_DEFAULTS.slices);
            let depth = hf.config.num_hidden_layers;
            let config = |groups, per| {
                let mut config = hf.config.model_config(
                    labels.len(),
                    groups,
                    per,
                    max_tokens,
                    LoraConfig::new().with_rank(8).with_alpha(16.0),
                )?;
                if let Some(text) = config.text.as_mut() {
                    text.packed = Some(!args.padded);
                }
                Ok::<_, s3t::Error>(config)
            };
            // One group of every layer: the peer's `--groups 1`. The S3T layout: the default bundle's groups.
            let per = args.layers_per_group.unwrap_or_else(|| text_layers_per_group(depth, l));
            let all = config(1, depth).map_err(|e| anyhow!("{}/config.json: {e}", hf.source.dir))?;
            // A layout that does not fit the encoder is the flag's fault, not the encoder's.
            let s3t = config(usize::from(l), per).map_err(|e| anyhow!("--layers-per-group {per}: {e}"))?;
            let backbone = hf.backbone(&all, device)?;
            let pretrained = Pretrained { head: Head::new(&all.vit, device), backbone };
            Ok(Setup {
                describe: format!(
                    "{} ({}, {} layers, width {}), {} tokens ({}), LoRA rank 8 on query and value, S3T groups of \
                     {} layers",
                    dir.display(),
                    hf.config.model_type,
                    depth,
                    all.vit.d_model,
                    max_tokens,
                    if args.padded { "padded" } else { "packed" },
                    per
                ),
                all,
                s3t,
                pretrained,
                splits,
                shape: (m, l, usize::from(l)),
                batch_size: args.batch_size.unwrap_or(32),
                samples: args.samples.unwrap_or(192),
                batch_nodes: args.batch_nodes.unwrap_or(threads),
            })
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    if args.threads == Some(0) {
        return Err(anyhow!("--threads 0: at least one thread"));
    }
    let selected = choose(args.device, args.json)?;
    let device = &selected.device;
    device.seed(args.seed);
    // Throughput does not depend on the weights' values: a fresh backbone (or the encoder as it comes) and a fresh
    // head serve.
    let setup = setup(args, device, args.json)?;
    let (m, l, b) = setup.shape;
    let Setup { all, s3t: config, pretrained, splits, .. } = &setup;

    // 1. Training throughput: every adapter and the head (a SISA checkpoint or a full fine-tune step), and an S3T
    //    node step of the top group (only the layers of group 1 run, from cached activations); each alone and
    //    `--batch-nodes` runs at a time (every run on the same samples with its own seed, as a plan level is).
    let n = setup.samples.min(splits.deletable.len());
    let data = splits.deletable.select(&(0..n).collect::<Vec<_>>());
    let subset: Vec<usize> = (0..n).collect();
    let one_epoch = TrainConfig::new().with_epochs(1).with_batch_size(setup.batch_size);
    let all_features = Features::new(all, &pretrained.backbone, &data, device);
    let features = Features::new(config, &pretrained.backbone, &data, device);
    let width = setup.batch_nodes.max(1);
    let threads = Batching::threaded(args.threads.unwrap_or_else(cpu_threads));
    let all_adapters = |samples: &[usize], runs: usize, batching: Batching| {
        let runs: Vec<SisaRun<'_>> = (0..runs as u64)
            .map(|seed| SisaRun { previous: None, samples: samples.to_vec(), seed, run: one_epoch.clone() })
            .collect();
        let (h, b) = (&pretrained.head, &pretrained.backbone);
        let inputs =
            TrainInputs { config: all, backbone: b, features: &all_features, data: &data, validation: None, device };
        train_sisas(&inputs, h, &runs, batching, &mut |_| {});
    };
    let top_group = |samples: &[usize], runs: usize, batching: Batching| {
        let runs: Vec<NodeRun<'_>> = (0..runs as u64)
            .map(|seed| NodeRun {
                frozen: Vec::new(),
                parent_head: &pretrained.head,
                samples: samples.to_vec(),
                seed,
                run: one_epoch.clone(),
            })
            .collect();
        let b = &pretrained.backbone;
        let inputs = TrainInputs { config, backbone: b, features: &features, data: &data, validation: None, device };
        train_nodes(&inputs, &runs, batching, &mut |_| {});
    };
    let throughput = |f: &dyn Fn(&[usize], usize, Batching), runs: usize, batching: Batching| {
        // One batch of each kind first, untimed: a GPU compiles its kernels at their first use.
        f(&subset[..one_epoch.batch_size.min(n)], runs, batching);
        let started = Instant::now();
        f(&subset, runs, batching);
        (n * runs) as f64 / started.elapsed().as_secs_f64()
    };
    let alone = Batching::stacked(1);
    let stacked = Batching::stacked(width);
    // A GPU has one queue: threads would only interleave its launches.
    let threaded = (!selected.is_gpu).then_some(threads);
    let measure = |f: &dyn Fn(&[usize], usize, Batching)| {
        (throughput(f, 1, alone), throughput(f, width, stacked), threaded.map(|t| throughput(f, width, t)))
    };
    let (train_samples_per_s, train_batched_samples_per_s, train_threaded_samples_per_s) = measure(&all_adapters);
    let (node_samples_per_s, node_batched_samples_per_s, node_threaded_samples_per_s) = measure(&top_group);
    let line = |what: &str, one: f64, batched: f64, threaded: Option<f64>| {
        let threaded = threaded.map_or(String::new(), |t| format!(" / {t:.1} ({:.2}×)", t / one));
        format!("  {what}: {one:.1} / {batched:.1} ({:.2}×){threaded} samples/s\n", batched / one)
    };
    let threaded_label = threaded.map_or(String::new(), |t| format!(" / {width} runs on {} threads", t.threads));
    let share = real_token_share(&data)
        .map_or(String::new(), |s| format!(" ({:.0} % of the positions real tokens)", s * 100.0));
    let throughput_text = format!(
        "device: {}\nmodel: {}\n{n} samples{share}, batch {}; training throughput, one run alone / {width} runs \
         stacked{threaded_label}:\n{}{}",
        selected.name,
        setup.describe,
        setup.batch_size,
        line("all adapters", train_samples_per_s, train_batched_samples_per_s, train_threaded_samples_per_s),
        line("S3T top-group step", node_samples_per_s, node_batched_samples_per_s, node_threaded_samples_per_s),
    );
    let mut report = serde_json::json!({
        "device": selected.name,
        "model": setup.describe,
        "text": config.text.is_some(),
        "max_tokens": config.text.as_ref().map(|t| t.max_tokens),
        "packed": config.text.as_ref().map(|t| t.packs()),
        "real_token_share": real_token_share(&data),
        "d_model": config.vit.d_model,
        "depth": config.vit.depth,
        "layers_per_group": config.layers_per_group,
        "heads": config.vit.heads,
        "samples": n,
        "batch_size": setup.batch_size,
        "batch_nodes": width,
        "threads": threaded.map(|t| t.threads),
        "train_samples_per_s": train_samples_per_s,
        "train_batched_samples_per_s": train_batched_samples_per_s,
        "train_threaded_samples_per_s": train_threaded_samples_per_s,
        "node_train_samples_per_s": node_samples_per_s,
        "node_train_batched_samples_per_s": node_batched_samples_per_s,
        "node_train_threaded_samples_per_s": node_threaded_samples_per_s,
    });
    if args.throughput_only {
        if args.json {
            return output::print(&format!("{}\n", serde_json::to_string_pretty(&report)?));
        }
        return output::print(&throughput_text);
    }

    // 2. One deletion, in the default bundle's layout (m shards, L slices, B = L cyclic sequences) over the whole
    //    deletable split.
    let deletable = &splits.deletable;
    let epochs = if config.text.is_some() { TEXT_DEFAULTS.epochs } else { IMAGE_DEFAULTS.epochs };
    let train = TrainConfig::new().with_epochs(epochs);
    let train = train.with_batch_size(setup.batch_size);
    let features = Features::new(config, &pretrained.backbone, deletable, device);
    let partition = Partition::new(m, l, PartitionMode::Balanced)?;
    let assignment = partition.assign((0..deletable.len() as u64).map(SampleId::Int))?;
    let plan = Plan::new(m, l, b, &Strategy::Cyclic)?;
    let router = Router::new(assignment.clone(), &plan)?;
    let id = SampleId::Int(ChaCha8Rng::seed_from_u64(args.seed).random_range(0..deletable.len() as u64));
    let cell = assignment.cell(&id).ok_or_else(|| anyhow!("sample {id} is not deletable"))?;
    let test = Features::new(config, &pretrained.backbone, &splits.test, device);
    let classes = config.vit.classes;
    let nodes: Vec<_> = (1..=config.groups).map(|g| node_skeleton(config, g, device)).collect();
    let evaluate = |groups: &[&GroupAdapter], head: &Head| {
        softmax_rows(&logits_all(config, &pretrained.backbone, Component { groups, head }, &test), classes)
    };
    // The other shards' outputs are memoised, as a server keeps them.
    let all_groups: Vec<&GroupAdapter> = nodes.iter().map(|n| &n.adapter).collect();
    let others: Vec<Vec<f32>> = (1..m).map(|_| evaluate(&all_groups, &nodes[usize::from(l) - 1].head)).collect();
    let dir = tempfile::tempdir()?;
    let mut ledger = Ledger::create(dir.path().join("deletions.ledger"))?;
    let mut state = router.initial();
    let started = Instant::now();
    let action = Action::Delete(id.clone());
    router.apply_in_place(&mut state, &action)?;
    ledger.append(&action)?;
    let served = state.served(cell.shard);
    if let Some(served) = served {
        // The newly served prefix is evaluated once (a node not memoised yet), then the ensemble is re-averaged.
        let k = usize::from(served.prefix);
        let fresh = evaluate(&all_groups[..k], &nodes[k - 1].head);
        let mut tables: Vec<&[f32]> = others.iter().map(Vec::as_slice).collect();
        tables.push(&fresh);
        std::hint::black_box(mean_probabilities(&tables));
    }
    let s3t_delete_to_serve_s = started.elapsed().as_secs_f64();

    // 3. SISA for the same deletion: checkpoints from the deleted slice's onwards are retrained on the shard's
    //    slices 0..k without the sample (checkpoint j stays: it never saw slice j).
    let shard_samples = |k: u16| -> Vec<usize> {
        (0..k)
            .flat_map(|slice| assignment.members(Cell { shard: cell.shard, slice }).iter())
            .filter(|x| **x != id)
            .filter_map(|x| if let SampleId::Int(i) = x { Some(*i as usize) } else { None })
            .collect()
    };
    let validation = Features::embedded(config, &pretrained.backbone, &splits.validation, device);
    let started = Instant::now();
    let mut previous = None;
    for k in (cell.slice + 1)..=l {
        let inputs = TrainInputs {
            config,
            backbone: &pretrained.backbone,
            features: &features,
            data: deletable,
            // SISA's checkpoints are selected on the validation split, as `trainer build` does.
            validation: Some((&validation, &splits.validation.labels)),
            device,
        };
        let run = train.for_slices(usize::from(k), usize::from(l));
        let run = SisaRun { previous: previous.as_ref(), samples: shard_samples(k), seed: 3, run };
        let params = train_sisa(&inputs, &pretrained.head, run, &mut |_| {});
        previous = Some(params);
    }
    let sisa_retrain_s = started.elapsed().as_secs_f64();
    let deletion = serde_json::json!({
        "deleted_id": id.to_string(),
        "deleted_slice": cell.slice,
        "s3t_delete_to_serve_s": s3t_delete_to_serve_s,
        "s3t_served_prefix_after": served.map(|s| s.prefix),
        "sisa_retrain_s": sisa_retrain_s,
        "sisa_checkpoints_retrained": l - cell.slice,
        "sisa_over_s3t": sisa_retrain_s / s3t_delete_to_serve_s,
    });
    if let (Some(report), serde_json::Value::Object(deletion)) = (report.as_object_mut(), deletion) {
        report.extend(deletion);
    }
    if args.json {
        return output::print(&format!("{}\n", serde_json::to_string_pretty(&report)?));
    }
    output::print(&format!(
        "{throughput_text}one deletion (sample {id}, shard {}, slice {}; {m} shards, {l} slices):\n  S3T apply + \
         fsync + serve: {:.4} s\n  SISA retrain of {} checkpoints: {sisa_retrain_s:.2} s\n  ratio SISA / S3T: {:.0}×\n",
        cell.shard,
        cell.slice,
        s3t_delete_to_serve_s,
        l - cell.slice,
        sisa_retrain_s / s3t_delete_to_serve_s
    ))
}

/// The share of real tokens among the positions of the measured texts (`None` for images): what packing saves.
fn real_token_share(data: &s3t::dataset::Dataset) -> Option<f64> {
    let text = data.text.as_ref()?;
    let real: usize = text.lengths.iter().map(|&l| l as usize).sum();
    Some(real as f64 / (text.lengths.len() * data.cols as usize).max(1) as f64)
}
