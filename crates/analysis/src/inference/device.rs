//! Which device inference runs on.

use tch::Device;

use serde::Deserialize;

/// Where inference runs (`[model] device` in the service's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

/// Resolves the configured choice against the machine. `Cuda` on a machine without a usable GPU
/// is an error, not a silent fall-back: a site that asked for the GPU should know it is not used.
pub fn select_device(choice: DeviceChoice) -> Result<Device, String> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => Err("model.device = \"cuda\" but no CUDA device is available".into()),
    }
}

/// A short human name: `cpu` or `cuda:0`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}
