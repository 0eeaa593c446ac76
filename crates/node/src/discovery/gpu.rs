//! GPU discovery behind [`GpuProbe`] (STYLE P12: the only module that calls NVML). The real
//! probe loads `libnvidia-ml.so.1` at run time through `nvml-wrapper`; a host without the
//! library or driver has no GPUs, cleanly. [`FakeGpus`] (a configured count) drives the same
//! code path in tests.

use thiserror::Error;

/// One GPU as the rest of the node sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GpuInfo {
    /// NVML index (what `CUDA_VISIBLE_DEVICES` counts).
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub memory_mb: u64,
    /// `/dev/nvidia<minor>`, for the devices cgroup.
    pub minor: u32,
}

#[derive(Debug, Error)]
#[error("GPU discovery failed: {0}")]
pub struct GpuError(pub String);

pub trait GpuProbe {
    fn gpus(&self) -> Result<Vec<GpuInfo>, GpuError>;
}

/// `count` pretend GPUs (`fake0`…), minors 0…count-1.
#[derive(Debug, Clone, Copy)]
pub struct FakeGpus(pub u32);

impl GpuProbe for FakeGpus {
    fn gpus(&self) -> Result<Vec<GpuInfo>, GpuError> {
        Ok((0..self.0)
            .map(|i| GpuInfo {
                index: i,
                uuid: format!("GPU-fake-{i:04}"),
                name: "fake".into(),
                memory_mb: 16 * 1024,
                minor: i,
            })
            .collect())
    }
}

/// The NVIDIA driver through NVML.
pub struct NvmlGpus {
    nvml: nvml_wrapper::Nvml,
}

impl NvmlGpus {
    /// `Ok(None)` when this host has no NVIDIA library or driver: 0 GPUs, not an error.
    pub fn try_new() -> Result<Option<NvmlGpus>, GpuError> {
        use nvml_wrapper::error::NvmlError;
        match nvml_wrapper::Nvml::init() {
            Ok(nvml) => Ok(Some(NvmlGpus { nvml })),
            Err(
                NvmlError::LibloadingError(_)
                | NvmlError::DriverNotLoaded
                | NvmlError::LibraryNotFound,
            ) => Ok(None),
            Err(e) => Err(GpuError(e.to_string())),
        }
    }

    pub fn driver_version(&self) -> String {
        self.nvml.sys_driver_version().unwrap_or_default()
    }
}

impl GpuProbe for NvmlGpus {
    fn gpus(&self) -> Result<Vec<GpuInfo>, GpuError> {
        let err = |e: nvml_wrapper::error::NvmlError| GpuError(e.to_string());
        let count = self.nvml.device_count().map_err(err)?;
        let mut gpus = Vec::with_capacity(count as usize);
        for index in 0..count {
            let d = self.nvml.device_by_index(index).map_err(err)?;
            gpus.push(GpuInfo {
                index,
                uuid: d.uuid().map_err(err)?,
                name: d.name().map_err(err)?,
                memory_mb: d.memory_info().map_err(err)?.total / (1 << 20),
                minor: d.minor_number().map_err(err)?,
            });
        }
        Ok(gpus)
    }
}

/// The node's GPUs: `fake` pretend ones when configured, otherwise NVML's (none without a
/// driver). An NVML error other than "no driver" is logged and counts as no GPUs: the node
/// must never claim GPUs it cannot hand out.
pub fn discover(fake: Option<u32>) -> Vec<GpuInfo> {
    let found = match fake {
        Some(n) => FakeGpus(n).gpus(),
        None => match NvmlGpus::try_new() {
            Ok(Some(probe)) => {
                tracing::info!(driver = probe.driver_version(), "NVML loaded");
                probe.gpus()
            }
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(e),
        },
    };
    found.unwrap_or_else(|e| {
        tracing::error!(error = %e, "no GPUs registered");
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_gpus_have_indices_and_minors() {
        let gpus = FakeGpus(2).gpus().expect("fake");
        assert_eq!(gpus.len(), 2);
        assert_eq!((gpus[1].index, gpus[1].minor), (1, 1));
        assert_eq!(discover(Some(3)).len(), 3);
    }

    /// Reference: stack.md §4. Without a driver NVML is absent and the node has 0 GPUs; with
    /// one, every GPU has a UUID. Runs on both kinds of host.
    #[test]
    fn nvml_probe_reports_real_gpus_or_none() {
        match NvmlGpus::try_new() {
            Ok(None) => {
                eprintln!("no NVIDIA driver on this host: the NVML path reports 0 GPUs");
                assert!(discover(None).is_empty());
            }
            Ok(Some(probe)) => {
                let gpus = probe.gpus().expect("NVML lists the GPUs");
                eprintln!("NVML: {gpus:?}");
                assert!(gpus.iter().all(|g| g.uuid.starts_with("GPU-")));
                assert_eq!(discover(None).len(), gpus.len());
            }
            Err(e) => panic!("NVML failed on a host that has it: {e}"),
        }
    }
}
