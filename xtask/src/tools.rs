//! Installing what the checks and the demo need, skipping what is present.

use std::path::Path;
use std::process::Command;

use crate::{run, step};

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
pub const TRUNK_VERSION: &str = "0.21.14";
/// Must equal the `wasm-bindgen` version in Cargo.lock (trunk checks it).
pub const WASM_BINDGEN_VERSION: &str = "0.2.130";
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's Chromium keeps its software Vulkan driver (SwiftShader) and the Vulkan loader it ships with.
const CHROMIUM_LIB: &str = "/usr/lib/chromium";

/// Points wgpu in `cmd` at Chromium's software Vulkan adapter, the one the browser tests' WebGPU runs on, so the
/// GPU kernel tests run the same way on every machine, with or without a GPU.
pub fn software_vulkan(cmd: &mut Command) -> Result<(), String> {
    let icd = Path::new(CHROMIUM_LIB).join("vk_swiftshader_icd.json");
    if !icd.is_file() {
        return Err(format!("{}: missing (Chromium's software Vulkan driver)", icd.display()));
    }
    let libraries = match std::env::var("LD_LIBRARY_PATH") {
        Ok(path) if !path.is_empty() => format!("{CHROMIUM_LIB}:{path}"),
        _ => CHROMIUM_LIB.to_string(),
    };
    cmd.env("VK_ICD_FILENAMES", &icd).env("VK_DRIVER_FILES", &icd).env("LD_LIBRARY_PATH", libraries);
    Ok(())
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn rust_components() -> Result<(), String> {
    let installed = output("rustup", &["component", "list", "--installed"]).ok_or("rustup is needed")?;
    for component in ["rustfmt", "clippy"] {
        if !installed.lines().any(|l| l.starts_with(component)) {
            step(&format!("install {component}"), run("rustup", &["component", "add", component]))?;
        }
    }
    let targets = output("rustup", &["target", "list", "--installed"]).ok_or("rustup is needed")?;
    if !targets.lines().any(|l| l.trim() == WASM_TARGET) {
        step("install the wasm32 target", run("rustup", &["target", "add", WASM_TARGET]))?;
    }
    Ok(())
}

/// trunk and the wasm-bindgen CLI at the versions the web build needs (a few minutes each the first time).
pub fn web_tools() -> Result<(), String> {
    if !output("trunk", &["--version"]).is_some_and(|v| v.contains(TRUNK_VERSION)) {
        step(
            &format!("install trunk {TRUNK_VERSION} (first time only, ~10 minutes)"),
            run("cargo", &["install", &format!("trunk@{TRUNK_VERSION}"), "--locked"]),
        )?;
    }
    if !output("wasm-bindgen", &["--version"]).is_some_and(|v| v.contains(WASM_BINDGEN_VERSION)) {
        // Without --locked: its lock file pins crates that no longer build with this toolchain.
        step(
            &format!("install wasm-bindgen-cli {WASM_BINDGEN_VERSION} (first time only, ~5 minutes)"),
            run("cargo", &["install", "wasm-bindgen-cli", "--version", WASM_BINDGEN_VERSION]),
        )?;
    }
    Ok(())
}

/// Chromium for the browser tests, and the npm packages of `tests/browser`.
pub fn browser_tools(root: &Path) -> Result<(), String> {
    if !Path::new(CHROMIUM).exists() {
        step("install chromium", run("apt-get", &["install", "-y", "--no-install-recommends", "chromium"]))?;
    }
    let dir = root.join("tests/browser");
    if ["playwright-core", "lighthouse"].iter().any(|p| !dir.join("node_modules").join(p).exists()) {
        let mut cmd = run("npm", &["ci", "--no-audit", "--no-fund"]);
        cmd.current_dir(&dir);
        step("install npm packages (playwright-core, lighthouse)", cmd)?;
    }
    Ok(())
}
