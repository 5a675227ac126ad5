//! The web page's saved state: the visitor's deletions as a shareable link (the URL's fragment) and in local
//! storage, tagged with the bundle they belong to so that a link made with another model is recognised as stale.
//!
//! The text is `b=TAG&deleted=ID,ID,…`. Ids are percent-escaped so that a string id holding `,`, `&` or `%` still
//! reads back; integer ids (the page's) need no escape. The text comes from whoever made the link, so
//! [`decode`] accepts any input without panicking and bounds its work ([`MAX_TEXT_BYTES`], [`MAX_IDS`]).

use std::collections::HashSet;

use crate::partition::SampleId;

/// Longest text [`decode`] reads: a million six-digit ids fit with room to spare.
pub const MAX_TEXT_BYTES: usize = 16 << 20;
/// Most ids a saved state may hold.
pub const MAX_IDS: usize = 1_000_000;

/// The saved state of `deleted` (in deletion order) for the bundle tagged `bundle_tag`.
pub fn encode(bundle_tag: &str, deleted: &[SampleId]) -> String {
    let ids: Vec<String> = deleted.iter().map(|id| escape(&id.to_string())).collect();
    format!("b={}&deleted={}", escape(bundle_tag), ids.join(","))
}

/// Parses a saved state (a leading `#` is ignored). `Ok(None)`: nothing saved; `Ok(Some(ids))`: the deleted ids,
/// each once, in their first order; `Err`: one line saying why the state cannot be used (another bundle's, or not a
/// saved state at all), for the page to show before it ignores the state.
pub fn decode(text: &str, bundle_tag: &str) -> Result<Option<Vec<SampleId>>, String> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!("it is {} bytes long, more than a saved state can be ({MAX_TEXT_BYTES})", text.len()));
    }
    let text = text.trim_start_matches('#');
    if text.is_empty() {
        return Ok(None);
    }
    let mut tag = None;
    let mut deleted = None;
    for part in text.split('&') {
        let slot = match part.split_once('=') {
            Some(("b", v)) => (&mut tag, v),
            Some(("deleted", v)) => (&mut deleted, v),
            _ => return Err(format!("unrecognised part {:?}", shorten(part))),
        };
        if slot.0.replace(slot.1).is_some() {
            return Err(format!("the part {:?} appears twice", shorten(part)));
        }
    }
    let tag = tag.ok_or("it does not say which model bundle it belongs to")?;
    if unescape(tag)? != bundle_tag {
        return Err("it was made with another model bundle".into());
    }
    let ids = deleted.unwrap_or("");
    if ids.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (n, text) in ids.split(',').enumerate() {
        if n >= MAX_IDS {
            return Err(format!("it lists more than {MAX_IDS} deleted samples"));
        }
        let id = SampleId::parse(&unescape(text)?).map_err(|e| format!("deleted sample {}: {e}", n + 1))?;
        if seen.insert(id.clone()) {
            out.push(id);
        }
    }
    Ok(Some(out))
}

/// Percent-escapes every byte outside `A-Z a-z 0-9 - . _ ~`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`escape`] (and a browser's escaping of a typed link); a malformed escape is an error.
fn unescape(text: &str) -> Result<String, String> {
    if !text.contains('%') {
        return Ok(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let value = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("a malformed escape in {:?}", shorten(text)))?;
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{:?} is not UTF-8 once unescaped", shorten(text)))
}

/// At most 40 characters of `text`, for an error message that stays one short line.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_what_is_not_this_bundles_state() {
        let ids = vec![SampleId::Int(7), SampleId::Int(0), SampleId::Str("a,b&c%d é".into())];
        let text = encode("abc123", &ids);
        assert_eq!(decode(&text, "abc123"), Ok(Some(ids.clone())));
        assert_eq!(decode(&format!("#{text}"), "abc123"), Ok(Some(ids)));
        assert_eq!(decode("b=abc123&deleted=7,7,3", "abc123"), Ok(Some(vec![7.into(), 3.into()])));
        assert_eq!(decode("", "abc123"), Ok(None));
        assert_eq!(decode("#", "abc123"), Ok(None));
        assert_eq!(decode("b=abc123&deleted=", "abc123"), Ok(Some(Vec::new())));
        assert!(decode(&text, "other").unwrap_err().contains("another model bundle"));
        for bad in ["garbage", "b=abc123&b=abc123", "deleted=1", "b=abc123&deleted=1,,2", "b=abc123&deleted=%zz", "b=%"]
        {
            assert!(decode(bad, "abc123").is_err(), "{bad}");
        }
    }

    #[test]
    fn bounds_its_work_and_never_panics() {
        let many = format!("b=t&deleted={}", vec!["1"; MAX_IDS + 1].join(","));
        assert!(decode(&many, "t").unwrap_err().contains("more than"));
        let huge = "x".repeat(MAX_TEXT_BYTES + 1);
        assert!(decode(&huge, "t").unwrap_err().contains("bytes long"));
        // Odd bytes at every position of a valid state (multi-byte characters, cut escapes) only ever give errors.
        let text = encode("t", &[SampleId::Int(12), SampleId::Str("é%".into())]);
        for cut in 0..=text.len() {
            if let Some(prefix) = text.get(..cut) {
                let _ = decode(prefix, "t");
                let _ = decode(&format!("{prefix}%\u{e9}%"), "t");
            }
        }
    }
}
