//! Module weights as safetensors bytes (through burn's store), with a clear error naming what did not match.

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};

/// Serialises a module's parameters to safetensors bytes. Tensor names are the module paths.
pub fn to_safetensors<M: Module>(module: &M) -> Result<Vec<u8>, String> {
    // No metadata: burn writes it from a hash map in random order, which would make the bytes (and so the sha256
    // recorded in manifests) differ between two saves of identical weights.
    let mut store = SafetensorsStore::from_bytes(None).clear_metadata();
    module.save_into(&mut store).map_err(|e| format!("cannot serialise weights: {e}"))?;
    store.get_bytes().map_err(|e| format!("cannot serialise weights: {e}"))
}

/// Loads safetensors bytes into a module of the expected structure. Shapes are validated; a missing, unused or
/// mismatched tensor is an error naming the first one (`what` names the file in messages).
pub fn load_safetensors<M: Module>(module: M, bytes: Vec<u8>, what: &str) -> Result<M, String> {
    let mut module = module;
    let mut store = SafetensorsStore::from_bytes(Some(bytes)).validate(true).allow_partial(false);
    let result = module.load_from(&mut store).map_err(|e| format!("{what}: cannot read weights: {e}"))?;
    if let Some(error) = result.errors.first() {
        return Err(format!("{what}: {error}"));
    }
    if let Some((path, _)) = result.missing.first() {
        return Err(format!("{what}: tensor {path} is missing"));
    }
    if let Some(path) = result.unused.first() {
        return Err(format!("{what}: unexpected tensor {path}"));
    }
    Ok(module)
}
