//! The demo project `kestrel serve` opens when given none: two georeferenced synthetic
//! scenes with vehicles at every heading (the samples crate's generator), a few of them
//! already labelled, made on first run with no download.

use anyhow::Context;
use kestrel_samples::store::NewSample;
use kestrel_samples::synthetic::{Scene, SceneSpec};
use kestrel_samples::{HeadingMode, Origin, Polarity, Project};
use std::path::PathBuf;

/// Where Kestrel keeps its own files: `$KESTREL_HOME`, else `$XDG_DATA_HOME/kestrel`, else
/// `~/.local/share/kestrel`.
pub fn kestrel_home() -> anyhow::Result<PathBuf> {
    if let Some(h) = std::env::var_os("KESTREL_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(x).join("kestrel"));
    }
    let home = std::env::var_os("HOME").context("neither KESTREL_HOME nor HOME is set: give --project DIR")?;
    Ok(PathBuf::from(home).join(".local/share/kestrel"))
}

/// The demo project's folder, created if it does not exist yet.
pub fn ensure_demo() -> anyhow::Result<PathBuf> {
    let dir = kestrel_home()?.join("demo");
    if dir.join(kestrel_samples::store::DB_FILE).is_file() {
        return Ok(dir);
    }
    // Built beside its final place and renamed when complete, so that an interrupted first
    // run never leaves half a demo behind.
    let parent = dir.parent().context("the demo folder has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let partial = parent.join(format!("demo.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    build(&partial, &dir).with_context(|| format!("creating the demo project in {}", dir.display()))?;
    std::fs::rename(&partial, &dir).with_context(|| format!("moving the demo project to {}", dir.display()))?;
    Ok(dir)
}

/// Scenes: (file name, seed, vehicles labelled). The first is for labelling and training, the
/// second (fully labelled) for validation.
const SCENES: [(&str, u64, usize); 2] = [("harbour-road.tif", 11, 8), ("depot.tif", 12, usize::MAX)];

/// Builds the demo project in `partial`, its images recorded under `final_dir` (where the
/// folder will be moved; the same folder when built in place).
pub fn build(partial: &std::path::Path, final_dir: &std::path::Path) -> anyhow::Result<()> {
    let mut project = Project::create(partial)?;
    let class = project.add_class("vehicle", HeadingMode::Directed)?;
    // The vehicles left for the user to find, per image: the answer key of the demo (the
    // browser test draws its positives on them).
    let mut unlabelled = serde_json::Map::new();
    for (name, seed, labelled) in SCENES {
        let scene = Scene::generate(&SceneSpec { width_px: 1024, height_px: 1024, gsd_m: 0.15, vehicles: 36, buildings: 5, seed, ..Default::default() });
        scene.write_geotiff(partial.join(name))?;
        // Stored under the final path: the folder is renamed into place afterwards.
        let uri = final_dir.join(name);
        let uri = uri.to_str().context("the demo path is not UTF-8")?;
        let info = kestrel_geo::open_raster(partial.join(name))?.info().clone();
        let image = project.add_image(uri, &info, None)?;
        let samples: Vec<NewSample> = scene
            .truth
            .iter()
            .filter(|t| t.class == "vehicle")
            .take(labelled)
            .map(|t| NewSample { image_id: image.id, class_id: class.id, polarity: Polarity::Positive, shape: t.shape, heading_mode: None, origin: Origin::Imported })
            .collect();
        project.add_samples(&samples)?;
        if labelled != usize::MAX {
            // The labelling scene comes with a LiDAR-like cloud (ground, 1.5 m vehicles,
            // 6 m buildings) for the 3D view.
            let laz = name.replace(".tif", ".las");
            scene.write_point_cloud(partial.join(&laz), 0.3)?;
            let cloud_uri = final_dir.join(&laz);
            project.attach_cloud(image.id, cloud_uri.to_str().context("the demo path is not UTF-8")?)?;
        }
        let rest: Vec<serde_json::Value> = scene.truth.iter().filter(|t| t.class == "vehicle").skip(labelled).map(|t| serde_json::to_value(t.shape).unwrap_or_default()).collect();
        unlabelled.insert(name.to_string(), serde_json::Value::Array(rest));
    }
    std::fs::write(partial.join("unlabelled-vehicles.json"), serde_json::to_vec_pretty(&unlabelled)?)?;
    Ok(())
}
