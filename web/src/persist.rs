//! The deletions persist in the URL (a shareable link) and in local storage, tagged with the bundle they belong
//! to so that a link to another model is recognised as stale.

use s3t::SampleId;

const STORAGE_KEY: &str = "s3t-lab.session";

/// What a stored state refers to: the first 12 hex digits of the backbone's sha256 and the deleted ids.
pub fn encode(bundle_tag: &str, deleted: &[SampleId]) -> String {
    let ids: Vec<String> = deleted.iter().map(ToString::to_string).collect();
    format!("b={bundle_tag}&deleted={}", ids.join(","))
}

/// Parses `b=TAG&deleted=1,2,3`. `Err` names what is wrong (shown to the user, then ignored).
pub fn decode(text: &str, bundle_tag: &str) -> Result<Option<Vec<SampleId>>, String> {
    let text = text.trim_start_matches('#');
    if text.is_empty() {
        return Ok(None);
    }
    let mut tag = None;
    let mut deleted = None;
    for part in text.split('&') {
        match part.split_once('=') {
            Some(("b", v)) => tag = Some(v),
            Some(("deleted", v)) => deleted = Some(v),
            _ => return Err(format!("unrecognised part {part:?}")),
        }
    }
    if tag != Some(bundle_tag) {
        return Err("it was made with another model bundle".into());
    }
    let ids = deleted.unwrap_or("");
    if ids.is_empty() {
        return Ok(Some(Vec::new()));
    }
    ids.split(',').map(|s| SampleId::parse(s).map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>().map(Some)
}

pub fn url_state() -> String {
    web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default()
}

pub fn stored_state() -> Option<String> {
    web_sys::window()?.local_storage().ok()??.get_item(STORAGE_KEY).ok()?
}

/// Writes the state to the URL (without a new history entry) and to local storage.
pub fn save(encoded: &str) {
    let Some(window) = web_sys::window() else { return };
    if let Ok(history) = window.history() {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&format!("#{encoded}")));
    }
    if let Ok(Some(storage)) = window.local_storage() {
        let _ = storage.set_item(STORAGE_KEY, encoded);
    }
}
