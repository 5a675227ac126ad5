//! The visitor's deletions persist in the URL (a shareable link) and in local storage, in the text
//! [`s3t::link`] writes and reads (tagged with the bundle they belong to, so that a link to another model is
//! recognised as stale). This module only moves that text in and out of the browser.

const STORAGE_KEY: &str = "s3t-lab.session";

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
