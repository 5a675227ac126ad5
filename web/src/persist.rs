//! The visitor's deletions persist in the URL (a shareable link) and in local storage, in the text
//! [`s3t::link`] writes and reads (tagged with the bundle they belong to, so that a link to another model is
//! recognised as stale). This module only moves that text in and out of the browser.

use crate::source::Source;

const STORAGE_KEY: &str = "s3t-lab.session";

pub fn url_state() -> String {
    web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default()
}

pub fn stored_state() -> Option<String> {
    web_sys::window()?.local_storage().ok()??.get_item(&Source::current().key(STORAGE_KEY)).ok()?
}

/// Writes the state to the URL (without a new history entry) and to local storage.
pub fn save(encoded: &str) {
    let Some(window) = web_sys::window() else { return };
    if let Ok(history) = window.history() {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&format!("#{encoded}")));
    }
    if let Ok(Some(storage)) = window.local_storage() {
        let _ = storage.set_item(&Source::current().key(STORAGE_KEY), encoded);
    }
}

const RETRAINED_KEY: &str = "s3t-lab.retrained";
/// Most bytes of retrained weights kept in local storage (its quota is a few MB per site).
const MAX_RETRAINED_BYTES: usize = 3 << 20;

/// The page's retrains with their weights, for this very saved state (`link`): a reload serves them again without
/// retraining, after the same checks as a fresh retrain.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StoredRetrains {
    pub link: String,
    pub retrains: Vec<StoredRetrain>,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct StoredRetrain {
    pub after: usize,
    pub shard: u16,
    pub nodes: Vec<s3t::bundle::NodeEntry>,
    /// (node id, weights as hex).
    pub weights: Vec<(usize, String)>,
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

/// Keeps the retrains of the saved state `link` (or forgets them when there are none or they do not fit).
pub fn save_retrains(link: &str, retrains: &[crate::state::Retrain]) {
    let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) else { return };
    let bytes: usize = retrains.iter().flat_map(|r| r.weights.iter()).map(|(_, w)| w.len()).sum();
    if retrains.is_empty() || bytes > MAX_RETRAINED_BYTES {
        let _ = storage.remove_item(&Source::current().key(RETRAINED_KEY));
        return;
    }
    let stored = StoredRetrains {
        link: link.to_owned(),
        retrains: retrains
            .iter()
            .map(|r| StoredRetrain {
                after: r.after,
                shard: r.shard,
                nodes: (*r.nodes).clone(),
                weights: r.weights.iter().map(|(id, w)| (*id, s3t::partition::hex(w))).collect(),
            })
            .collect(),
    };
    if let Ok(text) = serde_json::to_string(&stored)
        && storage.set_item(&Source::current().key(RETRAINED_KEY), &text).is_err()
    {
        // Over the quota: a reload then retrains (or says it must) instead.
        let _ = storage.remove_item(&Source::current().key(RETRAINED_KEY));
    }
}

/// The stored retrains of the saved state `link`, if any (they are checked again before they are served).
pub fn stored_retrains(link: &str) -> Vec<crate::state::Retrain> {
    let text = web_sys::window()
        .and_then(|w| w.local_storage().ok().flatten())
        .and_then(|s| s.get_item(&Source::current().key(RETRAINED_KEY)).ok().flatten());
    let Some(stored) = text.and_then(|t| serde_json::from_str::<StoredRetrains>(&t).ok()) else { return Vec::new() };
    if stored.link.trim_start_matches('#') != link.trim_start_matches('#') {
        return Vec::new();
    }
    let mut out = Vec::new();
    for r in stored.retrains {
        let weights: Option<Vec<(usize, Vec<u8>)>> =
            r.weights.iter().map(|(id, hex)| hex_decode(hex).map(|w| (*id, w))).collect();
        let Some(weights) = weights else { return Vec::new() };
        out.push(crate::state::Retrain {
            after: r.after,
            shard: r.shard,
            nodes: std::rc::Rc::new(r.nodes),
            weights: std::rc::Rc::new(weights),
        });
    }
    out
}
