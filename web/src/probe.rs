//! The visitor's last deleted sample under the model that serves now.

use std::rc::Rc;

use s3t::{SampleId, State};
use yew::prelude::*;

use crate::load::Loaded;

#[derive(Properties)]
pub struct ProbeProps {
    pub loaded: Rc<Loaded>,
    pub state: State,
    /// The visitor's last deletion, if any.
    pub id: Option<SampleId>,
    /// Changes with every state change (a retrain changes the served model, not the deletions).
    pub changes: u64,
    /// Whether the accuracy of this state is shown already: the probe waits for it, so it never delays it.
    pub scored: bool,
}

impl PartialEq for ProbeProps {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.loaded, &other.loaded)
            && self.id == other.id
            && self.changes == other.changes
            && self.scored == other.scored
    }
}

/// The visitor's last deleted sample under the model its shard serves now, a model that never saw it: its
/// confidence in the sample's true class. The sample's pixels are not shown.
#[function_component(Probe)]
pub fn probe(props: &ProbeProps) -> Html {
    let text = use_state(|| None::<String>);
    {
        let text = text.clone();
        let loaded = props.loaded.clone();
        let state = props.state.clone();
        use_effect_with((props.id.clone(), props.changes, props.scored), move |(id, _, scored)| {
            text.set(None);
            let Some(SampleId::Int(i)) = id.clone() else { return };
            if !scored {
                return;
            }
            let i = i as usize;
            let Some(cell) = loaded.routers.s3t.assignment().cell(&SampleId::Int(i as u64)) else { return };
            let label = loaded.deletable.labels.get(i).copied().map(usize::from);
            let kind = if loaded.is_text() { "Review" } else { "Sample" };
            let what = format!(
                "{kind} {i} ({}) left shard {}, slice {}.",
                label.map_or_else(String::new, |c| loaded.class_name(c)),
                cell.shard,
                cell.slice
            );
            let Some(served) = state.served(cell.shard) else {
                text.set(Some(format!("{what} Shard {} is offline: no model that saw it answers.", cell.shard)));
                return;
            };
            if loaded.model.borrow().pretrained.backbone.first_block > 0 {
                // The page holds the encoder from the frozen base up only: the review cannot be run through it.
                text.set(Some(format!(
                    "{what} Its shard now serves σ{} up to group {}, a model trained without it.",
                    served.sequence + 1,
                    served.prefix
                )));
                return;
            }
            let model = loaded.model.borrow().clone();
            let sample = loaded.deletable.select(&[i]);
            let loaded = loaded.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let pacer = crate::load::Pacer::new();
                let pause = async || pacer.pause().await;
                let classes = model.config().vit.classes;
                let result = model.probabilities_async(cell.shard, served, &sample, pause).await;
                let line = match (result, label) {
                    (Ok(p), Some(c)) if p.len() >= classes => {
                        let (best, _) =
                            p.iter().enumerate().fold((0, 0.0f32), |b, (k, &v)| if v > b.1 { (k, v) } else { b });
                        format!(
                            "{what} Its shard now serves σ{} up to group {}, a model trained without it: it gives the \
                             true class {:.0}% and predicts {}.",
                            served.sequence + 1,
                            served.prefix,
                            p[c] * 100.0,
                            loaded.class_name(best)
                        )
                    }
                    (Err(e), _) => format!("{what} ({e})"),
                    _ => what,
                };
                text.set(Some(line));
            });
        });
    }
    match &*text {
        Some(line) => html! { <p class="probe" data-testid="probe" role="status">{ line.clone() }</p> },
        None => html! {},
    }
}
