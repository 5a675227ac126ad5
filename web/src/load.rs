//! Loading a bundle over HTTP: manifest, checksummed weights, the data the page shows, the device.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::Uint8Array;
use s3t::bundle::Manifest;
use s3t::bundle::manifest::verify_bytes;
use s3t::dataset::{self, Dataset};
use s3t::model::device::{DeviceChoice, select_async};
use s3t::model::features::{EVAL_BATCH, Features};
use s3t::model::serve::{Evaluator, Model};
use s3t::{Plan, Router};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Test samples evaluated in the browser (the same subset as `trainer eval --test-limit`).
pub const TEST_SUBSET: usize = 500;

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
    /// Counts the evaluations requested; a running one that is not the latest stops early.
    pub generation: Cell<u64>,
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

/// Main-thread time heavy work may take between two yields to the page.
const PACE_MS: f64 = 20.0;

/// Paces heavy work: the model pauses between operations, and the pacer yields to the page only once `PACE_MS`
/// have passed since its last yield. A task then lasts at most that plus one operation (the slowest: a kernel's
/// compilation at its first launch, under 100 ms on a software adapter), and warm evaluations, whose operations
/// only queue GPU work, rarely yield at all.
pub struct Pacer {
    last: Cell<f64>,
}

impl Pacer {
    pub fn new() -> Self {
        Self { last: Cell::new(now()) }
    }

    pub async fn pause(&self) {
        if now() - self.last.get() >= PACE_MS {
            yield_now().await;
            self.last.set(now());
        }
    }
}

async fn split(base: &str, name: &str) -> Result<Dataset, String> {
    let images_url = format!("{base}/data/{name}-images-idx3-ubyte.gz");
    let labels_url = format!("{base}/data/{name}-labels-idx1-ubyte.gz");
    let images = fetch_bytes(&images_url).await?;
    let labels = fetch_bytes(&labels_url).await?;
    // Decompressing a split is the longest piece of loading: a task of its own.
    yield_now().await;
    let data = dataset::from_idx(&images_url, images, &labels_url, labels, 10).map_err(|e| e.to_string());
    yield_now().await;
    data
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
    yield_now().await;
    let t = now();
    progress("features");
    if test.is_empty() {
        return Err(format!("{base}/data: the test split is empty"));
    }
    let pacer = Pacer::new();
    let backbone = &model.pretrained.backbone;
    let pause = async || pacer.pause().await;
    let features =
        Features::embedded_paced(model.config(), backbone, &test, &selected.device, EVAL_BATCH, &pause).await;
    timing("test features", t);
    let evaluator = Evaluator::from_features(&model, features, test.labels.clone());
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
        generation: Cell::new(0),
        model,
    })
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    s3t::bundle::manifest::sha256(bytes)
}
