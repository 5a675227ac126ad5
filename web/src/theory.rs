//! The deletion-rate theory on the page's own configuration (the shared crate's `simulate`).

use s3t::Sequence;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct TheoryProps {
    /// The sequences each shard trained (the bundle's plan).
    pub sequences: Vec<Vec<Sequence>>,
    pub slices: u16,
}

/// How many deletions S3T and SISA survive before every shard needs retraining, on this page's configuration:
/// the paper's closed form (uniform deletions) and a Monte Carlo of the same, from the shared crate's `simulate`.
#[function_component(Theory)]
pub fn theory(props: &TheoryProps) -> Html {
    let rows = use_memo((props.sequences.clone(), props.slices), |(sequences, slices)| {
        let prior = s3t::Prior::uniform(*slices);
        let sisa: Vec<Vec<Sequence>> = sequences.iter().map(|_| vec![Sequence::identity(*slices)]).collect();
        [("S3T", sequences.clone()), ("SISA", sisa)]
            .into_iter()
            .map(|(name, seqs)| {
                let closed = s3t::simulate::closed_form_for(&seqs, &prior);
                let mc = s3t::simulate::MonteCarlo {
                    sequences: seqs,
                    prior: prior.clone(),
                    runs: 2000,
                    seed: 0,
                    checkpoints: Vec::new(),
                }
                .run()
                .ok();
                (name, closed, mc)
            })
            .collect::<Vec<_>>()
    });
    let m = props.sequences.len();
    let b = props.sequences.first().map_or(0, Vec::len);
    let se = |std: f64| std / 2000f64.sqrt();
    html! {
        <section class="theory" data-testid="theory">
            <h2>{ "How many deletions before retraining?" }</h2>
            <p>{ format!(
                "With {m} shards of {} slices, a deletion hits a random slice. A shard needs retraining once every one of its \
                 {b} sequences has lost its first slice; SISA's single sequence loses it at the first deletion in slice 0. \
                 The paper's closed form for uniform deletions is m·L·H(m·min(B, L)) (H: harmonic numbers); the Monte Carlo \
                 runs 2,000 random deletion streams on this page's own sequences.", props.slices) }</p>
            <table>
                <thead><tr><th scope="col">{ "" }</th><th scope="col">{ "closed form" }</th><th scope="col">{ "Monte Carlo: until every shard is offline" }</th><th scope="col">{ "until the first shard is offline" }</th></tr></thead>
                <tbody>
                    { for rows.iter().map(|(name, closed, mc)| html! {
                        <tr data-testid={format!("theory-{}", name.to_lowercase())}>
                            <th scope="row">{ *name }</th>
                            <td>{ closed.map_or("—".to_owned(), |c| format!("{c:.1}")) }</td>
                            <td>{ mc.as_ref().map_or("—".to_owned(), |r| format!("{:.1} ± {:.1}", r.mean_deletions_until_all_offline, se(r.std_deletions_until_all_offline))) }</td>
                            <td>{ mc.as_ref().map_or("—".to_owned(), |r| format!("{:.1} ± {:.1}", r.mean_deletions_until_first_offline, se(r.std_deletions_until_first_offline))) }</td>
                        </tr>
                    }) }
                </tbody>
            </table>
            <p class="small">{ "± is one standard error of the mean." }</p>
        </section>
    }
}
