//! Table tests of the page's reducers on a small real partition, plan and routers (no browser, no model).

use std::rc::Rc;

use super::Reducer;
use super::base::Base;
use super::retraining::{RetrainAction, Retraining};
use super::session::{Fixed, Retrain, Session, SessionAction};
use crate::bundle::entry::lineage;
use crate::bundle::retrain::Report as WorkerReport;
use crate::bundle::{NodeEntry, WeightFile};
use crate::partition::{Assignment, Cell, Partition, PartitionMode};
use crate::{Action, Plan, Router, SampleId, Sequence, State, Strategy};

struct Fixture {
    assignment: Assignment,
    plan: Plan,
    fixed: Rc<Fixed>,
}

/// Two shards of three slices, three cyclic sequences each; `ledger` is deleted in the bundle's own ledger.
fn fixture(ledger: &[SampleId]) -> Fixture {
    let partition = Partition::new(2, 3, PartitionMode::Balanced).expect("partition");
    let assignment = partition.assign((0..60u64).map(SampleId::Int)).expect("assignment");
    let plan = Plan::new(2, 3, 3, &Strategy::Cyclic).expect("plan");
    let sisa_plan = Plan::from_sequences(3, vec![vec![Sequence::identity(3)]; 2]).expect("SISA plan");
    let s3t = Rc::new(Router::new(assignment.clone(), &plan).expect("router"));
    let sisa = Rc::new(Router::new(assignment.clone(), &sisa_plan).expect("SISA router"));
    let actions: Vec<Action> = ledger.iter().cloned().map(Action::Delete).collect();
    let base = Base {
        state: s3t.replay(&actions).expect("ledger"),
        sisa: sisa.replay(&actions).expect("ledger"),
        deleted: ledger.iter().cloned().collect(),
        actions,
        note: None,
    };
    Fixture { assignment, plan, fixed: Rc::new(Fixed { s3t, sisa, base: Rc::new(base) }) }
}

impl Fixture {
    /// The first sample of a cell.
    fn sample(&self, shard: u16, slice: u16) -> SampleId {
        self.assignment.members(Cell { shard, slice })[0].clone()
    }

    /// A shard's node list as a retrain without `deleted` records it (the lineage is what the guard checks).
    fn retrained(&self, shard: u16, deleted: &[SampleId]) -> Rc<Vec<NodeEntry>> {
        let gone = |id: &SampleId| deleted.contains(id);
        let entry = |n: &crate::Node| NodeEntry {
            shard,
            id: n.id,
            prefix: n.prefix.clone(),
            parent: n.parent,
            seed: 0,
            lineage: lineage(&self.assignment, shard, &n.prefix, &gone),
            samples: 0,
            validation_accuracy: 0.0,
            generation: 1,
            weights: WeightFile { path: String::new(), sha256: String::new(), bytes: 0 },
        };
        Rc::new(self.plan.shards[usize::from(shard)].nodes.iter().map(entry).collect())
    }

    fn session(&self) -> Rc<Session> {
        Rc::new(Session::new(self.fixed.clone()))
    }

    /// The route state machine's own state after `actions` from the bundle's base.
    fn routed(&self, actions: &[Action]) -> State {
        let mut state = self.fixed.base.state.clone();
        for action in actions {
            state = self.fixed.s3t.apply(&state, action).expect("route").0;
        }
        state
    }
}

fn run<T: Reducer>(start: Rc<T>, actions: impl IntoIterator<Item = T::Action>) -> Rc<T> {
    actions.into_iter().fold(start, |state, action| state.reduce(action))
}

fn no_weights() -> Rc<Vec<(usize, Vec<u8>)>> {
    Rc::new(Vec::new())
}

/// What a test reads of the retraining queue: (current shard, its request sent), waiting shards, worker ready,
/// stops, an error shown.
type Queue = (Option<(u16, bool)>, Vec<u16>, bool, u64, bool);

fn queue(r: &Retraining) -> Queue {
    (
        r.current.as_ref().map(|j| (j.shard, j.sent)),
        r.queue.iter().map(|&(s, _)| s).collect(),
        r.ready,
        r.stops,
        r.error.is_some(),
    )
}

#[test]
fn the_retraining_queue_follows_the_worker_and_the_visitor() {
    use RetrainAction::*;
    let applied = |result: Result<f64, String>, again| Applied { shard: 0, result, again };
    let progress = |shard| Report(WorkerReport::Progress { shard, samples: 5, nodes_done: 1 }, 10.0);
    let cases: Vec<(&str, Vec<RetrainAction>, Queue)> = vec![
        ("a retrain starts at once", vec![Enqueue(0)], (Some((0, false)), vec![], false, 0, false)),
        (
            "its request goes to the worker",
            vec![Enqueue(0), WorkerReady, Sent],
            (Some((0, true)), vec![], false, 0, false),
        ),
        (
            "cancel after sent stops the worker",
            vec![Enqueue(0), WorkerReady, Sent, Cancel(0)],
            (None, vec![], false, 1, false),
        ),
        (
            "the cancelled job's late progress is ignored",
            vec![Enqueue(0), WorkerReady, Sent, Cancel(0), progress(0)],
            (None, vec![], false, 1, false),
        ),
        ("cancel a queued shard", vec![Enqueue(0), Enqueue(1), Cancel(1)], (Some((0, false)), vec![], false, 0, false)),
        (
            "a shard is queued once",
            vec![Enqueue(0), Enqueue(0), Enqueue(1), Enqueue(1)],
            (Some((0, false)), vec![1], false, 0, false),
        ),
        (
            "a stale result is retrained again, first",
            vec![Enqueue(0), Enqueue(1), WorkerReady, Sent, applied(Err("stale".into()), true)],
            (Some((0, false)), vec![1], true, 0, true),
        ),
        (
            "a refused result that needs nothing more is not retried",
            vec![Enqueue(0), WorkerReady, Sent, applied(Err("refused".into()), false)],
            (None, vec![], true, 0, true),
        ),
        (
            "a served result frees the worker for the next shard",
            vec![Enqueue(0), Enqueue(1), WorkerReady, Sent, applied(Ok(2.0), false)],
            (Some((1, false)), vec![], true, 0, false),
        ),
        (
            "reset during a retrain stops everything",
            vec![Enqueue(0), Enqueue(1), WorkerReady, Sent, CancelAll],
            (None, vec![], false, 1, false),
        ),
        ("reset with nothing running stops nothing", vec![CancelAll], (None, vec![], false, 0, false)),
        (
            "a failed worker is stopped and the next job waits for a new one",
            vec![Enqueue(0), Enqueue(1), WorkerReady, Sent, WorkerError("crashed".into())],
            (Some((1, false)), vec![], false, 1, true),
        ),
        (
            "a link's retrains are replayed in order, a shard more than once",
            vec![EnqueueAt { shard: 0, after: 1 }, EnqueueAt { shard: 0, after: 3 }],
            (Some((0, false)), vec![0], false, 0, false),
        ),
    ];
    for (name, actions, expected) in cases {
        let end = run(Rc::new(Retraining::default()), actions);
        assert_eq!(queue(&end), expected, "{name}");
    }
}

#[test]
fn a_retrain_is_asked_for_then_started_or_dismissed() {
    use RetrainAction::*;
    let asked = run(Rc::new(Retraining::default()), [Ask(1)]);
    assert_eq!(asked.asked, Some(1));
    assert_eq!(run(asked.clone(), [Dismiss]).asked, None);
    let started = run(asked, [Enqueue(1)]);
    assert_eq!((started.asked, started.current.as_ref().map(|j| j.shard)), (None, Some(1)));
    // Asking about a shard that already retrains shows nothing.
    let busy = run(Rc::new(Retraining::default()), [Enqueue(1), Ask(1)]);
    assert_eq!(busy.asked, None);
}

#[test]
fn a_report_for_another_shard_changes_nothing() {
    let running = run(Rc::new(Retraining::default()), [RetrainAction::Enqueue(0)]);
    let other = RetrainAction::Report(WorkerReport::Progress { shard: 1, samples: 5, nodes_done: 1 }, 1.0);
    let after = running.clone().reduce(other);
    assert!(Rc::ptr_eq(&running, &after), "the state was replaced");
}

#[test]
fn a_deletion_routes_and_a_second_one_of_the_same_sample_changes_nothing() {
    let fx = fixture(&[]);
    let a = fx.sample(0, 0);
    let once = fx.session().reduce(SessionAction::Delete(a.clone()));
    assert_eq!(once.deleted, vec![a.clone()]);
    assert_eq!(once.state, fx.routed(&[Action::Delete(a.clone())]));
    assert_eq!((once.changes, once.revision), (1, 1));
    let twice = once.clone().reduce(SessionAction::Delete(a));
    assert!(Rc::ptr_eq(&once, &twice), "deleting a deleted sample changed the session");
}

#[test]
fn reset_during_a_retrain_returns_to_the_bundles_state_and_a_late_result_is_refused() {
    let fx = fixture(&[]);
    let (a, b) = (fx.sample(0, 0), fx.sample(0, 1));
    let session = run(fx.session(), [SessionAction::Delete(a.clone()), SessionAction::Delete(b)]);
    // The worker retrains shard 0 without `a` only (a retrain of the first deletion's state).
    let late = fx.retrained(0, std::slice::from_ref(&a));
    let reset = session.reduce(SessionAction::Reset);
    assert_eq!(reset.state, fx.fixed.base.state);
    assert!(reset.deleted.is_empty() && reset.retrains.is_empty());
    assert_eq!((reset.changes, reset.revision), (3, 3));
    // After Reset nothing is deleted: nodes trained without `a` are not those of this state.
    let served = reset.reduce(SessionAction::Retrained { shard: 0, nodes: late, weights: no_weights() });
    assert!(served.retrains.is_empty(), "a retrain for undone deletions was served");
    assert!(served.note.as_deref().is_some_and(|n| n.contains("was not served")), "{:?}", served.note);
    // Resetting nothing is no change to save.
    let again = fx.session().reduce(SessionAction::Reset);
    assert_eq!((again.changes, again.revision), (0, 0));
}

#[test]
fn a_retrain_is_served_only_without_every_deletion_known_when_it_arrives() {
    let fx = fixture(&[]);
    let (a, b) = (fx.sample(0, 0), fx.sample(0, 2));
    let deleted = run(fx.session(), [SessionAction::Delete(a.clone())]);
    let fresh = fx.retrained(0, std::slice::from_ref(&a));
    let served =
        deleted.clone().reduce(SessionAction::Retrained { shard: 0, nodes: fresh.clone(), weights: no_weights() });
    assert_eq!(served.retrains.len(), 1);
    assert_eq!(served.state, fx.routed(&[Action::Delete(a.clone()), Action::Retrained { shard: 0 }]));
    assert_eq!(served.state.served(0).map(|s| s.prefix), Some(3));
    // A deletion in the same shard arrived while the worker ran: its result is stale.
    let meanwhile = deleted.reduce(SessionAction::Delete(b));
    let stale = meanwhile.reduce(SessionAction::Retrained { shard: 0, nodes: fresh, weights: no_weights() });
    assert!(stale.retrains.is_empty());
    assert!(stale.note.as_deref().is_some_and(|n| n.contains("was not served")), "{:?}", stale.note);
}

#[test]
fn a_link_with_retrains_replays_each_in_its_place() {
    let fx = fixture(&[]);
    let (a, b, c) = (fx.sample(0, 0), fx.sample(1, 1), fx.sample(0, 2));
    let after_one =
        Retrain { after: 1, shard: 0, nodes: fx.retrained(0, std::slice::from_ref(&a)), weights: no_weights() };
    let ids = vec![a.clone(), b.clone(), c.clone()];
    let restored = fx.session().reduce(SessionAction::Restore {
        ids: ids.clone(),
        retrains: vec![after_one.clone()],
        source: "link",
    });
    assert_eq!(restored.note, None);
    assert_eq!(restored.deleted, ids);
    assert_eq!(restored.retrains, vec![after_one.clone()]);
    let expected = fx.routed(&[
        Action::Delete(a.clone()),
        Action::Retrained { shard: 0 },
        Action::Delete(b.clone()),
        Action::Delete(c.clone()),
    ]);
    assert_eq!(restored.state, expected);

    // The same retrain named at a place before its deletion is refused, and the state left as it was.
    let misplaced = Retrain { after: 0, ..after_one.clone() };
    let refused =
        fx.session().reduce(SessionAction::Restore { ids: ids.clone(), retrains: vec![misplaced], source: "link" });
    assert!(refused.deleted.is_empty() && refused.retrains.is_empty());
    assert!(refused.note.as_deref().is_some_and(|n| n.contains("the link was ignored")), "{:?}", refused.note);

    // A link's retrain without its weights is retrained again in the page, then replayed at its place.
    let deleted = run(fx.session(), ids.iter().cloned().map(SessionAction::Delete));
    let replayed = deleted.reduce(SessionAction::Replayed(after_one));
    assert_eq!(replayed.state, expected);
    assert_eq!(replayed.retrains.len(), 1);
}

#[test]
fn a_links_ledger_ids_are_deleted_already_and_retrains_keep_their_place() {
    let a = fixture(&[]).sample(0, 0);
    let fx = fixture(std::slice::from_ref(&a));
    let b = fx.sample(0, 1);
    // The link was made before `a` went into the ledger: [a, b] with a retrain after both.
    let nodes = fx.retrained(0, &[a.clone(), b.clone()]);
    let retrain = Retrain { after: 2, shard: 0, nodes, weights: no_weights() };
    let restored = fx.session().reduce(SessionAction::Restore {
        ids: vec![a.clone(), b.clone()],
        retrains: vec![retrain],
        source: "link",
    });
    assert_eq!(restored.note, None);
    assert_eq!(restored.deleted, vec![b.clone()]);
    assert_eq!(restored.retrains[0].after, 1);
    assert_eq!(restored.deleted_at(None).len(), 2);
    assert_eq!(restored.deleted_at(Some(0)), vec![a]);
}

#[test]
fn an_unreadable_saved_state_is_a_note_and_changes_nothing() {
    let fx = fixture(&[]);
    let ignored = fx.session().reduce(SessionAction::Ignore { why: "bad base64".into(), source: "local storage" });
    assert_eq!((ignored.changes, ignored.revision), (0, 0));
    assert_eq!(ignored.note.as_deref(), Some("the saved state in the local storage was ignored: bad base64"));
}

#[test]
fn a_retrain_placed_before_its_deletion_is_a_lineage_mismatch() {
    let fx = fixture(&[]);
    let a = fx.sample(0, 0);
    let retrain =
        Retrain { after: 0, shard: 0, nodes: fx.retrained(0, std::slice::from_ref(&a)), weights: no_weights() };
    let f = &fx.fixed;
    let err = f.base.with(&f.s3t, &f.sisa, &[a], &[retrain]).expect_err("a retrain before its deletion was accepted");
    assert!(matches!(err, crate::Error::Mismatch { .. }), "{err}");
}
