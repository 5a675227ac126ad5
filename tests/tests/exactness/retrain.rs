//! The page's retrain is `trainer retrain`, and what it sends back is checked on arrival.

use super::*;

/// The page's retrain (the worker's in-memory store, the reused nodes' bytes put in beforehand, its own copy of the
/// samples in another row order) is `trainer retrain` bit for bit, and what it sends back is accepted exactly when it is still exact: a sample deleted while
/// it ran, or bytes changed on the way, make the page refuse it.
#[test]
fn page_retrain_in_memory_equals_trainer_retrain_and_is_checked_on_arrival() {
    let _guard = lock();
    let fx = Fixture::new();
    let prefixes = fx.prefixes();
    let slice = prefixes[1][1];
    let ids: Vec<u64> = fx
        .assignment
        .members(Cell { shard: 0, slice })
        .iter()
        .map(|id| match id {
            SampleId::Int(i) => *i,
            other => panic!("unexpected id {other}"),
        })
        .collect();
    let gone = ids[0];
    let dir = tempfile::tempdir().expect("tempdir");
    let original = fx.build(dir.path(), &[], &[]);
    let guard = Guard::new(&fx.assignment, [SampleId::Int(gone)]);
    let reuse = guard.reusable(&original.nodes);

    let trainer = fx.build(dir.path(), &reuse, &[gone]);
    let memory = MemoryStore::default();
    for entry in reuse.iter().flatten() {
        memory.insert(&entry.weights.path, read_weights(dir.path(), &entry.weights).expect("node file"));
    }
    let page = fx.build_relocated(&memory, &reuse, &[gone]);
    assert_eq!(page.nodes, trainer.nodes, "entries (lineage, seeds, weight checksums) differ from trainer retrain");
    let retrained: Vec<usize> = page.nodes.iter().filter(|e| reuse[e.id].is_none()).map(|e| e.id).collect();
    let weights: Vec<Vec<u8>> =
        retrained.iter().map(|&id| memory.take(&page.nodes[id].weights.path).expect("trained weights")).collect();
    for (&id, bytes) in retrained.iter().zip(&weights) {
        assert_eq!(bytes, &read_weights(dir.path(), &trainer.nodes[id].weights).expect("node file"), "node {id}");
    }

    let plan = &fx.plan.shards[0];
    accept(&guard, 0, plan, &page.nodes, &retrained, &weights).expect("an exact retrain is accepted");
    // Another sample of the same slice deleted while the worker ran: the retrained nodes saw it.
    let later = Guard::new(&fx.assignment, [SampleId::Int(gone), SampleId::Int(ids[1])]);
    let stale = accept(&later, 0, plan, &page.nodes, &retrained, &weights).expect_err("a stale retrain is served");
    assert!(matches!(stale, s3t::Error::Stale { served: None, .. }), "{stale}");
    let stale = stale.to_string();
    assert!(stale.contains(&format!("slice {slice}")), "{stale}");
    // A flipped byte on the way.
    let mut tampered = weights.clone();
    tampered[0][40] ^= 1;
    let bad = accept(&guard, 0, plan, &page.nodes, &retrained, &tampered).expect_err("changed bytes are served");
    assert!(matches!(bad, s3t::Error::Checksum { .. }), "{bad}");
    let bad = bad.to_string();
    assert!(bad.contains("checksum mismatch"), "{bad}");
    // Weights missing, or a node of another prefix.
    assert!(accept(&guard, 0, plan, &page.nodes, &retrained, &weights[1..]).is_err());
    let mut moved = page.nodes.clone();
    moved[1].prefix = moved[2].prefix.clone();
    assert!(accept(&guard, 0, plan, &moved, &retrained, &weights).is_err());
}
