//! Where the network runs. The default build has one device, the CPU (burn's `flex`
//! backend). Built with the `gpu` feature, Kestrel also has burn's wgpu backend (Vulkan on
//! Linux, so an NVIDIA or AMD GPU with its driver's Vulkan loader) and uses the GPU when one
//! answers, else the CPU with a warning. `KESTREL_DEVICE=cpu|gpu` (or the CLI's `--device`)
//! forces a choice; asking for a GPU that is not there is an error, never a panic.

use burn::tensor::Device;
use std::sync::OnceLock;

static SELECTED: OnceLock<Device> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device '{0}': expected auto, cpu or gpu")]
    Unknown(String),
    #[error("a GPU was asked for, but this kestrel was built without the `gpu` feature (cargo build --release --features gpu)")]
    NotBuilt,
    #[error("a GPU was asked for, but none answered: {0}")]
    Unavailable(String),
}

/// Whether this build has a GPU backend.
pub const GPU_BUILT: bool = cfg!(feature = "gpu");

/// Chooses the device for the rest of the process: `auto` (the GPU when built and present,
/// else the CPU), `cpu` or `gpu`. Returns a description of the choice. Only the first call
/// chooses; later ones report what was chosen.
pub fn select(choice: &str) -> Result<String, DeviceError> {
    let device = match choice {
        "cpu" => Device::flex(),
        "gpu" => gpu()?,
        "auto" => gpu().unwrap_or_else(|_| Device::flex()),
        other => return Err(DeviceError::Unknown(other.to_string())),
    };
    let chosen = SELECTED.get_or_init(|| device);
    Ok(describe(chosen))
}

/// The selected device (the CPU when nothing was selected).
pub fn current() -> Device {
    SELECTED.get_or_init(Device::flex).clone()
}

/// Whether `device` is the CPU (burn's `flex` backend).
pub fn is_cpu(device: &Device) -> bool {
    format!("{device:?}").contains("Flex")
}

pub fn describe(device: &Device) -> String {
    if is_cpu(device) {
        "CPU (burn flex)".into()
    } else {
        format!("GPU (burn wgpu, {device:?})")
    }
}

#[cfg(feature = "gpu")]
fn gpu() -> Result<Device, DeviceError> {
    use burn::tensor::{DeviceKind, Tensor};
    // wgpu panics when no adapter exists; probe with a small computation and turn a panic
    // into an error.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(|| {
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let t: Tensor<1> = Tensor::ones([4], &device);
        let sum: f32 = (t.clone() + t).sum().into_scalar();
        (device, sum)
    });
    std::panic::set_hook(hook);
    match probe {
        Ok((device, sum)) if (sum - 8.0).abs() < 1e-6 => Ok(device),
        Ok((_, sum)) => Err(DeviceError::Unavailable(format!(
            "the GPU computed 2·4 ones as {sum}"
        ))),
        Err(e) => Err(DeviceError::Unavailable(
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the wgpu backend failed to start".into()),
        )),
    }
}

#[cfg(not(feature = "gpu"))]
fn gpu() -> Result<Device, DeviceError> {
    Err(DeviceError::NotBuilt)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_and_unbuilt_devices_are_errors() {
        assert!(super::select("tpu")
            .unwrap_err()
            .to_string()
            .contains("tpu"));
        if !super::GPU_BUILT {
            assert!(super::select("gpu")
                .unwrap_err()
                .to_string()
                .contains("--features gpu"));
        }
    }
}
