//! `trainer export`: the adapters of each shard's served component as PEFT-style safetensors.
//!
//! Per live shard, `OUT/shard-I/adapter_model.safetensors` holds `base_model.model.blocks.N.{query,value}.
//! lora_{A,B}.weight` in PyTorch layout (A: [r, in], B: [out, r]; the update is `alpha / r · B·A`), the head as
//! `base_model.model.head.linear.{weight,bias}` ([out, in]), and `adapter_config.json` the LoRA settings plus the
//! served sequence and prefix. The backbone is `weights/backbone.safetensors` of the bundle (burn layout, Linear
//! weights [in, out]).
//!
//! `--format web` writes what the web app shows next to a bundle: `OUT/data/{deletable,test}-{images-idx3,
//! labels-idx1}-ubyte.gz`, the deletable split (checked against the bundle) and the first `--test-limit` test images.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use burn::module::Param;
use burn::tensor::Tensor;
use clap::ValueEnum;
use s3t::bundle::store::write_atomic;
use s3t::dataset::to_idx_gz;
use s3t::model::features::to_host;
use safetensors::tensor::{Dtype, TensorView};

use crate::bundle_dir::Bundle;
use crate::output;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// safetensors with PEFT-style tensor names and an adapter_config.json.
    Safetensors,
    /// The data files the web app loads (deletable split, test subset) as gzip-compressed IDX.
    Web,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Export format.
    #[arg(long, value_enum, default_value_t = Format::Safetensors)]
    pub format: Format,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// `--format web`: the data the bundle was built from.
    #[arg(long, default_value = "default")]
    pub data: String,
    /// `--format web`: how many test images the web app evaluates (the first N of the test split).
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub test_limit: usize,
}

/// A host tensor: row-major f32 values and shape.
struct HostTensor {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Transposes a burn [in, out] matrix into PyTorch's [out, in].
fn transposed(param: &Param<Tensor<2>>) -> HostTensor {
    let t = param.val().transpose();
    let shape = t.dims().to_vec();
    HostTensor { shape, bytes: to_host(t).iter().flat_map(|v| v.to_le_bytes()).collect() }
}

fn vector(param: &Param<Tensor<1>>) -> HostTensor {
    let t = param.val();
    let shape = t.dims().to_vec();
    HostTensor { shape, bytes: to_host(t).iter().flat_map(|v| v.to_le_bytes()).collect() }
}

pub fn run(args: &Args) -> Result<()> {
    match args.format {
        Format::Safetensors => safetensors(args),
        Format::Web => web(args),
    }
}

fn web(args: &Args) -> Result<()> {
    let bundle = Bundle::open(&args.bundle)?;
    let splits = crate::cli::checked_data(&bundle, &args.data)?;
    let dir = args.out.join("data");
    for (name, data) in [("deletable", splits.deletable), ("test", splits.test.head(args.test_limit))] {
        let (images, labels) = to_idx_gz(&data);
        for (kind, bytes) in [("images-idx3", images), ("labels-idx1", labels)] {
            write_atomic(&dir.join(format!("{name}-{kind}-ubyte.gz")), &bytes).map_err(|e| anyhow!(e))?;
        }
    }
    output::print(&format!("wrote the web app's data to {}\n", dir.display()))
}

fn safetensors(args: &Args) -> Result<()> {
    let bundle = Bundle::open(&args.bundle)?;
    let state = bundle.state(&bundle.actions()?)?;
    let device = burn::tensor::Device::flex();
    let model = bundle.load_model(&device)?;
    let config = model.config().clone();
    let mut written = 0;
    for shard in 0..state.shards() {
        let Some(served) = state.served(shard) else {
            output::note(&format!("shard {shard} is offline: nothing to export"));
            continue;
        };
        let (groups, head) = model.component(shard, served);
        let mut tensors: Vec<(String, HostTensor)> = Vec::new();
        for group in &groups {
            for (adapter, block) in group.blocks.iter().zip(config.blocks_of_group(group.group)) {
                let base = format!("base_model.model.blocks.{block}");
                // burn: x·A·B with A [in, r], B [r, out]; PyTorch/PEFT: B·A·x with A [r, in], B [out, r].
                tensors.push((format!("{base}.query.lora_A.weight"), transposed(&adapter.query_a)));
                tensors.push((format!("{base}.query.lora_B.weight"), transposed(&adapter.query_b)));
                tensors.push((format!("{base}.value.lora_A.weight"), transposed(&adapter.value_a)));
                tensors.push((format!("{base}.value.lora_B.weight"), transposed(&adapter.value_b)));
            }
        }
        tensors.push(("base_model.model.head.linear.weight".into(), transposed(&head.linear.weight)));
        if let Some(bias) = &head.linear.bias {
            tensors.push(("base_model.model.head.linear.bias".into(), vector(bias)));
        }
        let views = tensors
            .iter()
            .map(|(name, t)| Ok((name.clone(), TensorView::new(Dtype::F32, t.shape.clone(), &t.bytes)?)))
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(|e| anyhow!("shard {shard}: {e}"))?;
        let mut metadata = HashMap::new();
        metadata.insert("format".to_owned(), "pt".to_owned());
        let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| anyhow!("shard {shard}: {e}"))?;
        let dir = args.out.join(format!("shard-{shard}"));
        std::fs::create_dir_all(&dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
        s3t::bundle::store::write_atomic(&dir.join("adapter_model.safetensors"), &bytes).map_err(|e| anyhow!(e))?;
        let adapter_config = serde_json::json!({
            "peft_type": "LORA",
            "r": config.lora.rank,
            "lora_alpha": config.lora.alpha,
            "lora_dropout": 0.0,
            "target_modules": ["query", "value"],
            "modules_to_save": ["head"],
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "base_model_name_or_path": "weights/backbone.safetensors",
            "s3t": { "shard": shard, "sequence": served.sequence, "prefix": served.prefix,
                     "slices": model.plan.shards[usize::from(shard)].sequences[served.sequence].prefix(usize::from(served.prefix)) },
        });
        s3t::bundle::store::write_atomic(
            &dir.join("adapter_config.json"),
            serde_json::to_string_pretty(&adapter_config)?.as_bytes(),
        )
        .map_err(|e| anyhow!(e))?;
        written += 1;
    }
    output::print(&format!("exported {written} served components to {}\n", args.out.display()))
}
