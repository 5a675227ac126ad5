//! "Try your own sentence" (text bundles): a visitor's sentence, tokenized in wasm with the encoder's own
//! `tokenizer.json`, through the whole encoder (loaded at the first use) and every live shard's served component:
//! each shard's vote and the ensemble's answer, after the deletions so far. The answer is computed again after each
//! change, so a visitor watches the model that answers become one that never read what they deleted.

use std::cell::RefCell;
use std::rc::Rc;

use s3t::State;
use s3t::dataset::Dataset;
use s3t::model::ensemble::{predictions, softmax_rows};
use s3t::model::predict::{Prediction, predict};
use yew::prelude::*;

use s3t_host::time::{now, timing, yield_now};

use crate::load::{Loaded, Pacer};

#[derive(Properties)]
pub struct SentenceProps {
    pub loaded: Rc<Loaded>,
    pub state: State,
    /// Changes with every state change (a deletion or a retrain).
    pub changes: u64,
}

impl PartialEq for SentenceProps {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.loaded, &other.loaded) && self.changes == other.changes
    }
}

/// What the panel shows.
#[derive(Clone, PartialEq)]
enum Answer {
    None,
    Working(String),
    Done { text: String, prediction: Rc<Prediction>, changes: u64, millis: f64 },
    Failed(String),
}

/// The sentence's token ids: tokenized by the tokenizer worker, or as last time.
async fn tokens(
    loaded: &Loaded,
    cache: &RefCell<Option<(String, Rc<Dataset>)>>,
    text: &str,
) -> Result<Rc<Dataset>, String> {
    if let Some((known, data)) = cache.borrow().as_ref()
        && known == text
    {
        return Ok(data.clone());
    }
    let data = Rc::new(crate::tokenize::tokenize(loaded, vec![text.to_owned()]).await?);
    *cache.borrow_mut() = Some((text.to_owned(), data.clone()));
    Ok(data)
}

#[function_component(Sentence)]
pub fn sentence(props: &SentenceProps) -> Html {
    let input = use_state(|| "a gripping, funny and beautifully acted film".to_owned());
    // The sentence asked about, and a counter that asks again (a new click, or a new state).
    let asked = use_state(|| None::<(String, u64)>);
    let answer = use_state(|| Answer::None);
    // Counts the runs: a run that a newer one (a new sentence, or a deletion meanwhile) overtook shows nothing.
    let runs = use_mut_ref(|| 0u64);
    // The sentence last tokenized: a new state runs the model again, not the tokenizer.
    let tokenized = use_mut_ref(|| None::<(String, Rc<Dataset>)>);
    {
        let answer = answer.clone();
        let loaded = props.loaded.clone();
        let state = props.state.clone();
        let changes = props.changes;
        use_effect_with(((*asked).clone(), changes), move |(asked, _)| {
            let Some((text, _)) = asked.clone() else { return };
            *runs.borrow_mut() += 1;
            let run = *runs.borrow();
            let current = move || *runs.borrow() == run;
            let tokenized = tokenized.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let set = answer.clone();
                let progress = move |what: &str| set.set(Answer::Working(what.to_owned()));
                // The encoder's download and the tokenizer worker's start overlap.
                let (encoder, data) =
                    futures_lite::future::zip(loaded.whole(progress), tokens(&loaded, &tokenized, &text)).await;
                let (encoder, data) = match (encoder, data) {
                    (Ok(encoder), Ok(data)) => (encoder, data),
                    (Err(e), _) | (_, Err(e)) => return answer.set(Answer::Failed(e)),
                };
                answer.set(Answer::Working("classifying…".to_owned()));
                yield_now().await;
                let t = now();
                let model = loaded.model.borrow().clone();
                let pacer = Pacer::new();
                let pause = async || pacer.pause().await;
                let result = predict(&model, &encoder, &state, &data, &model.device, &pause).await;
                timing("sentence", t);
                if !current() {
                    return;
                }
                answer.set(match result {
                    Ok(prediction) => {
                        Answer::Done { text, prediction: Rc::new(prediction), changes, millis: now() - t }
                    }
                    Err(e) => Answer::Failed(e.to_string()),
                });
            });
        });
    }
    let on_input = {
        let input = input.clone();
        Callback::from(move |e: InputEvent| {
            let target: web_sys::HtmlTextAreaElement = e.target_unchecked_into();
            input.set(target.value());
        })
    };
    let on_submit = {
        let input = input.clone();
        let asked = asked.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let text = input.trim().to_owned();
            if !text.is_empty() {
                let round = asked.as_ref().map_or(0, |(_, n)| n + 1);
                asked.set(Some((text, round)));
            }
        })
    };
    let loaded = &props.loaded;
    let busy = matches!(*answer, Answer::Working(_));
    html! {
        <section class="sentence" aria-labelledby="sentence-title">
            <h2 id="sentence-title">{ "Try your own sentence" }</h2>
            <p class="hint">{ "Every live shard reads it with the model it serves now; the ensemble averages their probabilities. The first sentence loads the rest of the encoder (its embedding and lower layers) and its tokenizer." }</p>
            <form onsubmit={on_submit}>
                <label for="sentence-input">{ "A sentence" }</label>
                <textarea id="sentence-input" data-testid="sentence-input" rows="2" value={(*input).clone()} oninput={on_input} />
                <button type="submit" class="primary" disabled={busy} data-testid="sentence-submit">{ "Classify" }</button>
            </form>
            { match &*answer {
                Answer::None => html! {},
                Answer::Working(what) => html! { <p role="status" data-testid="sentence-status">{ what.clone() }</p> },
                Answer::Failed(e) => html! { <p class="error" role="alert" data-testid="sentence-error">{ e.clone() }</p> },
                Answer::Done { text, prediction, changes, millis } => answer_view(loaded, text, prediction, *changes, *millis),
            } }
        </section>
    }
}

/// The ensemble's answer and each live shard's vote.
fn answer_view(loaded: &Loaded, text: &str, prediction: &Prediction, changes: u64, millis: f64) -> Html {
    let classes = prediction.classes;
    let Some(probabilities) = prediction.probabilities.as_ref() else {
        return html! { <p data-testid="sentence-answer" data-label="">{ "Every shard is offline: no model answers." }</p> };
    };
    let best = predictions(probabilities, classes)[0];
    let exact = serde_json::to_string(probabilities).unwrap_or_default();
    html! {
        <div class="answer" data-testid="sentence-answer" data-label={loaded.class_name(best)} data-probabilities={exact}
            data-changes={changes.to_string()} data-millis={format!("{millis:.0}")} role="status">
            <p>
                { format!("“{text}”: ") }
                <strong>{ loaded.class_name(best) }</strong>
                { format!(" ({:.1}%; {})", probabilities[best] * 100.0, (0..classes).map(|c| format!("{} {:.1}%", loaded.class_name(c), probabilities[c] * 100.0)).collect::<Vec<_>>().join(", ")) }
            </p>
            <ul class="votes">
                { for prediction.votes.iter().map(|vote| {
                    let p = softmax_rows(&vote.logits, classes);
                    let label = predictions(&p, classes)[0];
                    html! {
                        <li data-testid={format!("sentence-vote-{}", vote.shard)} data-label={loaded.class_name(label)}>
                            { format!("shard {} (σ{} up to group {}): {} {:.1}%", vote.shard, vote.served.sequence + 1, vote.served.prefix, loaded.class_name(label), p[label] * 100.0) }
                        </li>
                    }
                }) }
            </ul>
            if prediction.votes.len() < usize::from(loaded.plan.shards.len() as u16) {
                <p class="hint">{ format!("{} of {} shards are offline and do not vote.", loaded.plan.shards.len() - prediction.votes.len(), loaded.plan.shards.len()) }</p>
            }
        </div>
    }
}
