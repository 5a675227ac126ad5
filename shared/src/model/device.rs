//! Choosing where the model runs: the wgpu backend when an adapter exists, otherwise the CPU (flex).
//!
//! `Device::default()` would pick wgpu whenever it is compiled in and panic on first use without an adapter, so
//! the GPU is probed explicitly and the CPU is the fallback, with a notice saying why.

use burn::tensor::Device;

/// Which device the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The GPU when one is usable, otherwise the CPU.
    Auto,
    /// The GPU or an error.
    Gpu,
    /// The CPU backend (flex).
    Cpu,
}

/// The device selected and how it came about.
#[derive(Clone, Debug)]
pub struct Selected {
    pub device: Device,
    /// "gpu (wgpu: …)" or "cpu (flex)".
    pub name: String,
    pub is_gpu: bool,
    /// Set when `auto` fell back to the CPU: why.
    pub notice: Option<String>,
}

pub fn cpu() -> Selected {
    Selected { device: Device::flex(), name: "cpu (flex)".into(), is_gpu: false, notice: None }
}

/// Selects a device natively (the browser uses [`select_async`]).
#[cfg(not(target_family = "wasm"))]
pub fn select(choice: DeviceChoice) -> crate::Result<Selected> {
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Gpu => probe_gpu().map(|mut selected| {
            if selected.notice.is_some() {
                selected.notice =
                    Some(format!("{} is a software adapter: expect it to be slower than --device cpu", selected.name));
            }
            selected
        }),
        DeviceChoice::Auto => Ok(match probe_gpu() {
            // A software rasterizer (llvmpipe, lavapipe, SwiftShader) is far slower than the CPU backend.
            Ok(selected) if selected.notice.is_none() => selected,
            Ok(software) => {
                let mut selected = cpu();
                selected.notice = Some(format!("only a software GPU adapter ({}); running on the CPU", software.name));
                selected
            }
            Err(why) => {
                let mut selected = cpu();
                selected.notice = Some(format!("no usable GPU ({why}); running on the CPU"));
                selected
            }
        }),
    }
}

#[cfg(all(feature = "gpu", not(target_family = "wasm")))]
fn probe_gpu() -> crate::Result<Selected> {
    // `init` can be called once per selector; the device is cached for the process (with the reason it failed:
    // a message, since an error value is not `Clone`).
    static GPU: std::sync::OnceLock<Result<Selected, String>> = std::sync::OnceLock::new();
    GPU.get_or_init(|| {
        let device = Device::wgpu_options().init().map_err(|e| format!("wgpu: {e}"))?;
        let identity = device.identity();
        let name = identity.as_ref().map_or_else(|| "wgpu".to_owned(), |id| format!("wgpu: {}", id.name));
        // Flagged so that `auto` prefers the CPU backend.
        let notice = software(&device).then(|| "software adapter".to_owned());
        Ok(Selected { device, name: format!("gpu ({name})"), is_gpu: true, notice })
    })
    .clone()
    .map_err(crate::Error::Model)
}

#[cfg(all(not(feature = "gpu"), not(target_family = "wasm")))]
fn probe_gpu() -> crate::Result<Selected> {
    Err(crate::Error::config("device", "this build has no GPU support (feature `gpu`)"))
}

/// Whether a wgpu device is a software adapter rather than a card (llvmpipe, lavapipe, SwiftShader, a browser's
/// fallback adapter): its identity has no physical device then.
#[cfg(feature = "gpu")]
pub fn software(device: &Device) -> bool {
    device.identity().is_none_or(|id| id.physical.is_none())
}

/// Selects a device in the browser: WebGPU when the browser gives an adapter, otherwise the CPU.
#[cfg(target_family = "wasm")]
pub async fn select_async(choice: DeviceChoice) -> crate::Result<Selected> {
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        #[cfg(feature = "gpu")]
        DeviceChoice::Gpu | DeviceChoice::Auto => match Device::wgpu_options().init_async().await {
            Ok(device) => Ok(Selected { device, name: "gpu (WebGPU)".into(), is_gpu: true, notice: None }),
            Err(e) if choice == DeviceChoice::Auto => {
                let mut selected = cpu();
                selected.notice = Some(format!("no WebGPU adapter ({e}); running on the CPU"));
                Ok(selected)
            }
            Err(e) => Err(crate::Error::model(format!("WebGPU: {e}"))),
        },
        #[cfg(not(feature = "gpu"))]
        DeviceChoice::Gpu | DeviceChoice::Auto => Ok(cpu()),
    }
}
