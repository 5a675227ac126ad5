//! The web page's saved state: the visitor's deletions as a shareable link (the URL's fragment) and in local
//! storage, tagged with the bundle they belong to so that a link made with another model is recognised as stale.
//!
//! The text is `b=TAG&deleted=ID,ID,…`, and `&retrained=SHARD@N,…` when the page retrained shards (shard SHARD
//! after the first N deletions). Ids are percent-escaped so that a string id holding `,`, `&` or `%` still
//! reads back; integer ids (the page's) need no escape. The text comes from whoever made the link, so
//! [`decode`] accepts any input without panicking and bounds its work ([`MAX_TEXT_BYTES`], [`MAX_IDS`]).

use std::collections::HashSet;

use crate::partition::SampleId;

/// Why a saved state cannot be used, in one line for the page to show (another bundle's, or not a saved state).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LinkError(pub String);

/// Longest text [`decode`] reads: a million six-digit ids fit with room to spare.
pub const MAX_TEXT_BYTES: usize = 16 << 20;
/// Most ids a saved state may hold.
pub const MAX_IDS: usize = 1_000_000;

/// A shard the page retrained, after the first `after` of the visitor's deletions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retrain {
    pub after: usize,
    pub shard: u16,
}

/// A saved state: the visitor's deletions in order, and the page's retrains among them (in order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    pub deleted: Vec<SampleId>,
    pub retrained: Vec<Retrain>,
}

/// The saved state of `deleted` (in deletion order) for the bundle tagged `bundle_tag`.
pub fn encode(bundle_tag: &str, deleted: &[SampleId]) -> String {
    encode_saved(bundle_tag, &Saved { deleted: deleted.to_vec(), retrained: Vec::new() })
}

/// The saved state of deletions and retrains.
pub fn encode_saved(bundle_tag: &str, saved: &Saved) -> String {
    let ids: Vec<String> = saved.deleted.iter().map(|id| escape(&id.to_string())).collect();
    let mut text = format!("b={}&deleted={}", escape(bundle_tag), ids.join(","));
    if !saved.retrained.is_empty() {
        let retrains: Vec<String> = saved.retrained.iter().map(|r| format!("{}@{}", r.shard, r.after)).collect();
        text.push_str(&format!("&retrained={}", retrains.join(",")));
    }
    text
}

/// Parses a saved state (a leading `#` is ignored). `Ok(None)`: nothing saved; `Ok(Some(ids))`: the deleted ids,
/// each once, in their first order; `Err`: one line saying why the state cannot be used (another bundle's, or not a
/// saved state at all), for the page to show before it ignores the state.
pub fn decode(text: &str, bundle_tag: &str) -> Result<Option<Vec<SampleId>>, LinkError> {
    Ok(decode_saved(text, bundle_tag)?.map(|s| s.deleted))
}

/// [`decode`] with the retrains: each names a shard and a number of deletions, in order, none after the last.
pub fn decode_saved(text: &str, bundle_tag: &str) -> Result<Option<Saved>, LinkError> {
    decode_text(text, bundle_tag).map_err(LinkError)
}

fn decode_text(text: &str, bundle_tag: &str) -> Result<Option<Saved>, String> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!("it is {} bytes long, more than a saved state can be ({MAX_TEXT_BYTES})", text.len()));
    }
    let text = text.trim_start_matches('#');
    if text.is_empty() {
        return Ok(None);
    }
    let mut tag = None;
    let mut deleted = None;
    let mut retrained = None;
    for part in text.split('&') {
        let slot = match part.split_once('=') {
            Some(("b", v)) => (&mut tag, v),
            Some(("deleted", v)) => (&mut deleted, v),
            Some(("retrained", v)) => (&mut retrained, v),
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
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    if !ids.is_empty() {
        for (n, text) in ids.split(',').enumerate() {
            if n >= MAX_IDS {
                return Err(format!("it lists more than {MAX_IDS} deleted samples"));
            }
            let id = SampleId::parse(&unescape(text)?).map_err(|e| format!("deleted sample {}: {e}", n + 1))?;
            if seen.insert(id.clone()) {
                out.push(id);
            }
        }
    }
    let mut retrains = Vec::new();
    for (n, text) in retrained.unwrap_or("").split(',').filter(|t| !t.is_empty()).enumerate() {
        if n >= MAX_IDS {
            return Err(format!("it lists more than {MAX_IDS} retrains"));
        }
        let bad = || format!("retrain {}: {:?} is not SHARD@DELETIONS", n + 1, shorten(text));
        let (shard, after) = text.split_once('@').ok_or_else(bad)?;
        let retrain = Retrain { shard: shard.parse().map_err(|_| bad())?, after: after.parse().map_err(|_| bad())? };
        if retrain.after > out.len() || retrains.last().is_some_and(|r: &Retrain| r.after > retrain.after) {
            return Err(format!(
                "retrain {} is out of order: after {} of {} deletions",
                n + 1,
                retrain.after,
                out.len()
            ));
        }
        retrains.push(retrain);
    }
    Ok(Some(Saved { deleted: out, retrained: retrains }))
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
        assert!(decode(&text, "other").unwrap_err().0.contains("another model bundle"));
        for bad in ["garbage", "b=abc123&b=abc123", "deleted=1", "b=abc123&deleted=1,,2", "b=abc123&deleted=%zz", "b=%"]
        {
            assert!(decode(bad, "abc123").is_err(), "{bad}");
        }
    }

    #[test]
    fn retrains_round_trip_in_order() {
        let saved = Saved {
            deleted: vec![SampleId::Int(3), SampleId::Int(9), SampleId::Int(4)],
            retrained: vec![Retrain { shard: 2, after: 2 }, Retrain { shard: 0, after: 3 }],
        };
        let text = encode_saved("t", &saved);
        assert!(text.ends_with("&retrained=2@2,0@3"), "{text}");
        assert_eq!(decode_saved(&text, "t"), Ok(Some(saved.clone())));
        assert_eq!(decode(&text, "t"), Ok(Some(saved.deleted)));
        for bad in
            ["b=t&deleted=1&retrained=0@2", "b=t&deleted=1,2&retrained=0@2,1@1", "b=t&retrained=x", "b=t&retrained=1@"]
        {
            assert!(decode_saved(bad, "t").is_err(), "{bad}");
        }
    }

    #[test]
    fn bounds_its_work_and_never_panics() {
        let many = format!("b=t&deleted={}", vec!["1"; MAX_IDS + 1].join(","));
        assert!(decode(&many, "t").unwrap_err().0.contains("more than"));
        let huge = "x".repeat(MAX_TEXT_BYTES + 1);
        assert!(decode(&huge, "t").unwrap_err().0.contains("bytes long"));
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
