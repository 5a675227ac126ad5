//! GELU on the CPU backend through [`s3t_gelu`], which computes burn-flex's scalar GELU and its backward factor
//! eight floats at a time with the same bits (checked on all 2³² inputs): burn-flex calls libm's scalar `erff` per
//! element, forward and backward, about a quarter of a transformer's training step.

use burn::tensor::{DType, Device, Tensor, TensorData};

pub fn gelu<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    if x.dtype() != DType::F32 || x.device() != Device::flex() {
        return None;
    }
    #[cfg(feature = "learn")]
    if x.is_tracked() {
        return tracked(x);
    }
    let y = with_values(x, |v| {
        let mut y = v.to_vec();
        s3t_gelu::gelu(&mut y);
        y
    })?;
    let y = Tensor::from_data(TensorData::new(y, x.shape()), &Device::flex());
    #[cfg(feature = "learn")]
    let y = if x.is_autodiff() { y.autodiff() } else { y };
    Some(y)
}

/// `f` of `x`'s values, read in place: a cast of the bytes, not a per-element conversion (which this crate's
/// unoptimised dev build would run slowly).
fn with_values<const D: usize, T>(x: &Tensor<D>, f: impl FnOnce(&[f32]) -> T) -> Option<T> {
    #[cfg(feature = "learn")]
    let x = x.clone().inner();
    #[cfg(not(feature = "learn"))]
    let x = x.clone();
    let data = x.into_data();
    Some(f(bytemuck::try_cast_slice(data.as_bytes()).ok()?))
}

/// In a training graph: `y + (x − x̄)·y′`, where `y` and `y′` are GELU and its derivative at `x` (constants) and
/// `x̄` is `x` detached. Forward, `(x − x̄)·y′` is a zero and the sum is `y`; backward, `x` receives `grad · y′`,
/// the very product burn's GELU backward forms. The one difference is the sign of a zero: where `y` is −0 and
/// `y′` is +0 (x = −0, or x below about −14.2, where exp underflows) the sum is +0. A GELU output only enters
/// the next linear layer's products, where a zero's sign cannot change a sum that has any other term.
#[cfg(feature = "learn")]
fn tracked<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    let (y, dy) = with_values(x, |v| {
        let (mut y, mut dy) = (vec![0.0; v.len()], vec![0.0; v.len()]);
        s3t_gelu::gelu_with_derivative(v, &mut y, &mut dy);
        (y, dy)
    })?;
    let constant = |v: Vec<f32>| Tensor::<D>::from_data(TensorData::new(v, x.shape()), &Device::flex()).autodiff();
    let (y, dy) = (constant(y), constant(dy));
    Some(y + (x.clone() - x.clone().detach()) * dy)
}

#[cfg(all(test, feature = "learn"))]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    /// Inputs over GELU's whole useful range, the branch points of `erff` and special values.
    fn inputs() -> Vec<f32> {
        let mut x: Vec<f32> = (-3000..3000).map(|i| i as f32 * 0.0047).collect();
        x.extend([0.0, 1e-30, -1e-30, 0.84375, -0.84375, 1.25, -1.25, 2.857_143, 6.0, -6.0, 9.0, -9.0, -13.0]);
        x.extend([f32::MIN_POSITIVE, 3.0e38, 88.0]);
        x
    }

    fn tensor(values: &[f32], device: &Device) -> Tensor<1> {
        Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
    }

    fn bits(t: Tensor<1>) -> Vec<u32> {
        t.into_data().try_into_vec::<f32>().expect("f32").iter().map(|v| v.to_bits()).collect()
    }

    /// Output and input gradient of `f` at `x`, under autodiff, for a loss with uneven weights.
    fn forward_backward(f: fn(Tensor<1>) -> Tensor<1>, x: &[f32]) -> (Vec<u32>, Vec<u32>) {
        let device = Device::flex().autodiff();
        let input = tensor(x, &device).require_grad();
        let weights: Vec<f32> = (0..x.len()).map(|i| 0.25 + (i % 7) as f32 * 0.375).collect();
        let y = f(input.clone());
        let grads = (y.clone() * tensor(&weights, &device)).sum().backward();
        let gradient = input.grad(&grads).expect("the input's gradient");
        (bits(y.inner()), bits(gradient))
    }

    #[test]
    fn gelu_on_the_cpu_gives_burns_bits_without_autodiff() {
        let mut x = inputs();
        x.extend([-0.0, -20.0, f32::INFINITY, f32::NEG_INFINITY]);
        let ours = bits(super::super::gelu(tensor(&x, &Device::flex())));
        let burns = bits(burn::tensor::activation::gelu(tensor(&x, &Device::flex())));
        assert_eq!(ours, burns);
    }

    #[test]
    fn gelu_in_a_training_graph_gives_burns_output_and_gradient_bits() {
        let x = inputs();
        let (y, gradient) = forward_backward(super::super::gelu, &x);
        let (burn_y, burn_gradient) = forward_backward(burn::tensor::activation::gelu, &x);
        for (what, ours, burns) in [("forward", &y, &burn_y), ("backward", &gradient, &burn_gradient)] {
            let first = (0..x.len()).find(|&i| ours[i] != burns[i]);
            assert!(
                first.is_none(),
                "{what} at x = {:e}: {:e} against burn's {:e}",
                x[first.unwrap_or(0)],
                f32::from_bits(ours[first.unwrap_or(0)]),
                f32::from_bits(burns[first.unwrap_or(0)])
            );
        }
    }

    #[test]
    fn gelu_in_a_training_graph_differs_only_in_the_sign_of_a_zero_output() {
        // Where GELU is −0 and its derivative +0 (x = −0, or x below about −14.2) the sum gives +0 (see `lanes`).
        let x = [-0.0, -14.0, -14.5, -20.0, -88.0, -3.0e38];
        let (y, gradient) = forward_backward(super::super::gelu, &x);
        let (burn_y, burn_gradient) = forward_backward(burn::tensor::activation::gelu, &x);
        assert_eq!(gradient, burn_gradient, "backward");
        for ((&ours, &burns), x) in y.iter().zip(&burn_y).zip(x) {
            let (ours, burns) = (f32::from_bits(ours), f32::from_bits(burns));
            assert!(ours == burns, "gelu({x}) = {ours}, burn's {burns}");
        }
    }
}
