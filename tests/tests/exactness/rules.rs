//! Exactness rules E1–E6 (DESIGN.md §2), each with a negative control.

use super::*;

/// Root cause behind the byte-level checks below: the same module serialised twice must give the same bytes,
/// or a node's `weights.sha256` cannot be reproduced by a resume, a retrain or another machine (E6, E8).
#[test]
fn weight_files_are_byte_reproducible() {
    let _guard = lock();
    let head = Head::new(&model_config().vit, &cpu().device);
    let first = to_safetensors(&head).expect("serialise");
    for _ in 0..20 {
        let again = to_safetensors(&head).expect("serialise");
        assert_eq!(weights!(&head), tensors(&first), "the tensors themselves are stable");
        assert!(
            again == first,
            "to_safetensors gave different bytes for the same module: the header's __metadata__ map (a HashMap) \
             is written in random key order\nfirst: {}\nagain: {}",
            String::from_utf8_lossy(&first[..header(&first).0]),
            String::from_utf8_lossy(&again[..header(&again).0]),
        );
    }
}

/// The page's worker serialises what it trains on WebGPU by reading every parameter back asynchronously and
/// writing the copy: the file must be the one `to_safetensors` writes for the same values, or a GPU retrain's
/// sha256 could not be checked against anything (here on the CPU backend, whose reads are ready at once).
#[test]
fn weights_read_back_asynchronously_serialise_to_the_same_bytes() {
    let _guard = lock();
    let config = model_config();
    let device = cpu().device;
    let pretrained =
        Pretrained { backbone: Backbone::new(&config.vit, &device), head: Head::new(&config.vit, &device) };
    let adapter = GroupAdapter::init(&config, 2, 7, &device);
    fn ready(bytes: impl Future<Output = s3t::Result<Vec<u8>>>) -> Vec<u8> {
        let mut bytes = std::pin::pin!(bytes);
        match bytes.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(result) => result.expect("serialise"),
            std::task::Poll::Pending => panic!("the CPU backend reads back at once"),
        }
    }
    let backbone = ready(to_safetensors_async(&pretrained));
    assert!(backbone == to_safetensors(&pretrained).expect("serialise"), "backbone and head: other bytes");
    let group = ready(to_safetensors_async(&adapter));
    assert!(group == to_safetensors(&adapter).expect("serialise"), "adapter group: other bytes");
    // Control: other values give other bytes (the copy really carries the values read back).
    let other = GroupAdapter::init(&config, 2, 8, &device);
    assert!(ready(to_safetensors_async(&other)) != group);
}

/// E1: pretraining takes the public split only, so the backbone is the same whatever the deletable split holds,
/// it sees exactly |public| × epochs samples, and it is deterministic given the seed.
#[test]
fn e1_backbone_does_not_depend_on_the_deletable_split() {
    let _guard = lock();
    let config = model_config();
    let train = train_config();
    let device = cpu().device;
    let a = splits(2);
    let b = splits(99);
    assert_eq!(a.public, b.public);
    assert_ne!(a.deletable, b.deletable, "the two source splits must differ in their deletable part");

    let mut seen = 0;
    let with_a = pretrain(&config, &train, &a.public, SEED, &device, Pieces::cpu(2), &mut |n| seen += n);
    assert_eq!(seen, a.public.len() * train.epochs, "pretraining steps cover the public split only");
    let with_b = pretrain(&config, &train, &b.public, SEED, &device, Pieces::cpu(2), &mut |_| {});
    assert_eq!(weights!(&with_a), weights!(&with_b), "backbone and head differ with another deletable split");

    // Negative control: one public image changed changes the backbone, so the comparison above can fail.
    let mut public = a.public.clone();
    let pixels = public.pixels_per_image();
    for p in &mut public.pixels[..pixels] {
        *p = 255 - *p;
    }
    let changed = pretrain(&config, &train, &public, SEED, &device, Pieces::cpu(2), &mut |_| {});
    assert_ne!(weights!(&with_a.backbone), weights!(&changed.backbone), "pretraining ignored its public data");
}

/// Pretraining computes each batch in pieces whose gradients are summed in order: the backbone is the same bit for
/// bit on one thread or on two, and another number of pieces is another computation (the control).
#[test]
fn pretraining_in_pieces_gives_the_same_backbone_on_any_number_of_threads() {
    let _guard = lock();
    let (config, train, device) = (model_config(), train_config(), cpu().device);
    let public = splits(2).public;
    let trained = |pieces| weights!(&pretrain(&config, &train, &public, SEED, &device, pieces, &mut |_| {}));
    let one_thread = trained(Pieces::cpu(1));
    assert_eq!(trained(Pieces::cpu(2)), one_thread, "the thread count changed the backbone");
    assert_ne!(trained(Pieces::whole()), one_thread, "whole batches and halves gave the same backbone");
}

/// E2: training group k leaves the backbone and groups 1..k−1 bit for bit as they were; the trainable module is
/// exactly group k's adapters and the head; group k itself did train.
#[test]
fn e2_node_step_leaves_backbone_and_frozen_groups_unchanged() {
    let _guard = lock();
    for fx in fixtures() {
        e2_node_step_leaves_backbone_and_frozen_groups_unchanged_on(&fx);
    }
}

fn e2_node_step_leaves_backbone_and_frozen_groups_unchanged_on(fx: &Fixture) {
    let backbone = weights!(&fx.pretrained.backbone);
    let mut nodes: Vec<NodeParams> = Vec::new();
    for prefix in fx.prefixes() {
        let k = prefix.len();
        let before: Vec<Tensors> = nodes.iter().map(|n| weights!(n)).collect();
        let seed = node_seed(SEED, 0, &prefix);
        let ancestors: Vec<&NodeParams> = nodes.iter().collect();
        let node = fx.node(&prefix, &ancestors, seed, &[]);

        assert_eq!(weights!(&fx.pretrained.backbone), backbone, "step {k} changed the backbone");
        for (g, (frozen, before)) in nodes.iter().zip(&before).enumerate() {
            assert_eq!(&weights!(frozen), before, "step {k} changed group {} or its head snapshot", g + 1);
        }
        assert_eq!(node.adapter.group, k, "step {k} returned the adapters of another group");
        let trainable = weights!(&node);
        let blocks = fx.config.blocks_of_group(k).len();
        assert_eq!(under(&trainable, "adapter").len(), 4 * blocks, "group {k} holds A and B for q and v per block");
        assert_eq!(under(&trainable, "head").len(), 2, "the head is weight and bias");
        assert_eq!(trainable.len(), 4 * blocks + 2, "the node holds something besides group {k} and the head");

        // Negative control: group k and the head moved away from where they started.
        let init = GroupAdapter::init(&fx.config, k, seed, &fx.cpu.device);
        assert_ne!(weights!(&node.adapter), weights!(&init), "group {k} did not train");
        let parent_head = nodes.last().map_or(&fx.pretrained.head, |n| &n.head);
        assert_ne!(weights!(&node.head), weights!(parent_head), "the head did not train in step {k}");
        nodes.push(node);
    }
}

/// Negative control for E2: SISA trains every group, so continuing from a checkpoint changes group 1, and the
/// byte comparison used above sees it (while the backbone still stays frozen).
#[test]
fn e2_control_sisa_changes_group_one() {
    let _guard = lock();
    for fx in fixtures() {
        e2_control_sisa_changes_group_one_on(&fx);
    }
}

fn e2_control_sisa_changes_group_one_on(fx: &Fixture) {
    let backbone = weights!(&fx.pretrained.backbone);
    let prefixes = fx.prefixes();
    let sisa = |previous: Option<&SisaParams>, prefix: &[u16], seed: u64| {
        let samples = fx.samples(prefix, &[]);
        let (config, data) = (&fx.config, &fx.splits.deletable);
        let (pretrained, device) = (&fx.pretrained, &fx.cpu.device);
        let inputs = TrainInputs {
            config,
            backbone: &pretrained.backbone,
            features: &fx.features,
            data,
            validation: None,
            device,
        };
        train_sisa(&inputs, &pretrained.head, SisaRun { previous, samples, seed, run: fx.train.clone() }, &mut |_| {})
    };
    let first = sisa(None, &prefixes[0], 1);
    let second = sisa(Some(&first), &prefixes[1], 2);
    assert_eq!(first.adapters[0].group, 1);
    assert_ne!(weights!(&first.adapters[0]), weights!(&second.adapters[0]), "SISA left group 1 unchanged");
    assert_eq!(weights!(&fx.pretrained.backbone), backbone, "SISA changed the backbone");
}

/// E3: a served prefix k uses groups 1..k and the head snapshot of step k, as built into a bundle and loaded back;
/// each step's head differs from its parent's and the next one's, so using another head would be detected.
#[test]
fn e3_served_prefix_uses_the_head_of_its_step() {
    let _guard = lock();
    for fx in fixtures() {
        e3_served_prefix_uses_the_head_of_its_step_on(&fx);
    }
}

fn e3_served_prefix_uses_the_head_of_its_step_on(fx: &Fixture) {
    let dir = tempfile::tempdir().expect("tempdir");
    let part = fx.build(dir.path(), &[], &[]);
    let manifest = fx.manifest(dir.path(), part.clone());
    let model = fx.load(dir.path(), manifest);
    // The same steps trained outside the bundle code: the snapshot at the end of each step.
    let steps = fx.chain();
    let chain = &fx.plan.shards[0].chains[0];

    for k in 1..=GROUPS {
        let (groups, head) = model.component(0, Served { sequence: 0, prefix: k as u16 }).expect("component");
        assert_eq!(groups.len(), k, "prefix {k} serves {} groups", groups.len());
        for (i, group) in groups.iter().enumerate() {
            assert_eq!(group.group, i + 1);
            assert_eq!(
                weights!(*group),
                weights!(&steps[i].adapter),
                "prefix {k}: group {} is not step {}'s",
                i + 1,
                i + 1
            );
        }
        let served = weights!(head);
        let file = tensors(&read_weights(dir.path(), &part.nodes[chain[k - 1]].weights).expect("node file"));
        assert_eq!(served, under(&file, "head"), "prefix {k}: the head is not the one in node {k}'s file");
        assert_eq!(served, weights!(&steps[k - 1].head), "prefix {k}: the head is not the snapshot of step {k}");
        let parent = if k == 1 { &fx.pretrained.head } else { &steps[k - 2].head };
        assert_ne!(served, weights!(parent), "step {k} left the head as its parent's");
        if k < GROUPS {
            // A later head is a different head with different outputs: serving it would be detectable.
            assert_ne!(served, weights!(&steps[k].head));
            let own = fx.logits(&groups, head);
            let later = fx.logits(&groups, &steps[k].head);
            let diff = max_abs_diff(&own, &later);
            assert!(diff > 1e-4, "prefix {k}: head {} gives the same logits as head {k} ({diff})", k + 1);
        }
    }
}

/// E4: the prefix-k model computed from raw images, from the cached activations at group k's boundary, and as the
/// full model with groups k+1..L present but switched off all agree within 1e-6; switching group k+1 on does not.
#[test]
fn e4_switching_off_lower_groups_gives_the_prefix_model() {
    let _guard = lock();
    for fx in fixtures() {
        e4_switching_off_lower_groups_gives_the_prefix_model_on(&fx);
    }
}

fn e4_switching_off_lower_groups_gives_the_prefix_model_on(fx: &Fixture) {
    let steps = fx.chain();
    let trained: Vec<&GroupAdapter> = steps.iter().map(|n| &n.adapter).collect();
    let off: Vec<GroupAdapter> = steps.iter().map(|n| fx.switched_off(&n.adapter)).collect();
    for k in 1..=GROUPS {
        let head = &steps[k - 1].head;
        let prefix = fx.logits(&trained[..k], head);
        let component = Component { groups: &trained[..k], head };
        let cached = logits_all(&fx.config, &fx.pretrained.backbone, component, &fx.validation);
        let mut full: Vec<&GroupAdapter> = trained[..k].to_vec();
        full.extend(off[k..].iter());
        assert_eq!(full.len(), GROUPS);
        let switched = fx.logits(&full, head);
        let d_cached = max_abs_diff(&prefix, &cached);
        let d_switched = max_abs_diff(&prefix, &switched);
        assert!(d_cached <= 1e-6, "prefix {k}: cached-activation logits differ by {d_cached}");
        assert!(d_switched <= 1e-6, "prefix {k}: full model with groups > {k} off differs by {d_switched}");
        if k < GROUPS {
            // Negative control: group k+1 switched on (trained B ≠ 0) changes the logits.
            let on = fx.logits(&trained[..=k], head);
            let d_on = max_abs_diff(&prefix, &on);
            assert!(d_on > 1e-4, "prefix {k}: switching group {} on changed nothing ({d_on})", k + 1);
        }
    }
}

/// E6: a node is a function of its seed and samples: retraining it is bit-identical, another prefix's seed or
/// another sample set gives another node.
#[test]
fn e6_node_retrain_is_bit_identical_and_seeded_by_prefix() {
    let _guard = lock();
    for fx in fixtures() {
        e6_node_retrain_is_bit_identical_and_seeded_by_prefix_on(&fx);
    }
}

fn e6_node_retrain_is_bit_identical_and_seeded_by_prefix_on(fx: &Fixture) {
    let prefixes = fx.prefixes();
    let first = &prefixes[0];
    let seed = node_seed(SEED, 0, first);
    let once = weights!(&fx.node(first, &[], seed, &[]));
    let twice = weights!(&fx.node(first, &[], seed, &[]));
    assert_eq!(once, twice, "the same node trained twice differs");

    let other = node_seed(SEED, 0, &[first[0] + 1]);
    assert_ne!(seed, other);
    assert_ne!(once, weights!(&fx.node(first, &[], other, &[])), "the seed does not reach the node");
    let deleted = fx.samples(first, &[])[0] as u64;
    assert_ne!(once, weights!(&fx.node(first, &[], seed, &[deleted])), "the samples do not reach the node");
}

/// E6: an interrupted build resumed from its completed nodes records the same entries, weights sha256 included,
/// as the uninterrupted build.
#[test]
fn e6_resumed_build_matches_fresh_build() {
    let _guard = lock();
    for fx in fixtures() {
        e6_resumed_build_matches_fresh_build_on(&fx);
    }
}

fn e6_resumed_build_matches_fresh_build_on(fx: &Fixture) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = fx.build(dir.path(), &[], &[]);
    let files: Vec<Vec<u8>> =
        fresh.nodes.iter().map(|n| read_weights(dir.path(), &n.weights).expect("node file")).collect();
    // Interrupted after the first node: it is reused from disk, the rest retrained on top of it.
    let reuse = vec![Some(fresh.nodes[0].clone()), None, None];
    let resumed = fx.build(dir.path(), &reuse, &[]);
    assert_eq!(resumed.nodes.len(), fresh.nodes.len());
    assert_eq!(resumed.complete, fresh.complete);
    // Everything but the checksum first, so a checksum-only failure is visibly one.
    let without_checksum =
        |e: &NodeEntry| NodeEntry { weights: WeightFile { sha256: String::new(), ..e.weights.clone() }, ..e.clone() };
    for (i, ((got, want), before)) in resumed.nodes.iter().zip(&fresh.nodes).zip(&files).enumerate() {
        let after = read_weights(dir.path(), &got.weights).expect("node file");
        assert_eq!(tensors(&after), tensors(before), "node {i}: resumed weights differ from the fresh build");
        assert_eq!(
            without_checksum(got),
            without_checksum(want),
            "node {i}: resumed entry differs from the fresh build"
        );
        assert_eq!(
            got.weights.sha256, want.weights.sha256,
            "node {i}: same tensors but another weights sha256: the file bytes are not reproducible \
             (see weight_files_are_byte_reproducible)"
        );
    }
}

/// E5: inputs are normalised with fixed constants (an image's tensor does not depend on the data set around it),
/// and building never reads the test split (replacing it changes no weight and no recorded validation score).
#[test]
fn e5_fixed_normalisation_and_no_test_split_in_building() {
    let _guard = lock();
    let device = cpu().device;
    let a = synthetic(4, 10);
    let mut b = synthetic(4, 11);
    let per = 28 * 28;
    b.pixels[2 * per..3 * per].copy_from_slice(&a.pixels[..per]);
    let in_a = to_host(input::images(&a, &[0, 1], &device));
    let in_b = to_host(input::images(&b, &[2], &device));
    assert_eq!(in_a[..per], in_b[..], "the same image normalised differently in another data set");
    for (x, &p) in in_a.iter().zip(&a.pixels) {
        assert_eq!(*x, f32::from(p) * (2.0 / 255.0) - 1.0, "normalisation is not the fixed map 0..=255 → [−1, 1]");
    }

    let fx = Fixture::new();
    let mut other = Fixture::new();
    other.splits.test = synthetic(8, 99);
    let (one, two) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let (x, y) = (fx.build(one.path(), &[], &[]), other.build(two.path(), &[], &[]));
    assert_eq!(x.nodes, y.nodes, "a build with another test split differs: the test split reached training");
    assert_eq!(x.sisa, y.sisa, "SISA checkpoints differ with another test split");
}

/// E6: after deleting a sample, reusing the clean nodes and retraining the rest gives exactly the nodes a build
/// that never had the sample produces.
#[test]
fn e6_retrain_after_deletion_equals_training_without_the_sample() {
    let _guard = lock();
    for fx in fixtures() {
        e6_retrain_after_deletion_equals_training_without_the_sample_on(&fx);
    }
}

fn e6_retrain_after_deletion_equals_training_without_the_sample_on(fx: &Fixture) {
    let prefixes = fx.prefixes();
    // A sample of the second slice of the chain: node [a] stays clean, [a, b] and [a, b, c] must retrain.
    let slice = prefixes[1][1];
    let gone = match fx.assignment.members(Cell { shard: 0, slice })[0] {
        SampleId::Int(i) => i,
        ref other => panic!("unexpected id {other}"),
    };

    let never = tempfile::tempdir().expect("tempdir");
    let reference = fx.build(never.path(), &[], &[gone]);

    let dir = tempfile::tempdir().expect("tempdir");
    let original = fx.build(dir.path(), &[], &[]);
    let read = |entry: &NodeEntry| tensors(&read_weights(dir.path(), &entry.weights).expect("node file"));
    let original_files: Vec<Tensors> = original.nodes.iter().map(read).collect();
    // The reuse decision `trainer retrain` and `build --resume` make: the guard's, from the recorded lineage.
    let reuse = Guard::new(&fx.assignment, [SampleId::Int(gone)]).reusable(&original.nodes);
    assert_eq!(reuse.iter().filter(|r| r.is_some()).count(), 1, "only the first node is clean");
    assert!(reuse[0].is_some(), "the node of the first slice never saw the deleted sample");
    let retrained = fx.build(dir.path(), &reuse, &[gone]);

    for (i, (got, want)) in retrained.nodes.iter().zip(&reference.nodes).enumerate() {
        let expected = tensors(&read_weights(never.path(), &want.weights).expect("node file"));
        assert_eq!(read(got), expected, "node {i}: retrained weights differ from training without the sample");
        assert_eq!((got.seed, got.samples, &got.lineage), (want.seed, want.samples, &want.lineage), "node {i}");
    }
    // Negative control: the deletion changed exactly the dirty nodes.
    for (i, (entry, before)) in retrained.nodes.iter().zip(&original_files).enumerate() {
        let clean = reuse[i].is_some();
        assert_eq!(read(entry) == *before, clean, "node {i} (clean: {clean}) changed iff it saw the deleted sample");
    }
}
