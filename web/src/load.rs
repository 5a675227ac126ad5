//! Loading a bundle over HTTP: manifest, deletion ledger, the weights the serving guard allows (checksummed), the
//! data the page shows (verified sample by sample), the device.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use s3t::bundle::guard::{Component, Guard};
use s3t::bundle::manifest::LEDGER_FILE;
use s3t::bundle::samples::DATA_DIR;
use s3t::bundle::web::TextExport;
use s3t::bundle::{Manifest, WeightFile};
use s3t::dataset::Dataset;
use s3t::model::device::{DeviceChoice, select_async};
use s3t::model::exported::{self, ExportFiles};
use s3t::model::features::{EVAL_BATCH, Features};
use s3t::model::serve::{Evaluator, Model};
use s3t::{Plan, Router};
use s3t_host::time::{now, timing, yield_now};
use s3t_host::{bundle, fetch};

use s3t::page::base::Base;

/// Test samples evaluated in the browser (the same subset as `trainer eval --test-limit`).
pub const TEST_SUBSET: usize = 500;

/// Everything the session needs, loaded once.
pub struct Loaded {
    /// The model served now: the bundle's, or with shards the page retrained. Replaced only while the evaluator
    /// is held (so no memoised output of a replaced node survives).
    pub model: RefCell<Rc<Model>>,
    /// The bundle's model as loaded: what Reset and a restored link return to.
    pub original: Rc<Model>,
    pub routers: Routers,
    /// The state after the bundle's ledger: where the session starts and where Reset returns.
    pub base: Rc<Base>,
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
    /// A text bundle's export index: where the rest of the encoder and the tokenizer are, loaded on first use.
    pub text_index: Option<TextExport>,
    /// The whole encoder, once a visitor has asked for it ("try your own sentence").
    pub whole: RefCell<Option<Rc<s3t::model::Backbone>>>,
    /// A load of the whole encoder is under way: another caller (a deletion meanwhile) waits for it.
    whole_loading: Cell<bool>,
    /// Milliseconds per sample per encoder layer, forward, as this page measured its first evaluations: what a
    /// retrain's estimate is made with.
    pub layer_ms: Cell<Option<f64>>,
}

impl Loaded {
    /// Whether the bundle reads texts (its samples are reviews, not images).
    pub fn is_text(&self) -> bool {
        self.original.config().text.is_some()
    }

    /// The name of class `class`: a text bundle's labels, or an image bundle's class names.
    pub fn class_name(&self, class: usize) -> String {
        class_name(&self.original.manifest.data.labels, class)
    }

    /// Every class's name, in class order.
    pub fn class_names(&self) -> Vec<String> {
        (0..self.original.config().vit.classes).map(|c| self.class_name(c)).collect()
    }

    /// Records a measured forward pass: `ms` for `samples` samples through `layers` encoder layers. The fastest
    /// measurement is kept (the first runs pay for warming up).
    pub fn measured(&self, ms: f64, samples: usize, layers: usize) {
        let per = ms / (samples.max(1) * layers.max(1)) as f64;
        if per > 0.0 && self.layer_ms.get().is_none_or(|known| per < known) {
            self.layer_ms.set(Some(per));
        }
    }

    /// The whole encoder of a text bundle (embedding included), fetched and checked against the export's index at
    /// the first call (`progress` says what loads), then kept.
    pub async fn whole(&self, progress: impl Fn(&str)) -> Result<Rc<s3t::model::Backbone>, String> {
        while self.whole_loading.get() {
            yield_now().await;
        }
        if let Some(whole) = self.whole.borrow().as_ref() {
            return Ok(whole.clone());
        }
        self.whole_loading.set(true);
        let loaded = self.load_whole(progress).await;
        self.whole_loading.set(false);
        let whole = Rc::new(loaded?);
        *self.whole.borrow_mut() = Some(whole.clone());
        Ok(whole)
    }

    async fn load_whole(&self, progress: impl Fn(&str)) -> Result<s3t::model::Backbone, String> {
        let index = self.text_index.as_ref().ok_or("an image bundle has no text encoder")?;
        let base = crate::source::Source::current().dir();
        let get = |file: &WeightFile| format!("{base}/{}", file.path);
        progress(&format!("loading the rest of the encoder ({:.1} MB)…", index.below.bytes as f64 / 1e6));
        let t = now();
        let below = fetch::bytes(&get(&index.below)).await?;
        // The layers above the boundary again: the page's copy went into its model (the browser's cache has it).
        let above = fetch::bytes(&get(&index.encoder)).await?;
        timing("whole encoder fetch", t);
        yield_now().await;
        let t = now();
        let model = self.model.borrow().clone();
        // Checksums, then one layer at a time: no main-thread task holds the whole load.
        let pacer = Pacer::new();
        let pause = async || pacer.pause().await;
        let encoder = exported::whole_encoder_paced(model.config(), index, &below, &above, &model.device, &pause)
            .await
            .map_err(|e| e.to_string())?;
        timing("whole encoder open", t);
        Ok(encoder)
    }

    /// Takes the evaluator out (one evaluation or model swap at a time), waiting while another holds it; the
    /// caller puts it back.
    pub async fn take_evaluator(&self) -> Evaluator {
        loop {
            if let Some(e) = self.evaluator.borrow_mut().take() {
                return e;
            }
            yield_now().await;
        }
    }
}

/// Fashion-MNIST's class names, for an image bundle that records none.
const CLASS_NAMES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// A class's name: the bundle's label names (a text bundle records them), else Fashion-MNIST's; another source's
/// classes are numbered.
fn class_name(labels: &[String], class: usize) -> String {
    match labels.get(class) {
        Some(label) => label.clone(),
        None if labels.is_empty() => {
            CLASS_NAMES.get(class).map_or_else(|| format!("class {class}"), |n| (*n).to_owned())
        }
        None => format!("class {class}"),
    }
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

/// The bundle's ledger replayed (a missing ledger is an empty one), checked by the serving guard: every component
/// the base state serves must have been trained without every deleted sample.
async fn ledger_base(
    base_url: &str,
    manifest: &Manifest,
    plan: &Plan,
    routers: &Routers,
) -> Result<(Base, Guard), String> {
    let ledger_url = format!("{base_url}/{LEDGER_FILE}");
    let base = match fetch::optional(&ledger_url).await? {
        None => Base::empty(&routers.s3t, &routers.sisa),
        Some(bytes) => {
            Base::from_ledger(&ledger_url, &bytes, &routers.s3t, &routers.sisa).map_err(|e| e.to_string())?
        }
    };
    let guard = Guard::new(routers.s3t.assignment(), base.deleted.iter().cloned());
    guard.check_served(manifest, plan, &base.state, Some(&base.sisa)).map_err(|e| format!("{base_url}: {e}"))?;
    Ok((base, guard))
}

/// The weight files the page may read: the backbone and the components the guard allows. The others saw a
/// deleted sample; the bundle may have removed them, and the page must not fetch them anyway.
fn allowed_files<'a>(manifest: &'a Manifest, guard: &Guard) -> Vec<&'a WeightFile> {
    let nodes = manifest
        .nodes
        .iter()
        .flatten()
        .filter(|e| guard.servable(manifest, Component::Node { shard: e.shard, id: e.id }))
        .map(|e| &e.weights);
    let sisa = manifest
        .sisa
        .iter()
        .flatten()
        .filter(|e| guard.servable(manifest, Component::Sisa { shard: e.shard, checkpoint: e.checkpoint }))
        .map(|e| &e.weights);
    std::iter::once(&manifest.backbone.weights).chain(nodes).chain(sisa).collect()
}

/// The test split: images as fetched, a text export as fetched, then opened (its activations ready).
enum Test {
    Images(Dataset),
    Exported(Box<(TextExport, ExportFiles)>),
    Embedded(Box<(Dataset, Features)>),
}

/// A text bundle's export for the page ([`web`]): its index and the files it names, fetched (checked when opened).
async fn text_export(base_url: &str) -> Result<(TextExport, ExportFiles), String> {
    let index = bundle::text_index(base_url).await?;
    let get = |file: &WeightFile| format!("{base_url}/{}", file.path);
    let files = ExportFiles {
        encoder: fetch::bytes(&get(&index.encoder)).await?,
        activations: fetch::bytes(&get(&index.activations)).await?,
        test: fetch::bytes(&get(&index.test_texts)).await?,
    };
    Ok((index, files))
}

/// Both routers of a bundle (they never change during a session).
pub struct Routers {
    pub s3t: Rc<Router>,
    pub sisa: Rc<Router>,
}

impl Routers {
    fn new(manifest: &Manifest, plan: &Plan) -> Result<Self, String> {
        let assignment = manifest.assignment().map_err(|e| e.to_string())?;
        let sisa_plan = manifest.sisa_plan().map_err(|e| e.to_string())?;
        let s3t = manifest.router(assignment.clone(), plan).map_err(|e| e.to_string())?;
        let sisa = Router::new(assignment, &sisa_plan).map_err(|e| e.to_string())?;
        Ok(Self { s3t: Rc::new(s3t), sisa: Rc::new(sisa) })
    }
}

pub async fn load(base_url: &str, progress: impl Fn(&str)) -> Result<Loaded, String> {
    let t = now();
    progress("manifest");
    let (manifest, manifest_url) = bundle::manifest(base_url).await?;
    let plan = manifest.plan().map_err(|e| format!("{manifest_url}: {e}"))?;
    let routers = Routers::new(&manifest, &plan).map_err(|e| format!("{manifest_url}: {e}"))?;
    progress("deletion ledger");
    let (base, guard) = ledger_base(base_url, &manifest, &plan, &routers).await?;
    progress("weights");
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for file in allowed_files(&manifest, &guard) {
        if files.contains_key(&file.path) {
            continue;
        }
        files.insert(file.path.clone(), bundle::weights(base_url, file).await?);
    }
    progress("data");
    // Each kept sample must be the one the bundle was trained on and each sample the ledger deleted must be purged
    // (no copy of forgotten data is shown, or even accepted).
    let deletable = bundle::deletable(base_url, &manifest, &base.deleted_indices(), yield_now).await?;
    // The test split: images, embedded once loaded; or a text bundle's export, its activations ready.
    let test = match manifest.model.text.is_some() {
        true => Test::Exported(Box::new(text_export(base_url).await?)),
        false => Test::Images(bundle::split(base_url, "test", &manifest, yield_now).await?.head(TEST_SUBSET)),
    };
    timing("fetch", t);
    let t = now();
    progress("device");
    let selected = select_async(DeviceChoice::Auto).await.map_err(|e| e.to_string())?;
    let backend = if selected.is_gpu { "WebGPU".to_owned() } else { "CPU".to_owned() };
    progress("model");
    yield_now().await;
    let config = manifest.model.clone();
    let classes = manifest.data.classes;
    // A text bundle's encoder: its layers from the frozen base up, and the test reviews' activations there.
    let (encoder, test, text_index) = match test {
        Test::Exported(export) => {
            let (index, files) = *export;
            let opened =
                exported::open(&config, classes, &index, files, &selected.device).map_err(|e| e.to_string())?;
            (Some(opened.encoder), Test::Embedded(Box::new((opened.test, opened.features))), Some(index))
        }
        images => (None, images, None),
    };
    let servable = |m: &Manifest, c| guard.servable(m, c);
    let read = |file: &WeightFile| {
        files.remove(&file.path).ok_or_else(|| s3t::Error::mismatch(format!("{}: not fetched", file.path)))
    };
    let model = Model::load_with(manifest, encoder, &selected.device, servable, read).map_err(|e| e.to_string())?;
    timing("device and weights", t);
    yield_now().await;
    let t = now();
    progress("features");
    let (test, features) = match test {
        Test::Embedded(embedded) => *embedded,
        Test::Exported(_) => return Err("the text export was not opened".into()),
        Test::Images(test) => {
            if test.is_empty() {
                return Err(format!("{base_url}/{DATA_DIR}: the test split is empty"));
            }
            let pacer = Pacer::new();
            let backbone = &model.pretrained.backbone;
            let pause = async || pacer.pause().await;
            let features =
                Features::embedded_paced(&config, backbone, &test, &selected.device, EVAL_BATCH, &pause).await;
            (test, features)
        }
    };
    timing("test features", t);
    let evaluator = Evaluator::from_features(&model, features, test.labels.clone());
    Ok(Loaded {
        routers,
        base: Rc::new(base),
        plan,
        deletable,
        test,
        backend,
        is_gpu: selected.is_gpu,
        notice: selected.notice,
        evaluator: RefCell::new(Some(evaluator)),
        generation: Cell::new(0),
        text_index,
        whole: RefCell::new(None),
        whole_loading: Cell::new(false),
        layer_ms: Cell::new(None),
        original: Rc::new(model.clone()),
        model: RefCell::new(Rc::new(model)),
    })
}
