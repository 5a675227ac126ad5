//! The application shell: loads the bundle of the chosen source, then shows the session (or a clear error screen),
//! with a switch to the other source when it is served too.

use std::rc::Rc;

use yew::prelude::*;

use crate::load::{Loaded, load};
use crate::session::SessionView;
use crate::source::Source;

enum Phase {
    Loading(String),
    Ready(Rc<Loaded>),
    Failed(String),
}

#[function_component(App)]
pub fn app() -> Html {
    let phase = use_state(|| Phase::Loading("starting".into()));
    let current = Source::current();
    // Whether the other source's bundle is served here: the switch offers only what exists.
    let both = use_state(|| false);
    {
        let both = both.clone();
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                let other = Source::ALL.into_iter().find(|&s| s != current).unwrap_or(current);
                let url = format!("{}/{}", other.dir(), s3t::bundle::manifest::MANIFEST_FILE);
                both.set(matches!(s3t_host::fetch::optional(&url).await, Ok(Some(_))));
            });
        });
    }
    {
        let phase = phase.clone();
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                let progress = {
                    let phase = phase.clone();
                    move |step: &str| phase.set(Phase::Loading(step.to_owned()))
                };
                match load(current.dir(), progress).await {
                    Ok(loaded) => phase.set(Phase::Ready(Rc::new(loaded))),
                    Err(e) => phase.set(Phase::Failed(e)),
                }
            });
        });
    }
    let switch = if *both {
        html! {
            <nav class="switch" aria-label="model">
                { for Source::ALL.into_iter().map(|s| html! {
                    <a href={s.href()} aria-current={(s == current).then_some("page")}
                        data-testid={format!("switch-{}", s.label())}>{ s.label() }</a>
                }) }
            </nav>
        }
    } else {
        html! {}
    };
    let screen = match &*phase {
        Phase::Loading(step) => html! {
            <main class="loading" aria-busy="true">
                <h1>{ "S3T: exact unlearning you can watch" }</h1>
                <p data-testid="loading">{ format!("Loading… {step}") }</p>
            </main>
        },
        Phase::Failed(error) => html! {
            <main class="failed" role="alert" data-testid="error">
                <h1>{ "The model bundle could not be loaded" }</h1>
                <p>{ format!("The page needs a valid bundle built by `trainer build` (served under {}/).", current.dir()) }</p>
                <pre data-testid="error-message">{ error.clone() }</pre>
            </main>
        },
        Phase::Ready(loaded) => html! { <SessionView loaded={loaded.clone()} /> },
    };
    html! { <>{ switch }{ screen }</> }
}
