//! Forgetting reaches every node: what a deleted sample holds changes nothing a build trains.

use super::*;

/// The tensors of every node of a built shard.
fn node_tensors(dir: &Path, part: &ShardPart) -> Vec<Tensors> {
    part.nodes.iter().map(|n| tensors(&read_weights(dir, &n.weights).expect("node file"))).collect()
}

/// Forgetting reaches every node: once a sample is deleted, its pixels and label change nothing a build trains
/// (every node bit-identical); the same change to a sample that is not deleted changes the nodes that saw it.
#[test]
fn a_deleted_samples_pixels_and_label_reach_no_node() {
    let _guard = lock();
    for fx in fixtures() {
        a_deleted_samples_pixels_and_label_reach_no_node_on(&fx);
    }
}

fn a_deleted_samples_pixels_and_label_reach_no_node_on(fx: &Fixture) {
    let prefixes = fx.prefixes();
    let x = fx.member(prefixes[1][1]);
    let other = fx.with_deletable(fx.perturbed(x));
    let (one, two) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let a = fx.build(one.path(), &[], &[x]);
    let b = other.build(two.path(), &[], &[x]);
    assert_eq!(node_tensors(one.path(), &a), node_tensors(two.path(), &b), "a deleted sample reached a node");
    assert_eq!(
        a.nodes.iter().map(|n| &n.lineage).collect::<Vec<_>>(),
        b.nodes.iter().map(|n| &n.lineage).collect::<Vec<_>>()
    );

    // Negative control: not deleted, the same change reaches exactly the nodes whose prefix holds its slice.
    let (three, four) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let c = fx.build(three.path(), &[], &[]);
    let d = other.build(four.path(), &[], &[]);
    for (i, (p, q)) in node_tensors(three.path(), &c).iter().zip(node_tensors(four.path(), &d)).enumerate() {
        let saw = c.nodes[i].prefix.contains(&prefixes[1][1]);
        assert_eq!(*p != q, saw, "node {i} (prefix {:?}) changed iff its prefix holds the sample", c.nodes[i].prefix);
    }
}

/// A node is a function of its prefix's samples only: changing a sample of a slice outside the prefix leaves it
/// bit-identical (and changes the node whose prefix holds it).
#[test]
fn a_sample_outside_a_nodes_prefix_does_not_reach_it() {
    let _guard = lock();
    for fx in fixtures() {
        a_sample_outside_a_nodes_prefix_does_not_reach_it_on(&fx);
    }
}

fn a_sample_outside_a_nodes_prefix_does_not_reach_it_on(fx: &Fixture) {
    let prefixes = fx.prefixes();
    let last = prefixes[2][2];
    let y = fx.member(last);
    let other = fx.with_deletable(fx.perturbed(y));
    let (one, two) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let a = node_tensors(one.path(), &fx.build(one.path(), &[], &[]));
    let b = node_tensors(two.path(), &other.build(two.path(), &[], &[]));
    assert_eq!(a[..2], b[..2], "a sample of slice {last} reached the nodes of prefixes without it");
    assert_ne!(a[2], b[2], "negative control: the node whose prefix holds the sample must change");
}
