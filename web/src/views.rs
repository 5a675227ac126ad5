//! The panels of the main screen. They render props and dispatch callbacks; no routing logic lives here.

use std::rc::Rc;

use s3t::route::Served;
use s3t::{SampleId, Sequence, State};
use wasm_bindgen::{Clamped, JsCast};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, HtmlInputElement, HtmlSelectElement, ImageData};
use yew::prelude::*;

use crate::load::Loaded;

const PAGE: usize = 48;
/// Reviews per page: a review is a line of text, not a thumbnail.
const TEXT_PAGE: usize = 20;

/// What stands in for a deleted sample: a crossed box, never its pixels.
fn placeholder(side: u32) -> Html {
    let side = side.to_string();
    html! {
        <svg class="purged" width={side.clone()} height={side.clone()} viewBox="0 0 10 10" aria-hidden="true">
            <rect x="0.5" y="0.5" width="9" height="9" fill="none" stroke="currentColor" stroke-width="0.6" />
            <line x1="1" y1="1" x2="9" y2="9" stroke="currentColor" stroke-width="0.6" />
            <line x1="9" y1="1" x2="1" y2="9" stroke="currentColor" stroke-width="0.6" />
        </svg>
    }
}

/// Draws a 28×28 grey image into a canvas.
fn draw(canvas: &HtmlCanvasElement, pixels: &[u8], side: u32) {
    let Ok(Some(ctx)) = canvas.get_context("2d") else { return };
    let Ok(ctx) = ctx.dyn_into::<CanvasRenderingContext2d>() else { return };
    let mut rgba = Vec::with_capacity(pixels.len() * 4);
    for &p in pixels {
        // Fashion-MNIST is white on black; invert for a light page.
        let v = 255 - p;
        rgba.extend_from_slice(&[v, v, v, 255]);
    }
    if let Ok(image) = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), side, side) {
        let _ = ctx.put_image_data(&image, 0.0, 0.0);
    }
}

#[derive(Properties, PartialEq)]
struct ThumbProps {
    pixels: Rc<Vec<u8>>,
    side: u32,
}

#[function_component(Thumb)]
fn thumb(props: &ThumbProps) -> Html {
    let canvas = use_node_ref();
    {
        let canvas = canvas.clone();
        let pixels = props.pixels.clone();
        let side = props.side;
        use_effect_with(pixels.clone(), move |_| {
            if let Some(c) = canvas.cast::<HtmlCanvasElement>() {
                draw(&c, &pixels, side);
            }
        });
    }
    html! { <canvas ref={canvas} width={props.side.to_string()} height={props.side.to_string()} aria-hidden="true" /> }
}

#[derive(Properties)]
pub struct GridProps {
    pub loaded: Rc<Loaded>,
    pub deleted: Vec<SampleId>,
    pub on_delete: Callback<SampleId>,
}

impl PartialEq for GridProps {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.loaded, &other.loaded) && self.deleted == other.deleted
    }
}

/// The deletable samples, paged, filterable by class and shard; each is a button that deletes it. A deleted
/// sample shows no image: the ledger's were purged from the bundle, and the visitor's are forgotten on screen too.
#[function_component(Grid)]
pub fn grid(props: &GridProps) -> Html {
    let class = use_state(|| None::<u8>);
    let shard = use_state(|| None::<u16>);
    let page = use_state(|| 0usize);
    let search = use_state(String::new);
    let data = &props.loaded.deletable;
    let texts = data.text.as_ref().map(|t| &t.texts);
    let per_page = if texts.is_some() { TEXT_PAGE } else { PAGE };
    let needle = search.to_lowercase();
    let ledger = &props.loaded.base.deleted;
    let assignment = props.loaded.routers.s3t.assignment();
    // A purged sample's class is gone with it: it is listed under "all" classes only.
    let class_of =
        |i: usize| (!ledger.contains(&SampleId::Int(i as u64))).then(|| data.labels.get(i).copied()).flatten();
    let matching: Vec<usize> = (0..data.len())
        .filter(|&i| class.is_none_or(|c| class_of(i) == Some(c)))
        .filter(|&i| shard.is_none_or(|s| assignment.cell(&SampleId::Int(i as u64)).is_some_and(|c| c.shard == s)))
        .filter(|&i| {
            needle.is_empty() || texts.and_then(|t| t.get(i)).is_some_and(|t| t.to_lowercase().contains(&needle))
        })
        .collect();
    let pages = matching.len().div_ceil(per_page).max(1);
    let current = (*page).min(pages - 1);
    let on_class = {
        let class = class.clone();
        let page = page.clone();
        Callback::from(move |e: Event| {
            let value = e.target_unchecked_into::<HtmlSelectElement>().value();
            class.set(value.parse().ok());
            page.set(0);
        })
    };
    let on_shard = {
        let shard = shard.clone();
        let page = page.clone();
        Callback::from(move |e: Event| {
            let value = e.target_unchecked_into::<HtmlSelectElement>().value();
            shard.set(value.parse().ok());
            page.set(0);
        })
    };
    let on_search = {
        let search = search.clone();
        let page = page.clone();
        Callback::from(move |e: InputEvent| {
            search.set(e.target_unchecked_into::<HtmlInputElement>().value());
            page.set(0);
        })
    };
    let go = |to: usize| {
        let page = page.clone();
        Callback::from(move |_| page.set(to))
    };
    let shards = props.loaded.original.manifest.partition.shards;
    let (what, noun) = if texts.is_some() { ("Training reviews", "reviews") } else { ("Training samples", "samples") };
    html! {
        <section class={classes!("grid", texts.is_some().then_some("texts"))} aria-label={format!("deletable training {noun}")}>
            <h2>{ format!("{what}: click one to delete it") }</h2>
            <div class="filters">
                if texts.is_some() {
                    <label>{ "search " }
                        <input type="search" value={(*search).clone()} oninput={on_search} data-testid="filter-text" />
                    </label>
                }
                <label>{ " class " }
                    <select onchange={on_class} data-testid="filter-class">
                        <option value="" selected={class.is_none()}>{ "all" }</option>
                        { for props.loaded.class_names().into_iter().enumerate().map(|(i, n)| html! {
                            <option value={i.to_string()} selected={*class == Some(i as u8)}>{ n }</option>
                        }) }
                    </select>
                </label>
                <label>{ " shard " }
                    <select onchange={on_shard} data-testid="filter-shard">
                        <option value="" selected={shard.is_none()}>{ "all" }</option>
                        { for (0..shards).map(|s| html! { <option value={s.to_string()} selected={*shard == Some(s)}>{ s }</option> }) }
                    </select>
                </label>
                <button onclick={go(current.saturating_sub(1))} disabled={current == 0} data-testid="page-prev">{ "◀" }</button>
                <span data-testid="page">{ format!(" page {} / {} ({} {noun}) ", current + 1, pages, matching.len()) }</span>
                <button onclick={go((current + 1).min(pages - 1))} disabled={current + 1 >= pages} data-testid="page-next">{ "▶" }</button>
            </div>
            <ul class="samples">
                { for matching.iter().skip(current * per_page).take(per_page).map(|&i| {
                    let id = SampleId::Int(i as u64);
                    let gone = if ledger.contains(&id) {
                        Some("ledger")
                    } else if props.deleted.contains(&id) {
                        Some("session")
                    } else {
                        None
                    };
                    let cell = assignment.cell(&id);
                    let what = match gone {
                        Some("ledger") => "deleted in the bundle's ledger".to_owned(),
                        Some(_) => "deleted".to_owned(),
                        None => class_of(i).map_or_else(String::new, |c| props.loaded.class_name(usize::from(c))),
                    };
                    // A thumbnail has no text: its button is named by its label. A review's button is named by what
                    // it shows (its text, class, shard and slice), as a visible label must be (WCAG 2.5.3).
                    let kind = if texts.is_some() { "review" } else { "sample" };
                    let label = format!(
                        "{kind} {i}, {what}, shard {}, slice {}",
                        cell.map_or(0, |c| c.shard),
                        cell.map_or(0, |c| c.slice),
                    );
                    let on_click = {
                        let cb = props.on_delete.clone();
                        let id = id.clone();
                        Callback::from(move |_| cb.emit(id.clone()))
                    };
                    html! {
                        <li><button class={classes!("sample", gone.map(|_| "deleted"))} aria-label={texts.is_none().then(|| label.clone())} title={label}
                            disabled={gone.is_some()} onclick={on_click} data-testid={format!("sample-{i}")}
                            data-deleted={gone.unwrap_or("")}>
                            if let Some(texts) = texts {
                                <span class="review">{ if gone.is_some() { "deleted: its text is gone".to_owned() } else { texts.get(i).cloned().unwrap_or_default() } }</span>
                                <span class="meta">{ format!("{what} · shard {} · slice {}", cell.map_or(0, |c| c.shard), cell.map_or(0, |c| c.slice)) }</span>
                            } else if gone.is_some() {
                                { placeholder(data.rows) }
                            } else {
                                <Thumb pixels={Rc::new(data.image(i).to_vec())} side={data.rows} />
                            }
                        </button></li>
                    }
                }) }
            </ul>
        </section>
    }
}

#[derive(Properties, PartialEq)]
pub struct ShardProps {
    pub shard: u16,
    pub sequences: Vec<Sequence>,
    pub active: Vec<u16>,
    pub served: Option<Served>,
    pub accuracy: Option<f64>,
    /// The shard's retraining controls.
    #[prop_or_default]
    pub children: Html,
}

/// One shard drawn as its models: one column per sequence, the classifier head on top, then adapter groups 1..L
/// (group 1 is the top of the network) over the shared frozen backbone. A group that learned from a slice with a
/// deletion switches off (animated) and says which slice; the served path is highlighted.
#[function_component(ShardPanel)]
pub fn shard_panel(props: &ShardProps) -> Html {
    let offline = props.served.is_none();
    let groups = props.sequences.first().map_or(0, Sequence::len);
    let columns = format!("grid-template-columns: repeat({}, minmax(0, 1fr));", props.sequences.len().max(1));
    html! {
        <article class={classes!("shard", offline.then_some("offline"))} data-testid={format!("shard-{}", props.shard)}
            data-offline={offline.to_string()} aria-label={format!("shard {}", props.shard)}>
            <h3>
                { format!("Shard {}", props.shard) }
                if offline {
                    <span class="offline-tag" data-testid={format!("offline-{}", props.shard)}>{ " offline: retraining needed" }</span>
                } else if let Some(a) = props.accuracy {
                    <span class="shard-acc">{ format!(" {:.1}%", a * 100.0) }</span>
                }
            </h3>
            <div class="network" style={columns.clone()} role="group" aria-label="one model per slice sequence">
                { for props.sequences.iter().enumerate().map(|(b, seq)| {
                    let served = props.served.filter(|s| s.sequence == b);
                    let active = props.active.get(b).copied().unwrap_or(0);
                    let label = format!("σ{} = {}", b + 1, seq.slices().iter().map(u16::to_string).collect::<Vec<_>>().join("→"));
                    html! {
                        <div class={classes!("column", served.is_some().then_some("served"))} data-served={served.is_some().to_string()}
                            title={if served.is_some() { format!("{label}: served") } else { label.clone() }}>
                            <div class="seq-label">{ format!("σ{}", b + 1) }</div>
                            <div class={classes!("layer", "head", (active > 0).then_some("active"))}>
                                { if active > 0 { format!("head {active}") } else { "no head".to_owned() } }
                            </div>
                            { for seq.slices().iter().enumerate().map(|(k, slice)| {
                                let on = (k as u16) < active;
                                let cause = (k as u16 == active).then_some(seq.slices()[k]);
                                let what = match (on, cause) {
                                    (true, _) => format!("slice {slice}"),
                                    (false, Some(s)) => format!("off: slice {s}"),
                                    (false, None) => "off".to_owned(),
                                };
                                html! {
                                    <div class={classes!("layer", "cell", if on { "active" } else { "inactive" })}
                                        data-testid={format!("cell-{}-{}-{}", props.shard, b, k + 1)} data-active={on.to_string()}
                                        title={format!("group {} trained on slices {:?}{}", k + 1, &seq.slices()[..=k],
                                            if on { String::new() } else if let Some(s) = cause { format!("; switched off: slice {s} had a deletion") } else { "; switched off".to_owned() })}>
                                        <span class="group">{ format!("G{}", k + 1) }</span>{ " " }{ what }
                                    </div>
                                }
                            }) }
                        </div>
                    }
                }) }
            </div>
            <div class="backbone" title="trained on public data only; never changes">{ format!("frozen backbone · {groups} adapter groups per model") }</div>
            { props.children.clone() }
        </article>
    }
}

#[derive(Properties, PartialEq)]
pub struct CapacityProps {
    pub expected: f64,
}

/// Expected further deletions until every shard is offline (closed form from the current state).
#[function_component(Capacity)]
pub fn capacity(props: &CapacityProps) -> Html {
    html! {
        <div class="score capacity">
            <span class="label">{ "expected deletions left before every shard needs retraining" }</span>
            <meter min="0" max="200" value={props.expected.to_string()} />
            <span class="value" data-testid="capacity">{ format!("{:.0}", props.expected) }</span>
        </div>
    }
}

#[derive(Properties)]
pub struct InspectorProps {
    pub loaded: Rc<Loaded>,
    pub state: State,
    /// Changes when new scores arrive (S3T's, then SISA's, after which the evaluator is back), so the votes are
    /// read again from the memo.
    pub version: usize,
}

impl PartialEq for InspectorProps {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.loaded, &other.loaded) && self.state == other.state && self.version == other.version
    }
}

/// One test image and each live shard's vote.
#[function_component(Inspector)]
pub fn inspector(props: &InspectorProps) -> Html {
    let index = use_state(|| 0usize);
    let test = &props.loaded.test;
    let i = (*index).min(test.len().saturating_sub(1));
    let on_input = {
        let index = index.clone();
        Callback::from(move |e: InputEvent| {
            if let Ok(v) = e.target_unchecked_into::<HtmlInputElement>().value().parse() {
                index.set(v);
            }
        })
    };
    let classes = props.loaded.original.config().vit.classes;
    let evaluator = props.loaded.evaluator.borrow();
    let model = props.loaded.model.borrow().clone();
    let votes: Vec<Html> = (0..props.state.shards())
        .map(|shard| {
            // An offline shard has no vote; a live one's shows once its evaluation is done.
            let vote = match props.state.served(shard) {
                None => "offline".to_owned(),
                Some(served) => evaluator
                    .as_ref()
                    .and_then(|e| e.memoised(&model, shard, served))
                    .and_then(|probs| probs.get(i * classes..(i + 1) * classes))
                    .map_or_else(
                        || "computing…".to_owned(),
                        |row| {
                            let (best, p) =
                                row.iter().enumerate().fold((0, 0.0f32), |b, (c, &p)| if p > b.1 { (c, p) } else { b });
                            format!("{} ({:.0}%)", props.loaded.class_name(best), p * 100.0)
                        },
                    ),
            };
            html! { <li data-testid={format!("vote-{shard}")}>{ format!("shard {shard}: {vote}") }</li> }
        })
        .collect();
    let noun = if test.text.is_some() { "review" } else { "image" };
    html! {
        <section class="inspector">
            <h2>{ format!("Inspect a test {noun}") }</h2>
            <label>{ format!("test {noun} ") }
                <input type="number" min="0" max={test.len().saturating_sub(1).to_string()} value={i.to_string()} oninput={on_input} data-testid="inspect-index" />
            </label>
            if let Some(texts) = &test.text {
                <blockquote class="review" data-testid="inspect-text">{ texts.texts.get(i).cloned().unwrap_or_default() }</blockquote>
            } else {
                <Thumb pixels={Rc::new(test.image(i).to_vec())} side={test.rows} />
            }
            <p>{ format!("true class: {}", test.labels.get(i).map_or_else(String::new, |&c| props.loaded.class_name(usize::from(c)))) }</p>
            <ul>{ for votes }</ul>
        </section>
    }
}

/// A short explanation of S3T for newcomers.
#[function_component(Explanation)]
pub fn explanation() -> Html {
    html! {
        <section class="explain">
            <h2>{ "What is happening here?" }</h2>
            <p>{ "The training data is split into shards, and every shard into slices. Each shard's model is a frozen \
                  backbone with small adapter layers stacked in groups: group 1 learned from one slice, group 2 from \
                  that slice and the next, and so on, in several different slice orders (the columns of each shard)." }</p>
            <p>{ "When you delete a sample, every group that learned from its slice is switched off (greyed). The \
                  groups above it never saw the sample, so the shard keeps answering with the longest clean order \
                  (outlined) — exactly the model that would have been trained without the sample. Only when every \
                  order of a shard has lost its first group does the shard go offline. Then it can be retrained in \
                  the background, on the samples that remain, while the other shards keep answering." }</p>
            <p>{ "SISA, the classic method, keeps one order per shard, so it falls back further on each deletion." }</p>
        </section>
    }
}
