//! The application shell: loads the bundle, then shows the session (or a clear error screen).

use std::rc::Rc;

use yew::prelude::*;

use crate::load::{Loaded, load};
use crate::session::SessionView;

/// Where the bundle is served from, relative to the page.
pub const BUNDLE_URL: &str = "bundle";

enum Phase {
    Loading(String),
    Ready(Rc<Loaded>),
    Failed(String),
}

#[function_component(App)]
pub fn app() -> Html {
    let phase = use_state(|| Phase::Loading("starting".into()));
    {
        let phase = phase.clone();
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                let progress = {
                    let phase = phase.clone();
                    move |step: &str| phase.set(Phase::Loading(step.to_owned()))
                };
                match load(BUNDLE_URL, progress).await {
                    Ok(loaded) => phase.set(Phase::Ready(Rc::new(loaded))),
                    Err(e) => phase.set(Phase::Failed(e)),
                }
            });
        });
    }
    match &*phase {
        Phase::Loading(step) => html! {
            <main class="loading" aria-busy="true">
                <h1>{ "S3T: exact unlearning you can watch" }</h1>
                <p data-testid="loading">{ format!("Loading… {step}") }</p>
            </main>
        },
        Phase::Failed(error) => html! {
            <main class="failed" role="alert" data-testid="error">
                <h1>{ "The model bundle could not be loaded" }</h1>
                <p>{ "The page needs a valid bundle built by `trainer build` (served under bundle/)." }</p>
                <pre data-testid="error-message">{ error.clone() }</pre>
            </main>
        },
        Phase::Ready(loaded) => html! { <SessionView loaded={loaded.clone()} /> },
    }
}
