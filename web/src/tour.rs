//! The guided tour for first-time visitors.

use yew::prelude::*;

const TOUR_KEY: &str = "s3t-lab.tour";

#[derive(Properties, PartialEq)]
pub struct TourProps {
    /// The visitor's deletions and the page's retrains so far (the tour moves on when they happen).
    pub deleted: usize,
    pub retrains: usize,
}

/// A three-step guided tour for first-time visitors (delete, watch, retrain); dismissed for good once finished or
/// skipped (local storage).
#[function_component(Tour)]
pub fn tour(props: &TourProps) -> Html {
    let storage = || web_sys::window().and_then(|w| w.local_storage().ok().flatten());
    let step = use_state(|| {
        let done = storage().and_then(|s| s.get_item(TOUR_KEY).ok().flatten()).is_some();
        (!done).then_some(0usize)
    });
    let finish = {
        let step = step.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(s) = storage() {
                let _ = s.set_item(TOUR_KEY, "done");
            }
            step.set(None);
        })
    };
    let next = {
        let step = step.clone();
        Callback::from(move |_: MouseEvent| step.set(step.map(|s| s + 1)))
    };
    // The visitor did what a step asks: move on.
    let current = match *step {
        Some(0) if props.deleted > 0 => Some(1),
        Some(s) if s < 3 && props.retrains > 0 => Some(3),
        other => other,
    };
    let Some(current) = current else { return html! {} };
    let (title, text) = match current {
        0 => ("1 · Delete", "Click any training sample below to delete it, as a user asking to be forgotten would."),
        1 => (
            "2 · Watch",
            "In the sample's shard, every adapter group that learned from its slice switched off (grey). Each shard \
             still answers with its longest clean sequence (outlined), which is exactly the model trained without \
             the sample: no retraining was needed. The chart shows the accuracy it costs, next to SISA.",
        ),
        2 => (
            "3 · Retrain",
            "Keep deleting samples of one shard (filter by shard) until every sequence has lost its first group: the \
             shard goes offline. Press its Retrain button: a background worker retrains it on the remaining samples \
             while the other shards keep serving.",
        ),
        _ => (
            "Done",
            "The shard came back with new layers trained without any deleted sample. That is S3T: deletions switch \
             layers off at once, and retraining waits until a shard runs out of clean sequences.",
        ),
    };
    html! {
        <aside class="tour" aria-label="guided tour" data-testid="tour" data-step={current.to_string()}>
            <strong>{ title }</strong>
            <p>{ text }</p>
            if current == 1 {
                <button onclick={next} data-testid="tour-next">{ "Next" }</button>
            }
            <button onclick={finish} data-testid="tour-close">{ if current >= 3 { "Close" } else { "Skip the tour" } }</button>
        </aside>
    }
}
