//! One retrain job: load what `trainer retrain` reads (manifest, backbone, the reusable nodes, the deletable and
//! validation splits), rebuild the shard with the shared build code, and post the result.

use std::collections::{HashMap, HashSet};

use burn::tensor::Device;
use js_sys::{Array, Uint8Array};
use s3t::bundle::guard::Guard;
use s3t::bundle::manifest::{MANIFEST_FILE, verify_bytes};
use s3t::bundle::retrain::{Report, Request};
use s3t::bundle::samples::{self, DATA_DIR, DIGESTS_FILE};
use s3t::bundle::{Manifest, WeightFile};
use s3t::dataset::{self, Dataset, Splits};
use s3t::model::build::{BuildContext, BuildEvent, MemoryStore, build_shard};
use s3t::model::features::Features;
use s3t::model::weights::load_safetensors;
use s3t::model::{Backbone, Head, Pretrained};
use s3t::{Cell, SampleId};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn now() -> f64 {
    scope().performance().map_or(0.0, |p| p.now())
}

/// Logs how long a phase took (the browser tests print the worker's console).
fn timing(what: &str, since: f64) {
    web_sys::console::log_1(&format!("s3t worker timing: {what} {:.0} ms", now() - since).into());
}

/// Posts a report, followed by `weights` (one byte array each) in the same message.
fn post(report: &Report, weights: &[Vec<u8>]) {
    let message = Array::new();
    message.push(&serde_json::to_string(report).unwrap_or_default().into());
    for bytes in weights {
        message.push(&Uint8Array::from(bytes.as_slice()));
    }
    // A failed post has no one to report to: the page notices the missing answer as a failed worker.
    let _ = scope().post_message(&message);
}

/// Installs the message handler (one request at a time: the page sends the next after `Done` or `Failed`).
pub fn listen() {
    let handler = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
        let Some(text) = event.data().as_string() else { return };
        wasm_bindgen_futures::spawn_local(async move {
            match serde_json::from_str::<Request>(&text) {
                Ok(request) => {
                    if let Err(error) = run(&request).await {
                        post(&Report::Failed { shard: request.shard, error }, &[]);
                    }
                }
                Err(e) => {
                    post(&Report::Failed { shard: 0, error: format!("the retrain request is not valid: {e}") }, &[])
                }
            }
        });
    });
    scope().set_onmessage(Some(handler.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    handler.forget();
    post(&Report::Ready, &[]);
}

async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let response = JsFuture::from(scope().fetch_with_str(url)).await.map_err(|e| format!("{url}: {e:?}"))?;
    let response: web_sys::Response = response.dyn_into().map_err(|_| format!("{url}: not a response"))?;
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(|e| format!("{url}: {e:?}"))?)
        .await
        .map_err(|e| format!("{url}: {e:?}"))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// A weight file of the bundle, checked against its manifest entry.
async fn fetch_weights(base: &str, file: &WeightFile) -> Result<Vec<u8>, String> {
    let bytes = fetch(&format!("{base}/{}", file.path)).await?;
    verify_bytes(file, &bytes)?;
    Ok(bytes)
}

/// A split the bundle's web export wrote; its images must have the shape the model reads.
async fn split(base: &str, name: &str, manifest: &Manifest) -> Result<Dataset, String> {
    let images_url = format!("{base}/{DATA_DIR}/{name}-images-idx3-ubyte.gz");
    let labels_url = format!("{base}/{DATA_DIR}/{name}-labels-idx1-ubyte.gz");
    let (images, labels) = (fetch(&images_url).await?, fetch(&labels_url).await?);
    let classes = u8::try_from(manifest.model.vit.classes).unwrap_or(u8::MAX);
    let data = dataset::from_idx(&images_url, images, &labels_url, labels, classes).map_err(|e| e.to_string())?;
    let side = manifest.model.vit.image_size;
    if data.rows as usize != side || data.cols as usize != side {
        return Err(format!("{images_url}: {}×{} images, but the model reads {side}×{side}", data.rows, data.cols));
    }
    Ok(data)
}

async fn run(request: &Request) -> Result<(), String> {
    let started = now();
    let base = request.bundle.as_str();
    let shard = request.shard;
    let manifest_url = format!("{base}/{MANIFEST_FILE}");
    let text = String::from_utf8(fetch(&manifest_url).await?).map_err(|e| format!("{manifest_url}: {e}"))?;
    let manifest = Manifest::from_json(&manifest_url, &text)?;
    let plan = manifest.plan().map_err(|e| format!("{manifest_url}: {e}"))?;
    let assignment = manifest.assignment().map_err(|e| format!("{manifest_url}: {e}"))?;
    let entries = manifest
        .nodes
        .get(usize::from(shard))
        .ok_or_else(|| format!("{manifest_url}: the bundle has no shard {shard}"))?;

    // The nodes `trainer retrain` would reuse: exactly those whose lineage holds no deleted sample.
    let guard = Guard::new(&assignment, request.deleted.iter().cloned());
    let reuse = guard.reusable(entries);
    let generation = entries.iter().map(|e| e.generation).max().unwrap_or(0) + 1;
    let store = MemoryStore::default();
    for entry in reuse.iter().flatten() {
        store.insert(&entry.weights.path, fetch_weights(base, &entry.weights).await?);
    }
    let device = Device::flex();
    let config = manifest.model.clone();
    let skeleton = Pretrained { backbone: Backbone::new(&config.vit, &device), head: Head::new(&config.vit, &device) };
    let backbone = fetch_weights(base, &manifest.backbone.weights).await?;
    let pretrained = load_safetensors(skeleton, backbone, &manifest.backbone.weights.path)?;

    // The data, checked as the page checks it: each kept sample opens the bundle's commitment.
    let deletable = split(base, "deletable", &manifest).await?;
    let digests_url = format!("{base}/{DIGESTS_FILE}");
    let digests = fetch(&digests_url).await?;
    let purged: HashSet<usize> = request.purged.iter().map(|&i| i as usize).collect();
    if let Some(i) = request.purged.iter().find(|&&i| !guard.is_deleted(&SampleId::Int(i))) {
        return Err(format!("sample {i} is purged from the page's data but not deleted"));
    }
    let file = format!("{base}/{DATA_DIR}/deletable");
    samples::verify(&file, &deletable, &digests, &manifest.data.deletable_digests_sha256, &purged)?;
    let validation = split(base, "validation", &manifest).await?;
    if validation.len() != manifest.data.validation {
        return Err(format!(
            "{base}/{DATA_DIR}/validation: {} samples, but the bundle was built with {}",
            validation.len(),
            manifest.data.validation
        ));
    }
    let empty = Dataset { pixels: Vec::new(), labels: Vec::new(), ..validation.clone() };
    // Only this shard's samples go through the backbone (a quarter of the split at m = 4): `rows` maps each id to
    // its row in that copy.
    let ids: Vec<u64> = (0..plan.slices)
        .flat_map(|slice| assignment.members(Cell { shard, slice }).iter())
        .filter_map(|id| if let SampleId::Int(i) = id { Some(*i) } else { None })
        .filter(|&i| (i as usize) < deletable.len())
        .collect();
    let order: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
    let rows: HashMap<u64, usize> = ids.iter().enumerate().map(|(row, &i)| (i, row)).collect();
    let data = Splits { public: empty.clone(), deletable: deletable.select(&order), validation, test: empty };
    timing("fetch and verify", started);
    let t = now();
    let features = Features::new(&config, &pretrained.backbone, &data.deletable, &device);
    let validation_features = Features::new(&config, &pretrained.backbone, &data.validation, &device);
    timing("backbone features", t);

    let stale: Vec<&s3t::Node> =
        plan.shards[usize::from(shard)].nodes.iter().filter(|n| reuse.get(n.id).is_none_or(Option::is_none)).collect();
    let is_deleted = |id: &SampleId| guard.is_deleted(id);
    let samples: usize = stale
        .iter()
        .map(|n| {
            let run = manifest.train.for_slices(n.prefix.len(), usize::from(plan.slices));
            let clean = n
                .prefix
                .iter()
                .map(|&slice| assignment.members(Cell { shard, slice }).iter().filter(|id| !is_deleted(id)).count())
                .sum::<usize>();
            clean * run.epochs
        })
        .sum();
    post(&Report::Started { shard, nodes: stale.len(), total: entries.len(), samples }, &[]);

    let ctx = BuildContext {
        bundle: &store,
        config: &config,
        train: &manifest.train,
        seed: manifest.seed,
        data: &data,
        pretrained: &pretrained,
        assignment: &assignment,
        plan: &plan,
        device: &device,
        features: &features,
        validation: &validation_features,
        batch_nodes: request.batch_nodes.max(1),
        rows: Some(&rows),
    };
    let (mut trained, mut nodes_done, mut last) = (0usize, 0usize, now());
    let part = build_shard(&ctx, shard, &reuse, &[], false, generation, &is_deleted, &mut |event| match event {
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
    })?;
    let retrained: Vec<usize> = part.nodes.iter().filter(|e| e.generation == generation).map(|e| e.id).collect();
    let mut weights = Vec::with_capacity(retrained.len());
    for &id in &retrained {
        let path = &part.nodes[id].weights.path;
        weights.push(store.take(path).ok_or_else(|| format!("{path}: trained but not stored"))?);
    }
    let seconds = (now() - started) / 1000.0;
    post(&Report::Done { shard, after: request.after, nodes: part.nodes, retrained, seconds }, &weights);
    Ok(())
}
