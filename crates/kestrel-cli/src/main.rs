//! The `kestrel` command: argument parsing, progress bars and printing. The work itself
//! lives in the library crates.

mod bench;
mod progress;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kestrel_geo::pointcloud::{rasterize, HeightKind, PointCloud, RasterizeOptions};
use kestrel_geo::{open_raster, sniff, FileKind};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "kestrel", version, about = "Find objects with their heading in geospatial imagery and point clouds")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a raster, point cloud or vector file.
    Info {
        path: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Ground sample distance (m) of an image without georeferencing.
        #[arg(long)]
        gsd: Option<f64>,
    },
    /// Rasterize a point cloud into a height model (COG GeoTIFF).
    Dsm {
        cloud: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Cell size in metres.
        #[arg(long, default_value_t = 0.5)]
        cell: f64,
        /// dsm, dtm, ndsm, intensity or class:N (mask of ASPRS class N).
        #[arg(long, default_value = "dsm")]
        kind: String,
        /// Fill empty DSM cells by interpolation (the DTM is always filled).
        #[arg(long)]
        fill: bool,
    },
    /// Measure I/O throughput against GDAL and laspy on this machine.
    Bench {
        /// Folder for the generated test files.
        #[arg(long, default_value = "target/bench-data")]
        work: PathBuf,
        /// Skip the 10 M point run (faster).
        #[arg(long)]
        quick: bool,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Info { path, json, gsd } => info(&path, json, gsd),
        Command::Dsm { cloud, output, cell, kind, fill } => {
            let kind: HeightKind = kind.parse()?;
            let mut pc = PointCloud::open(&cloud)?;
            let bar = progress::points_bar(pc.point_count(), "rasterizing");
            let grid = rasterize(&mut pc, &RasterizeOptions { cell_m: cell, kind, fill_dsm_holes: fill }, |n| bar.set_position(n))?;
            bar.finish_and_clear();
            grid.write_cog(&output).with_context(|| format!("writing {}", output.display()))?;
            println!(
                "{}: {}x{} cells of {} m, {} points, peak memory {:.0} MiB",
                output.display(),
                grid.width,
                grid.height,
                cell,
                pc.point_count(),
                progress::peak_rss_mib().unwrap_or(f64::NAN)
            );
            Ok(())
        }
        Command::Bench { work, quick } => bench::run(&work, quick),
    }
}

fn info(path: &PathBuf, json: bool, gsd: Option<f64>) -> Result<()> {
    let remote = path.to_str().is_some_and(kestrel_geo::raster::is_remote);
    let kind = if remote { FileKind::Raster } else { sniff(path)? };
    let value = match kind {
        FileKind::Raster => {
            let src = open_raster(path)?;
            let mut v = src.info().to_json();
            if v["gsd_m"].is_null() {
                if let Some(g) = gsd {
                    v["gsd_m"] = serde_json::json!(g);
                    v["gsd_source"] = serde_json::json!("--gsd");
                }
            }
            v
        }
        FileKind::PointCloud => {
            let mut pc = PointCloud::open(path)?;
            let bar = progress::points_bar(pc.point_count(), "counting classes");
            let summary = pc.summarize(|n| bar.set_position(n))?;
            bar.finish_and_clear();
            summary.to_json()
        }
        FileKind::GeoJson => serde_json::to_value(kestrel_geo::vector::describe_geojson(path)?)?,
        FileKind::GeoPackage => serde_json::to_value(kestrel_geo::vector::describe_geopackage(path)?)?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", progress::as_text(&value));
    }
    Ok(())
}
