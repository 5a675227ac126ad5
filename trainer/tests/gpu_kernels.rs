//! The model's GPU kernels (`shared/src/model/kernel.rs`) against burn's operations on the CPU, kernel by kernel
//! and for a whole component, with the same weights and inputs. A kernel that computes the wrong thing, or a
//! pipeline the adapter silently refuses to run (its output is then stale memory), fails here.
//!
//! Needs a Vulkan adapter: `cargo xtask test` runs this with wgpu pointed at Chromium's software adapter
//! (SwiftShader), the same one the browser tests use:
//! `cargo test -p trainer --features gpu-tests --test gpu_kernels`.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::LayerNormConfig;
use burn::tensor::{Device, Distribution, Tensor};
use s3t::model::device::{DeviceChoice, select};
use s3t::model::vit::{self, Backbone, Component, Head};
use s3t::model::weights::{load_safetensors, to_safetensors};
use s3t::model::{GroupAdapter, ModelConfig, kernel};

/// The largest difference allowed between the GPU's and the CPU's results: the two sum in different orders, and
/// every value here is of order one.
const TOLERANCE: f32 = 1e-4;

fn gpu() -> Device {
    match select(DeviceChoice::Gpu) {
        Ok(selected) => selected.device,
        Err(e) => panic!("no GPU adapter ({e}); `cargo xtask test` runs this test on a software Vulkan adapter"),
    }
}

/// The same random tensor on the CPU and on the GPU.
fn random<const D: usize>(shape: [usize; D], gpu: &Device) -> (Tensor<D>, Tensor<D>) {
    let cpu = Tensor::<D>::random(shape, Distribution::Normal(0.0, 1.0), &Device::flex());
    let on_gpu = Tensor::from_data(cpu.to_data(), gpu);
    (cpu, on_gpu)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor")
}

#[track_caller]
fn assert_close<const D: usize>(what: &str, cpu: Tensor<D>, gpu: Tensor<D>) {
    assert_eq!(cpu.dims(), gpu.dims(), "{what}: shapes");
    let (cpu, gpu) = (values(cpu), values(gpu));
    let worst = cpu.iter().zip(&gpu).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= TOLERANCE, "{what}: GPU and CPU differ by up to {worst}");
    assert!(gpu.iter().all(|v| v.is_finite()), "{what}: the GPU result is not finite");
}

/// A module's weights copied to the GPU (through the bundle format, as the web app loads them).
fn to_gpu<M: Module>(module: &M, skeleton: M) -> M {
    let bytes = to_safetensors(module).expect("serialise");
    load_safetensors(skeleton, bytes, "test weights").expect("load")
}

/// Adds noise to every parameter, so that no weight keeps an initial value (LoRA's zero B, layer norm's unit
/// scale) that could hide a kernel reading the wrong one.
struct Perturb;

impl ModuleMapper for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let value = param.val();
        let noise = Tensor::random(value.shape(), Distribution::Normal(0.0, 0.1), &value.device());
        Param::from_tensor(value + noise)
    }
}

#[test]
fn linear_layers_match_the_cpu() {
    let gpu = gpu();
    // The register-tiled kernel (rows a multiple of 8), and the convolution where the shape does not fit it (the
    // classifier head's 10 outputs, rows not a multiple of 8).
    for (rows, d_in, d_out) in [(48, 64, 64), (48, 64, 128), (48, 128, 64), (40, 32, 10), (13, 64, 64)] {
        let (x, x_gpu) = random([rows, d_in], &gpu);
        let (w, w_gpu) = random([d_in, d_out], &gpu);
        let (b, b_gpu) = random([d_out], &gpu);
        let cpu = kernel::linear(x, w, Some(b));
        let on_gpu = kernel::linear(x_gpu, w_gpu, Some(b_gpu));
        assert_close(&format!("linear [{rows}, {d_in}] → {d_out}"), cpu, on_gpu);
    }
    let (x, x_gpu) = random([48, 64], &gpu);
    let (w, w_gpu) = random([64, 64], &gpu);
    let (b, b_gpu) = random([64], &gpu);
    assert_close(
        "token_linear",
        kernel::token_linear(x, 16, w, Some(b)),
        kernel::token_linear(x_gpu, 16, w_gpu, Some(b_gpu)),
    );
}

#[test]
fn attention_matches_the_cpu() {
    let gpu = gpu();
    // 16 tokens: the fused kernel (four queries per invocation); 9 tokens: burn's operations on the GPU.
    for (images, tokens, heads, width) in [(3, 16, 4, 64), (2, 16, 2, 32), (2, 9, 4, 64)] {
        let rows = images * tokens;
        let (q, q_gpu) = random([rows, width], &gpu);
        let (k, k_gpu) = random([rows, width], &gpu);
        let (v, v_gpu) = random([rows, width], &gpu);
        let cpu = kernel::attention(q, k, v, tokens, heads);
        let on_gpu = kernel::attention(q_gpu, k_gpu, v_gpu, tokens, heads);
        assert_close(&format!("attention, {tokens} tokens, {heads} heads"), cpu, on_gpu);
    }
}

#[test]
fn layer_norm_gelu_and_matmul_match_the_cpu() {
    let gpu = gpu();
    let norm = LayerNormConfig::new(64).init(&Device::flex()).map(&mut Perturb);
    let norm_gpu = to_gpu(&norm, LayerNormConfig::new(64).init(&gpu));
    let (x, x_gpu) = random([48, 64], &gpu);
    assert_close("layer norm", kernel::layer_norm(&norm, x), kernel::layer_norm(&norm_gpu, x_gpu));
    // Four elements per invocation, and one where the length is not a multiple of four.
    for shape in [[48, 128], [3, 5]] {
        let (x, x_gpu) = random(shape, &gpu);
        assert_close(&format!("GELU {shape:?}"), kernel::gelu(x), kernel::gelu(x_gpu));
    }
    let (a, a_gpu) = random([64, 4], &gpu);
    let (b, b_gpu) = random([4, 64], &gpu);
    assert_close("matmul (LoRA fold)", kernel::matmul(a, b), kernel::matmul(a_gpu, b_gpu));
}

#[test]
fn a_whole_component_matches_the_cpu() {
    let gpu = gpu();
    let cpu = Device::flex();
    let config = ModelConfig::new();
    let backbone = Backbone::new(&config.vit, &cpu).map(&mut Perturb);
    let head = Head::new(&config.vit, &cpu).map(&mut Perturb);
    let groups: Vec<GroupAdapter> =
        (1..=config.groups).map(|g| GroupAdapter::init(&config, g, g as u64, &cpu).map(&mut Perturb)).collect();
    let backbone_gpu = to_gpu(&backbone, Backbone::new(&config.vit, &gpu));
    let head_gpu = to_gpu(&head, Head::new(&config.vit, &gpu));
    let groups_gpu: Vec<GroupAdapter> =
        groups.iter().map(|g| to_gpu(g, GroupAdapter::init(&config, g.group, 0, &gpu))).collect();
    let side = config.vit.image_size;
    let (images, images_gpu) = random([5, side, side], &gpu);
    // Every prefix length: groups 1..k active, the blocks below without adapters.
    for k in 1..=config.groups {
        let refs: Vec<&GroupAdapter> = groups[..k].iter().collect();
        let refs_gpu: Vec<&GroupAdapter> = groups_gpu[..k].iter().collect();
        let logits = vit::forward(&config, &backbone, Component { groups: &refs, head: &head }, images.clone());
        let logits_gpu =
            vit::forward(&config, &backbone_gpu, Component { groups: &refs_gpu, head: &head_gpu }, images_gpu.clone());
        assert_close(&format!("logits of a {k}-group component"), logits, logits_gpu);
    }
}
