//! The accuracy chart: S3T and SISA against the session's deletions, with the page's retrains marked.

use yew::prelude::*;

use crate::evaluation::Scores;

#[derive(Properties, PartialEq)]
pub struct ChartProps {
    pub history: Vec<Scores>,
    /// Whether the bundle has the SISA baseline to draw.
    pub sisa: bool,
    /// The page's retrains: (deletions at that moment, shard).
    #[prop_or_default]
    pub retrains: Vec<(usize, u16)>,
}

/// Accuracy against the number of deletions in this session: S3T next to SISA without retraining, with axes and
/// values, the live shards at each point, a tooltip per point and a marker at each retrain.
#[function_component(Chart)]
pub fn chart(props: &ChartProps) -> Html {
    let (w, h) = (560.0, 220.0);
    let (left, right, top, bottom) = (48.0, 16.0, 28.0, 36.0);
    let max_x = props.history.last().map_or(1, |s| s.deleted.max(1)) as f64;
    let values: Vec<f64> = props
        .history
        .iter()
        .flat_map(|s| [s.s3t.accuracy, s.sisa.as_ref().and_then(|e| e.accuracy)])
        .flatten()
        .collect();
    // The y range: the values' range widened to whole 5-point steps (a flat line is not a wall at 100 %).
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (y0, y1) = if values.is_empty() {
        (0.0, 1.0)
    } else {
        (((lo - 0.01) * 20.0).floor().max(0.0) / 20.0, (((hi + 0.01) * 20.0).ceil() / 20.0).min(1.0))
    };
    let y1 = if y1 - y0 < 0.05 { y0 + 0.05 } else { y1 };
    let x = |d: usize| left + d as f64 / max_x * (w - left - right);
    let y = |a: f64| h - bottom - (a - y0) / (y1 - y0) * (h - top - bottom);
    let line = |f: &dyn Fn(&Scores) -> Option<f64>| {
        props
            .history
            .iter()
            .filter_map(|s| f(s).map(|a| format!("{:.1},{:.1}", x(s.deleted), y(a))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let s3t = |s: &Scores| s.s3t.accuracy;
    let sisa = |s: &Scores| s.sisa.as_ref().and_then(|e| e.accuracy);
    let steps = ((y1 - y0) / 0.05).round() as usize;
    let x_ticks: Vec<usize> = {
        let every = (max_x as usize).div_ceil(8).max(1);
        (0..=max_x as usize).step_by(every).collect()
    };
    let point = |s: &Scores, a: Option<f64>, class: &'static str, name: &str| {
        a.map(|a| {
            let live = if class == "s3t" { format!(", {} of {} shards live", s.s3t.live_shards, s.s3t.per_shard.len()) } else { String::new() };
            html! {
                <circle class={class} cx={format!("{:.1}", x(s.deleted))} cy={format!("{:.1}", y(a))} r="3.5" tabindex="0">
                    <title>{ format!("after {} deletions: {name} {:.2}%{live}", s.deleted, a * 100.0) }</title>
                </circle>
            }
        })
    };
    let last = props.history.last();
    html! {
        <section class="chart">
            <h2>{ "Accuracy as samples are deleted" }</h2>
            <svg viewBox={format!("0 0 {w} {h}")} role="img" data-testid="chart"
                aria-label={format!("test accuracy against deletions: S3T {}{}", last.and_then(|s| s.s3t.accuracy).map_or("offline".into(), |a| format!("{:.1}%", a * 100.0)),
                    last.and_then(|s| s.sisa.as_ref()).and_then(|e| e.accuracy).map_or(String::new(), |a| format!(", SISA {:.1}%", a * 100.0)))}>
                { for (0..=steps).map(|k| {
                    let v = y0 + k as f64 * (y1 - y0) / steps.max(1) as f64;
                    html! { <g class="tick">
                        <line x1={left.to_string()} x2={(w - right).to_string()} y1={format!("{:.1}", y(v))} y2={format!("{:.1}", y(v))} />
                        <text x={(left - 6.0).to_string()} y={format!("{:.1}", y(v) + 4.0)} text-anchor="end">{ format!("{:.0}%", v * 100.0) }</text>
                    </g> }
                }) }
                { for x_ticks.iter().map(|&d| html! {
                    <text class="xtick" x={format!("{:.1}", x(d))} y={(h - bottom + 16.0).to_string()} text-anchor="middle">{ d }</text>
                }) }
                <text class="axis-label" x={((left + w - right) / 2.0).to_string()} y={(h - 4.0).to_string()} text-anchor="middle">{ "deletions in this session" }</text>
                { for props.retrains.iter().map(|&(d, shard)| html! {
                    <g class="retrain-marker" data-testid="retrain-marker">
                        <line x1={format!("{:.1}", x(d))} x2={format!("{:.1}", x(d))} y1={top.to_string()} y2={(h - bottom).to_string()} />
                        // The label sits on the side of the marker with room for it.
                        <text x={format!("{:.1}", if x(d) > w / 2.0 { x(d) - 3.0 } else { x(d) + 3.0 })} y={(top + 10.0).to_string()}
                            text-anchor={if x(d) > w / 2.0 { "end" } else { "start" }}>{ format!("retrained shard {shard}") }</text>
                    </g>
                }) }
                if props.sisa {
                    <polyline class="sisa" points={line(&sisa)} fill="none" />
                    { for props.history.iter().filter_map(|s| point(s, sisa(s), "sisa", "SISA without retraining")) }
                }
                <polyline class="s3t" points={line(&s3t)} fill="none" />
                { for props.history.iter().filter_map(|s| point(s, s3t(s), "s3t", "S3T")) }
                <g class="legend">
                    <line class="s3t" x1={left.to_string()} x2={(left + 18.0).to_string()} y1="12" y2="12" />
                    <text x={(left + 22.0).to_string()} y="16">{ "S3T" }</text>
                    if props.sisa {
                        <line class="sisa" x1={(left + 70.0).to_string()} x2={(left + 88.0).to_string()} y1="12" y2="12" />
                        <text x={(left + 92.0).to_string()} y="16">{ "SISA without retraining" }</text>
                    }
                </g>
            </svg>
        </section>
    }
}
