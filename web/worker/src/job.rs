//! One retrain job: load what `trainer retrain` reads (manifest, backbone, the reusable nodes, the deletable and
//! validation splits), rebuild the shard with the shared build code, and post the result.

use std::cell::OnceCell;
use std::collections::{BTreeSet, HashSet};

use burn::tensor::Device;
use s3t::bundle::guard::Guard;
use s3t::bundle::retrain::{Backend, Report, Request, node_samples, subtrees};
use s3t::bundle::samples::DATA_DIR;
use s3t::bundle::web::split_file;
use s3t::bundle::{Manifest, NodeEntry, WeightFile};
use s3t::dataset::{Dataset, Splits};
use s3t::model::build::{BuildContext, BuildEvent, MemoryStore, ShardJob, build_shards_async, shard_rows};
use s3t::model::device::software;
use s3t::model::exported::{self, RetrainFiles};
use s3t::model::features::Features;
use s3t::model::parallel::Batching;
use s3t::model::weights::load_safetensors;
use s3t::model::{Backbone, Head, Pretrained};
use s3t::partition::Assignment;
use s3t::{Node, Plan, SampleId, ShardPlan};
use s3t_host::frames::post;
use s3t_host::time::{now, worker_timing as timing};
use s3t_host::{bundle, fetch};

/// Nodes of one depth trained as one stacked computation on WebGPU (a demo shard has at most 16 per depth).
const GPU_BATCH_NODES: usize = 16;

/// What `trainer retrain` reads besides the manifest: the pretrained model (the frozen backbone and head) and the
/// deletable and validation splits. A text bundle's export ships its encoder in two parts, the layers above the
/// bottom group's boundary and the rest below (loaded only now: the page itself never needs them), joined here
/// into the whole encoder, since the shard's reviews go through it from their token ids as they do natively.
async fn inputs(base: &str, manifest: &Manifest, device: &Device) -> Result<(Pretrained, Dataset, Dataset), String> {
    let config = &manifest.model;
    let backbone = bundle::weights(base, &manifest.backbone.weights).await?;
    if config.text.is_none() {
        let skeleton =
            Pretrained { backbone: Backbone::new(&config.vit, device), head: Head::new(&config.vit, device) };
        let pretrained =
            load_safetensors(skeleton, backbone, &manifest.backbone.weights.path).map_err(|e| e.to_string())?;
        let deletable = bundle::split(base, "deletable", manifest, async || {}).await?;
        return Ok((pretrained, deletable, bundle::split(base, "validation", manifest, async || {}).await?));
    }
    let index = bundle::text_index(base).await?;
    let get = |file: &WeightFile| format!("{base}/{}", file.path);
    let files = RetrainFiles {
        head: backbone,
        below: fetch::bytes(&get(&index.below)).await?,
        above: fetch::bytes(&get(&index.encoder)).await?,
        deletable: fetch::bytes(&format!("{base}/{}", split_file("deletable"))).await?,
        validation: fetch::bytes(&get(&index.validation_texts)).await?,
    };
    exported::retrain_inputs(manifest, &index, files, device).map_err(|e| e.to_string())
}

/// What the manifest and the deletions say about a retrain: the shard's nodes, which are reused, and the work.
pub struct Setup {
    pub manifest: Manifest,
    pub plan: Plan,
    pub assignment: Assignment,
    pub guard: Guard,
    /// The nodes `trainer retrain` would reuse: exactly those whose lineage holds no deleted sample.
    pub reuse: Vec<Option<NodeEntry>>,
    /// Nodes of the shard.
    pub total: usize,
    pub generation: u32,
}

impl Setup {
    pub async fn load(request: &Request) -> Result<Self, String> {
        let (manifest, manifest_url) = bundle::manifest(&request.bundle).await?;
        let plan = manifest.plan().map_err(|e| format!("{manifest_url}: {e}"))?;
        let assignment = manifest.assignment().map_err(|e| format!("{manifest_url}: {e}"))?;
        let entries = manifest
            .nodes
            .get(usize::from(request.shard))
            .ok_or_else(|| format!("{manifest_url}: the bundle has no shard {}", request.shard))?;
        let guard = Guard::new(&assignment, request.deleted.iter().cloned());
        let reuse = guard.reusable(entries);
        let generation = entries.iter().map(|e| e.generation).max().unwrap_or(0) + 1;
        let total = entries.len();
        Ok(Self { manifest, plan, assignment, guard, reuse, total, generation })
    }

    pub fn shard_plan(&self, shard: u16) -> &ShardPlan {
        &self.plan.shards[usize::from(shard)]
    }

    /// A node's training work: its clean samples × passes if it is retrained, else nothing.
    pub fn work(&self, node: &Node) -> usize {
        if self.reuse.get(node.id).is_some_and(Option::is_some) {
            return 0;
        }
        node_samples(&self.manifest, &self.assignment, &self.guard, node, self.plan.slices)
    }

    /// The `Started` report of the nodes in `only` (all: `None`), trained on `backend` (in words).
    pub fn started(&self, shard: u16, only: Option<&BTreeSet<usize>>, backend: &str) -> Report {
        let stale = self
            .shard_plan(shard)
            .nodes
            .iter()
            .filter(|n| only.is_none_or(|o| o.contains(&n.id)) && self.reuse.get(n.id).is_none_or(Option::is_none));
        let (nodes, samples) = stale.fold((0, 0), |(count, samples), n| (count + 1, samples + self.work(n)));
        Report::Started { shard, nodes, total: self.total, samples, backend: backend.to_owned() }
    }
}

/// Retrains the nodes of `request.roots`' subtrees on the CPU (a helper's share).
pub async fn helper(request: &Request) -> Result<(), String> {
    let started = now();
    let setup = Setup::load(request).await?;
    train(request, setup, started, Target::cpu()).await
}

/// Where a job trains.
pub struct Target {
    pub device: Device,
    pub is_gpu: bool,
    /// A software adapter (WebGPU), or why the CPU when WebGPU was asked for or passed over: one plain phrase for
    /// the page (the adapter's own message goes to the console).
    pub note: Option<String>,
}

thread_local! {
    /// The worker's WebGPU device, or why there is none: an adapter is requested once per worker.
    static WEBGPU: OnceCell<Result<Device, String>> = const { OnceCell::new() };
}

impl Target {
    pub fn cpu() -> Self {
        Self { device: Device::flex(), is_gpu: false, note: None }
    }

    fn cpu_because(why: &str) -> Self {
        Self { note: Some(why.to_owned()), ..Self::cpu() }
    }

    /// WebGPU when the request allows it and the worker gets an adapter (with `Auto`, a hardware one: on a software
    /// adapter the CPU backend is faster), else the CPU.
    pub async fn select(choice: Backend) -> Result<Self, String> {
        if choice == Backend::Cpu {
            return Ok(Self::cpu());
        }
        let known = WEBGPU.with(|cell| cell.get().cloned());
        let webgpu = match known {
            Some(result) => result,
            None => {
                let result = Device::wgpu_options().init_async().await.map_err(|e| e.to_string());
                if let Err(e) = &result {
                    web_sys::console::log_1(&format!("s3t worker: no WebGPU adapter: {e}").into());
                }
                WEBGPU.with(|cell| cell.get_or_init(|| result).clone())
            }
        };
        match webgpu {
            Ok(device) if choice == Backend::Gpu || !software(&device) => {
                let note = software(&device).then(|| "software adapter".to_owned());
                Ok(Self { device, is_gpu: true, note })
            }
            Ok(_) => Ok(Self::cpu_because("the WebGPU adapter is a software one, slower than the CPU")),
            Err(_) if choice == Backend::Auto => Ok(Self::cpu_because("no WebGPU adapter in this browser")),
            Err(e) => Err(format!("WebGPU in the worker: {e}")),
        }
    }

    /// Where it trains, in words, with `helpers` helper workers on the CPU (0: none).
    pub fn describe(&self, helpers: usize) -> String {
        let base = match (self.is_gpu, helpers) {
            (true, _) => "WebGPU".to_owned(),
            (false, 0 | 1) => "CPU".to_owned(),
            (false, n) => format!("CPU, {n} helper workers"),
        };
        match &self.note {
            Some(note) if self.is_gpu => format!("{base} ({note})"),
            Some(note) => format!("{base}: {note}"),
            None => base,
        }
    }
}

/// Retrains the nodes of `request.roots`' subtrees (a helper's share), or the whole shard, on `target`, with the
/// manifest already read (`started`: page time of the request).
pub async fn train(request: &Request, setup: Setup, started: f64, target: Target) -> Result<(), String> {
    let base = request.bundle.as_str();
    let shard = request.shard;
    let only = request.roots.as_ref().map(|roots| subtrees(setup.shard_plan(shard), roots));
    let Setup { manifest, plan, assignment, guard, reuse, generation, .. } = &setup;
    let store = MemoryStore::default();
    for entry in reuse.iter().flatten().filter(|e| only.as_ref().is_none_or(|o| o.contains(&e.id))) {
        store.insert(&entry.weights.path, bundle::weights(base, &entry.weights).await?);
    }
    let device = target.device.clone();
    let config = manifest.model.clone();
    let (pretrained, deletable, validation) = inputs(base, manifest, &device).await?;

    // The data, checked as the page checks it: each kept sample opens the bundle's commitment.
    let purged: HashSet<usize> = request.purged.iter().map(|&i| i as usize).collect();
    if let Some(i) = request.purged.iter().find(|&&i| !guard.is_deleted(&SampleId::Int(i))) {
        return Err(format!("sample {i} is purged from the page's data but not deleted"));
    }
    bundle::verify_deletable(base, manifest, &deletable, &purged).await?;
    if validation.len() != manifest.data.validation {
        return Err(format!(
            "{base}/{DATA_DIR}/validation: {} samples, but the bundle was built with {}",
            validation.len(),
            manifest.data.validation
        ));
    }
    let empty = validation.head(0);
    // Only this shard's samples go through the backbone (a quarter of the split at m = 4).
    let (order, rows) = shard_rows(assignment, plan.slices, shard, deletable.len());
    let data = Splits { public: empty.clone(), deletable: deletable.select(&order), validation, test: empty };
    timing("fetch and verify", started);
    let t = now();
    let features = Features::new(&config, &pretrained.backbone, &data.deletable, &device);
    let validation_features = Features::new(&config, &pretrained.backbone, &data.validation, &device);
    timing("backbone features", t);

    let is_deleted = |id: &SampleId| guard.is_deleted(id);
    post(&setup.started(shard, only.as_ref(), &target.describe(0)), &[]);

    let ctx = BuildContext {
        bundle: &store,
        config: &config,
        train: &manifest.train,
        seed: manifest.seed,
        data: &data,
        pretrained: &pretrained,
        assignment,
        plan,
        device: &device,
        features: &features,
        validation: &validation_features,
        // On a GPU a level's nodes train as one computation; on the CPU one at a time (the first arrives sooner,
        // and stacking saves nothing there). A node's lineage and seed do not depend on it.
        batching: Batching::stacked(if target.is_gpu { GPU_BATCH_NODES } else { request.batch_nodes }),
        rows: Some(&rows),
    };
    let (mut trained, mut nodes_done, mut last) = (0usize, 0usize, now());
    let job = ShardJob { shard, reuse: reuse.clone(), reuse_sisa: Vec::new(), generation: *generation, only };
    let mut events = |event| match event {
        BuildEvent::Progress { samples } => {
            trained += samples;
            // A few reports a second are enough for a progress bar.
            if now() - last > 150.0 {
                last = now();
                post(&Report::Progress { shard, samples: trained, nodes_done }, &[]);
            }
        }
        BuildEvent::Done { reused, label, .. } => {
            if !reused {
                timing(&format!("{label} done, since the request"), started);
            }
            nodes_done += usize::from(!reused);
            post(&Report::Progress { shard, samples: trained, nodes_done }, &[]);
        }
        BuildEvent::Start { .. } => {}
    };
    let part =
        build_shards_async(&ctx, &[job], false, &is_deleted, &mut events).await.map_err(|e| e.to_string())?.remove(0);
    let (mut retrained, mut weights) = (Vec::new(), Vec::new());
    for entry in part.nodes.iter().filter(|e| e.generation == *generation) {
        let path = &entry.weights.path;
        weights.push(store.take(path).ok_or_else(|| format!("{path}: trained but not stored"))?);
        retrained.push(entry.id);
    }
    let seconds = (now() - started) / 1000.0;
    post(&Report::Done { shard, after: request.after, nodes: part.nodes, retrained, seconds }, &weights);
    Ok(())
}
