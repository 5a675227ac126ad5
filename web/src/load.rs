//! Loading a bundle over HTTP: manifest, checksummed weights, the data the page shows, the device.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::Uint8Array;
use s3t::bundle::Manifest;
use s3t::bundle::manifest::verify_bytes;
use s3t::dataset::{self, Dataset};
use s3t::model::device::{DeviceChoice, select_async};
use s3t::model::features::Features;
use s3t::model::serve::{Evaluator, Model};
use s3t::{Plan, Router};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Test samples evaluated in the browser (the same subset as `trainer eval --test-limit`).
pub const TEST_SUBSET: usize = 500;
/// Samples per chunk of heavy work between yields to the page: on the CPU this keeps each task well under 200 ms;
/// on WebGPU the work runs off the main thread, and fewer, larger dispatches finish sooner.
pub fn chunk(is_gpu: bool) -> usize {
    if is_gpu { TEST_SUBSET } else { 100 }
}

/// Everything the session needs, loaded once.
pub struct Loaded {
    pub model: Model,
    pub router: Rc<Router>,
    pub sisa_router: Rc<Router>,
    pub plan: Plan,
    pub deletable: Dataset,
    pub test: Dataset,
    pub backend: String,
    pub is_gpu: bool,
    pub notice: Option<String>,
    /// Taken out while an evaluation runs (one at a time), put back after.
    pub evaluator: RefCell<Option<Evaluator>>,
}

pub async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let response = JsFuture::from(window.fetch_with_str(url)).await.map_err(|e| format!("{url}: {e:?}"))?;
    let response: web_sys::Response = response.dyn_into().map_err(|_| format!("{url}: not a response"))?;
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(|e| format!("{url}: {e:?}"))?)
        .await
        .map_err(|e| format!("{url}: {e:?}"))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// Gives the page a chance to render and handle input.
pub async fn yield_now() {
    gloo_timers::future::TimeoutFuture::new(0).await;
}

async fn split(base: &str, name: &str) -> Result<Dataset, String> {
    let images_url = format!("{base}/data/{name}-images-idx3-ubyte.gz");
    let labels_url = format!("{base}/data/{name}-labels-idx1-ubyte.gz");
    let images = fetch_bytes(&images_url).await?;
    let labels = fetch_bytes(&labels_url).await?;
    dataset::from_idx(&images_url, images, &labels_url, labels, 10).map_err(|e| e.to_string())
}

fn now() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

/// Logs how long a loading phase took (visible in the browser console; the browser tests report it).
pub fn timing(what: &str, since: f64) {
    web_sys::console::log_1(&format!("s3t timing: {what} {:.0} ms", now() - since).into());
}

pub async fn load(base: &str, progress: impl Fn(&str)) -> Result<Loaded, String> {
    let t = now();
    progress("manifest");
    let manifest_url = format!("{base}/manifest.json");
    let text = String::from_utf8(fetch_bytes(&manifest_url).await?).map_err(|e| format!("{manifest_url}: {e}"))?;
    let manifest = Manifest::from_json(&manifest_url, &text)?;
    progress("weights");
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for file in manifest.weight_files() {
        let bytes = fetch_bytes(&format!("{base}/{}", file.path)).await?;
        verify_bytes(file, &bytes)?;
        files.insert(file.path.clone(), bytes);
    }
    progress("data");
    let deletable = split(base, "deletable").await?;
    let test = split(base, "test").await?.head(TEST_SUBSET);
    let mut bytes = deletable.pixels.clone();
    bytes.extend_from_slice(&deletable.labels);
    if s3t::partition::hex(&sha256(&bytes)) != manifest.data.deletable_sha256 {
        return Err(format!("{base}/data: the deletable split is not the data the bundle was trained on"));
    }
    timing("fetch", t);
    let t = now();
    progress("device");
    let selected = select_async(DeviceChoice::Auto).await?;
    let backend = if selected.is_gpu { "WebGPU".to_owned() } else { "CPU".to_owned() };
    progress("model");
    yield_now().await;
    let model = Model::load(manifest, &selected.device, |file| {
        files.remove(&file.path).ok_or_else(|| format!("{}: not fetched", file.path))
    })?;
    let plan = model.plan.clone();
    let assignment = model.manifest.assignment().map_err(|e| e.to_string())?;
    let router = model.manifest.router(assignment.clone(), &plan).map_err(|e| e.to_string())?;
    let sisa_router = Router::new(assignment, &model.sisa_plan).map_err(|e| e.to_string())?;
    timing("device and weights", t);
    let t = now();
    progress("features");
    let mut parts = Vec::new();
    let indices: Vec<usize> = (0..test.len()).collect();
    for chunk in indices.chunks(chunk(selected.is_gpu)) {
        parts.push(Features::new(model.config(), &model.pretrained.backbone, &test.select(chunk), &selected.device));
        yield_now().await;
    }
    let features = Features::concat(parts).ok_or("empty test subset")?;
    timing("test features", t);
    let evaluator = Evaluator::from_features(&model, features, test.labels.clone()).with_batch(chunk(selected.is_gpu));
    Ok(Loaded {
        router: Rc::new(router),
        sisa_router: Rc::new(sisa_router),
        plan,
        deletable,
        test,
        backend,
        is_gpu: selected.is_gpu,
        notice: selected.notice,
        evaluator: RefCell::new(Some(evaluator)),
        model,
    })
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    s3t::bundle::manifest::sha256(bytes)
}
