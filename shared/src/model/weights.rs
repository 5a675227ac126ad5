//! Module weights as safetensors bytes (through burn's store), with a clear error naming what did not match.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};

use crate::Error;

/// Serialises a module's parameters to safetensors bytes. Tensor names are the module paths.
pub fn to_safetensors<M: Module>(module: &M) -> crate::Result<Vec<u8>> {
    // No metadata: burn writes it from a hash map in random order, which would make the bytes (and so the sha256
    // recorded in manifests) differ between two saves of identical weights.
    let mut store = SafetensorsStore::from_bytes(None).clear_metadata();
    module.save_into(&mut store).map_err(|e| Error::model(format!("cannot serialise weights: {e}")))?;
    store.get_bytes().map_err(|e| Error::model(format!("cannot serialise weights: {e}")))
}

/// Loads safetensors bytes into a module of the expected structure. Shapes are validated; a missing, unused or
/// mismatched tensor is an error naming the first one (`what` names the file in messages).
pub fn load_safetensors<M: Module>(module: M, bytes: Vec<u8>, what: &str) -> crate::Result<M> {
    let mut module = module;
    let mut store = SafetensorsStore::from_bytes(Some(bytes)).validate(true).allow_partial(false);
    let result = module.load_from(&mut store).map_err(|e| Error::format(what, format!("cannot read weights: {e}")))?;
    if let Some(error) = result.errors.first() {
        return Err(Error::format(what, error.to_string()));
    }
    if let Some((path, _)) = result.missing.first() {
        return Err(Error::format(what, format!("tensor {path} is missing")));
    }
    if let Some(path) = result.unused.first() {
        return Err(Error::format(what, format!("unexpected tensor {path}")));
    }
    Ok(module)
}

/// [`to_safetensors`] for a device that reads back only asynchronously (WebGPU in the browser): the parameters are
/// read back one by one, copied into the module on the CPU backend, and serialised there. The bytes are the same as
/// [`to_safetensors`] gives for the same values.
pub async fn to_safetensors_async<M: Module>(module: &M) -> crate::Result<Vec<u8>> {
    /// Every float parameter, flattened, in visiting order.
    struct Collect(Vec<Tensor<1>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            let len = value.shape().num_elements();
            self.0.push(value.reshape([len]));
        }
    }
    /// Puts the values read back into the parameters, in the same order, on the CPU backend.
    struct Replace(std::vec::IntoIter<TensorData>, Device, Option<String>);
    impl ModuleMapper for Replace {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let shape = param.val().shape();
            match self.0.next() {
                Some(data) => param.map(|_| Tensor::<1>::from_data(data, &self.1).reshape(shape)),
                None => {
                    self.2 = Some("a parameter was added while its module was read back".into());
                    param
                }
            }
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    let mut values = Vec::with_capacity(collect.0.len());
    for tensor in collect.0 {
        values.push(
            tensor.into_data_async().await.map_err(|e| Error::model(format!("cannot read weights back: {e:?}")))?,
        );
    }
    let mut replace = Replace(values.into_iter(), Device::flex(), None);
    let host = module.clone().map(&mut replace);
    if let Some(error) = replace.2 {
        return Err(Error::Model(error));
    }
    to_safetensors(&host)
}
