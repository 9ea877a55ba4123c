//! The model package: one file holding the weights and everything detection needs to
//! replay the training — classes, normalization contract (bands, colour method, GSD, chip
//! size, heading mode), network architecture, training summary, validation metrics and a
//! timestamp. Layout: `KESTREL\0`, format version (u32 LE), metadata length (u64 LE),
//! metadata (JSON), then the weights (burnpack).
//!
//! An ensemble package holds several such packages of one class and one normalization
//! contract (networks that detect together, see `kestrel_model::infer::Ensemble`):
//! `KESTREL\0`, [`ENSEMBLE_VERSION`] (u32 LE), the member count (u32 LE), then per member
//! its length (u64 LE) and its bytes, a whole single package.

use crate::network::{Network, NetworkConfig};
use crate::train::{EpochMetrics, TrainOptions};
use burn::module::Module;
use burn::tensor::Device;
use kestrel_samples::normalize::Contract;
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: &[u8; 8] = b"KESTREL\0";
/// Version of the package layout and of the network semantics it stores.
pub const PACKAGE_VERSION: u32 = 1;
/// The format version that marks an ensemble package (members in [`PACKAGE_VERSION`]'s).
pub const ENSEMBLE_VERSION: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub positives: usize,
    pub negatives: usize,
    pub train_images: Vec<String>,
    pub validation_images: Vec<String>,
    pub options: TrainOptions,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PackageMeta {
    pub package_version: u32,
    pub kestrel_version: String,
    pub classes: Vec<String>,
    pub contract: Contract,
    pub network: NetworkConfig,
    pub training: TrainingSummary,
    pub metrics: Vec<EpochMetrics>,
    /// Seconds since the Unix epoch when the package was written.
    pub created_unix_s: u64,
    /// The training images' radiometry, for detection's domain-shift warnings.
    #[serde(default)]
    pub radiometry: Option<kestrel_samples::normalize::colour::Radiometry>,
    /// Detection on the validation images at the default threshold it chose.
    #[serde(default)]
    pub detection: Option<DetectionCalibration>,
}

/// Whole-image detection on the validation images: the model's default threshold (the
/// highest whose F1 comes within 0.005 of the best; the best itself in packages of before
/// 2026-12-06) and what it gives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectionCalibration {
    pub threshold: f32,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub objects: usize,
    pub images: usize,
}

impl PackageMeta {
    /// The detection threshold to use when none is asked for.
    pub fn default_threshold(&self) -> f32 {
        self.detection.as_ref().map_or(0.5, |d| d.threshold)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: not a Kestrel model package")]
    NotAPackage(String),
    #[error("{path}: package format {found} was written by another Kestrel; this one reads format {PACKAGE_VERSION} — retrain or use the matching Kestrel")]
    Version { path: String, found: u32 },
    #[error("{path}: corrupt model package: {problem}")]
    Corrupt { path: String, problem: String },
    #[error("{path}: cannot join {first}'s ensemble: {problem}")]
    Mismatch { path: String, first: String, problem: String },
    #[error("no model package given")]
    NoModel,
    #[error("{path}: an ensemble of {members} networks; load it with load_ensemble")]
    IsEnsemble { path: String, members: usize },
    #[error("an ensemble needs two or more networks; {0} given")]
    TooFewMembers(usize),
}

/// An ensemble's default threshold: the mean of its members' (each calibrated alone; the
/// members' mean score sits about where theirs do).
pub fn ensemble_default_threshold<'a>(metas: impl IntoIterator<Item = &'a PackageMeta>) -> Option<f32> {
    let (sum, n) = metas.into_iter().fold((0.0, 0), |(sum, n), m| (sum + m.default_threshold(), n + 1));
    (n > 0).then(|| sum / n as f32)
}

/// Several packages of one class under one normalization contract, to detect with as an
/// ensemble (see `kestrel_model::infer::Ensemble`): typically the same training run with
/// other seeds.
pub struct LoadedEnsemble {
    /// The first package's metadata.
    pub meta: PackageMeta,
    pub networks: Vec<Network>,
    /// See [`ensemble_default_threshold`].
    pub default_threshold: f32,
}

/// Loads `paths` as one ensemble (an ensemble package counts as its members), refusing
/// members whose classes or normalization contract differ from the first's (they would read
/// the image differently, or mean something else).
pub fn load_ensemble(paths: &[impl AsRef<Path>], device: &Device) -> Result<LoadedEnsemble, PackageError> {
    let mut metas: Vec<PackageMeta> = Vec::with_capacity(paths.len());
    let mut networks = Vec::with_capacity(paths.len());
    each_member(paths, device, |_, meta, network| {
        metas.push(meta);
        networks.push(network);
    })?;
    let default_threshold = ensemble_default_threshold(&metas).ok_or(PackageError::NoModel)?;
    let meta = metas.swap_remove(0);
    Ok(LoadedEnsemble { meta, networks, default_threshold })
}

/// Hands over each network of `paths` (an ensemble package's members in turn) as its
/// package bytes, metadata and network on `device`, after checking that it can detect
/// together with the first: the same classes and normalization contract.
fn each_member(paths: &[impl AsRef<Path>], device: &Device, mut each: impl FnMut(&[u8], PackageMeta, Network)) -> Result<(), PackageError> {
    let mut first: Option<PackageMeta> = None;
    for path in paths {
        let path = path.as_ref();
        let bytes = read_bytes(path)?;
        for member in members_of(path, &bytes)? {
            let (meta, network) = load_bytes(path, member, device)?;
            if let Some(problem) = first.as_ref().and_then(|first| mismatch(first, &meta)) {
                return Err(PackageError::Mismatch { path: path.display().to_string(), first: paths[0].as_ref().display().to_string(), problem });
            }
            first.get_or_insert_with(|| meta.clone());
            each(member, meta, network);
        }
    }
    Ok(())
}

/// Why `other` cannot detect together with `first`, if it cannot.
fn mismatch(first: &PackageMeta, other: &PackageMeta) -> Option<String> {
    if other.classes != first.classes {
        Some(format!("its classes {:?} differ from {:?}", other.classes, first.classes))
    } else if other.contract != first.contract {
        Some(format!("its normalization contract differs ({:?} against {:?})", other.contract, first.contract))
    } else {
        None
    }
}

/// Writes the networks of `paths` (single or ensemble packages, checked as
/// [`load_ensemble`] checks them, weights included) as one ensemble package at `output`,
/// atomically; returns the members' metadata.
pub fn save_ensemble(output: &Path, paths: &[impl AsRef<Path>]) -> Result<Vec<PackageMeta>, PackageError> {
    let mut members: Vec<Vec<u8>> = Vec::new();
    let mut metas: Vec<PackageMeta> = Vec::new();
    each_member(paths, &Device::flex(), |bytes, meta, _| {
        members.push(bytes.to_vec());
        metas.push(meta);
    })?;
    if members.len() < 2 {
        return Err(PackageError::TooFewMembers(members.len()));
    }
    let mut bytes = Vec::with_capacity(16 + members.iter().map(|m| 8 + m.len()).sum::<usize>());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&ENSEMBLE_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(members.len() as u32).to_le_bytes());
    for m in &members {
        bytes.extend_from_slice(&(m.len() as u64).to_le_bytes());
        bytes.extend_from_slice(m);
    }
    write_atomically(output, &bytes)?;
    Ok(metas)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, PackageError> {
    std::fs::read(path).map_err(|source| PackageError::Io { path: path.display().to_string(), source })
}

/// Writes `bytes` under a temporary name renamed into place, so that no reader sees a
/// partly written package.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PackageError> {
    let tmp = path.with_extension("kestrel.partial");
    std::fs::write(&tmp, bytes).map_err(|source| PackageError::Io { path: tmp.display().to_string(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| PackageError::Io { path: path.display().to_string(), source })
}

/// The single packages in a file's bytes: itself, or an ensemble package's members.
fn members_of<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<&'a [u8]>, PackageError> {
    let p = path.display().to_string();
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(PackageError::NotAPackage(p));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != ENSEMBLE_VERSION {
        return Ok(vec![bytes]);
    }
    let count = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    let mut members = Vec::new();
    let mut at = 16usize;
    for i in 0..count {
        let corrupt = |problem: String| PackageError::Corrupt { path: p.clone(), problem };
        let len = bytes.get(at..at + 8).ok_or_else(|| corrupt(format!("member {} of {count} is missing", i + 1)))?;
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
        let end = (at + 8).checked_add(len).filter(|&e| e <= bytes.len()).ok_or_else(|| corrupt(format!("member {} of {count} runs past the end of the file", i + 1)))?;
        members.push(&bytes[at + 8..end]);
        at = end;
    }
    if members.is_empty() {
        return Err(PackageError::Corrupt { path: p, problem: "an ensemble of no networks".into() });
    }
    Ok(members)
}

/// Every network's metadata in the file: one for a single package, each member's for an
/// ensemble package.
pub fn read_metas(path: &Path) -> Result<Vec<PackageMeta>, PackageError> {
    let bytes = read_bytes(path)?;
    members_of(path, &bytes)?.into_iter().map(|m| split(path, m).map(|(meta, _)| meta)).collect()
}

/// Every network in the file with its metadata, on `device`: one for a single package, each
/// member for an ensemble package.
pub fn load_members(path: &Path, device: &Device) -> Result<Vec<(PackageMeta, Network)>, PackageError> {
    let bytes = read_bytes(path)?;
    members_of(path, &bytes)?.into_iter().map(|m| load_bytes(path, m, device)).collect()
}

/// Writes the package atomically (a temporary file renamed into place).
pub fn save_package(
    path: &Path,
    meta: &PackageMeta,
    network: &Network,
) -> Result<(), PackageError> {
    let p = path.display().to_string();
    let json = serde_json::to_vec(meta).map_err(|e| PackageError::Corrupt {
        path: p.clone(),
        problem: e.to_string(),
    })?;
    let weights =
        network
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| PackageError::Corrupt {
                path: p.clone(),
                problem: format!("cannot serialize weights: {e}"),
            })?;
    let mut bytes = Vec::with_capacity(20 + json.len() + weights.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&PACKAGE_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(&weights);
    write_atomically(path, &bytes)
}

/// Reads only the metadata (for `kestrel info`); an ensemble package's first member's (see
/// [`read_metas`]).
pub fn read_meta(path: &Path) -> Result<PackageMeta, PackageError> {
    let bytes = read_bytes(path)?;
    let members = members_of(path, &bytes)?;
    Ok(split(path, members[0])?.0)
}

/// Loads a single package: its metadata and the network with its weights, on `device`. An
/// ensemble package is refused ([`PackageError::IsEnsemble`]): see [`load_ensemble`].
pub fn load_package(path: &Path, device: &Device) -> Result<(PackageMeta, Network), PackageError> {
    let bytes = read_bytes(path)?;
    match members_of(path, &bytes)?.as_slice() {
        [one] => load_bytes(path, one, device),
        more => Err(PackageError::IsEnsemble { path: path.display().to_string(), members: more.len() }),
    }
}

/// One single package's bytes as its metadata and network.
fn load_bytes(path: &Path, bytes: &[u8], device: &Device) -> Result<(PackageMeta, Network), PackageError> {
    let p = path.display().to_string();
    let (meta, weights) = split(path, bytes)?;
    if meta.contract.bands.len() != meta.network.in_channels {
        return Err(PackageError::Corrupt {
            path: p,
            problem: format!("the contract names {} band(s) but the network reads {} channel(s)", meta.contract.bands.len(), meta.network.in_channels),
        });
    }
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(weights.to_vec())).map_err(|e| PackageError::Corrupt { path: p.clone(), problem: format!("weights: {e}") })?;
    let network = meta
        .network
        .init(device)
        .try_load_record(record)
        .map_err(|e| PackageError::Corrupt { path: p, problem: format!("weights do not fit the network: {e}") })?;
    Ok((meta, network))
}

fn split<'a>(path: &Path, bytes: &'a [u8]) -> Result<(PackageMeta, &'a [u8]), PackageError> {
    let p = path.display().to_string();
    if bytes.len() < 20 || &bytes[..8] != MAGIC {
        return Err(PackageError::NotAPackage(p));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != PACKAGE_VERSION {
        return Err(PackageError::Version {
            path: p,
            found: version,
        });
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")) as usize;
    let end = 20usize
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| PackageError::Corrupt {
            path: p.clone(),
            problem: "metadata runs past the end of the file".into(),
        })?;
    let corrupt = |e: serde_json::Error| PackageError::Corrupt {
        path: p.clone(),
        problem: format!("metadata: {e}"),
    };
    let mut value: serde_json::Value = serde_json::from_slice(&bytes[20..end]).map_err(corrupt)?;
    // Packages written before the offset head have no such field (burn's Config derive
    // takes no serde default): they are networks without it.
    if let Some(network) = value.get_mut("network").and_then(|n| n.as_object_mut()) {
        network.entry("offset_head").or_insert(serde_json::Value::Bool(false));
    }
    let meta: PackageMeta = serde_json::from_value(value).map_err(corrupt)?;
    Ok((meta, &bytes[end..]))
}

/// True when the file starts like a model package.
pub fn is_package(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == MAGIC
}
