//! Choosing where the models run: `auto`, `wgpu` or `cpu`, decided at start-up.
//!
//! `auto` takes wgpu only when wgpu sees a real GPU adapter. On a GPU-less host wgpu would
//! otherwise settle on a software Vulkan (lavapipe), measured here at ~540 ms per GPT-2 decode
//! step against ~25 ms on burn's `flex` CPU backend: a correctness path, not a serving path.

use std::fmt;
use std::str::FromStr;

use burn::tensor::wgpu::wgpu;
use burn::tensor::{Device, DeviceKind};
use serde::{Deserialize, Serialize};

/// The backend a user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// wgpu on a real GPU if there is one, else the CPU.
    #[default]
    Auto,
    /// wgpu on its default adapter, even a software one.
    Wgpu,
    /// burn's `flex` CPU backend.
    Cpu,
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "wgpu" => Ok(Self::Wgpu),
            "cpu" => Ok(Self::Cpu),
            other => Err(format!("unknown backend {other:?} (auto, wgpu, cpu)")),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Wgpu => "wgpu",
            Self::Cpu => "cpu",
        })
    }
}

/// The device chosen, and what to tell the user about it.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    pub device: Device,
    /// `"wgpu"` or `"cpu"`.
    pub backend: &'static str,
    /// The adapter or CPU backend, e.g. `"NVIDIA H100 (DiscreteGpu, Vulkan)"` or
    /// `"flex (CPU kernels: avx2+fma+f16c)"`.
    pub name: String,
    /// Why this device: logged at start-up.
    pub reason: String,
}

/// Resolves `choice` to a device, probing wgpu's adapters where that decides it.
pub fn select(choice: BackendChoice) -> SelectedDevice {
    match choice {
        BackendChoice::Cpu => cpu("backend = \"cpu\" was requested".into()),
        BackendChoice::Wgpu => {
            let adapters = wgpu_adapters();
            let name = adapters
                .first()
                .map_or_else(|| "no adapter found".to_string(), describe);
            let mut reason = "backend = \"wgpu\" was requested".to_string();
            if adapters
                .iter()
                .all(|a| a.device_type == wgpu::DeviceType::Cpu)
            {
                reason.push_str(
                    "; only a software adapter is present, expect it to be far slower than the CPU backend",
                );
            }
            SelectedDevice {
                device: Device::wgpu(DeviceKind::DefaultDevice),
                backend: "wgpu",
                name,
                reason,
            }
        }
        BackendChoice::Auto => {
            let adapters = wgpu_adapters();
            let gpu = [
                wgpu::DeviceType::DiscreteGpu,
                wgpu::DeviceType::IntegratedGpu,
                wgpu::DeviceType::VirtualGpu,
            ]
            .into_iter()
            .find_map(|kind| adapters.iter().find(|a| a.device_type == kind));
            match gpu {
                Some(adapter) => SelectedDevice {
                    device: Device::wgpu(match adapter.device_type {
                        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(0),
                        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(0),
                        _ => DeviceKind::VirtualGpu(0),
                    }),
                    backend: "wgpu",
                    name: describe(adapter),
                    reason: "backend = \"auto\" found a GPU adapter".into(),
                },
                None if adapters.is_empty() => {
                    cpu("backend = \"auto\" found no wgpu adapter".into())
                }
                None => cpu(format!(
                    "backend = \"auto\" found only software adapters ({}), which are slower than the CPU backend",
                    adapters.iter().map(describe).collect::<Vec<_>>().join(", ")
                )),
            }
        }
    }
}

fn cpu(reason: String) -> SelectedDevice {
    SelectedDevice {
        device: Device::flex(),
        backend: "cpu",
        // Which of our CPU kernels run here (AVX2, AVX-512 VNNI for w8a8, or portable).
        name: format!(
            "flex (CPU kernels: {})",
            crate::models::kernels::simd_path()
        ),
        reason,
    }
}

/// Adapters on the native GPU APIs (Vulkan, Metal, DX12). OpenGL is left out: its software
/// fallback runs trivial kernels but fails on real ones.
fn wgpu_adapters() -> Vec<wgpu::AdapterInfo> {
    let backends = wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    pollster::block_on(instance.enumerate_adapters(backends))
        .iter()
        .map(wgpu::Adapter::get_info)
        .collect()
}

fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.device_type, info.backend)
}
