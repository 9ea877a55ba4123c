//! `kestrel bench`: I/O throughput measured against the reference tools in the same run on
//! the same files — windowed COG reads against GDAL, LAZ decoding against laspy + lazrs —
//! and the peak memory of DSM rasterization at 1 M and 10 M points (it must stay flat).

use anyhow::{bail, Context, Result};
use kestrel_geo::pointcloud::{synthetic::write_synthetic_cloud, PointCloud};
use kestrel_geo::raster::{CogWriter, CogWriterOptions};
use kestrel_geo::{open_raster, Crs, GeoTransform, Georef, PixelWindow};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const COG_SIDE: u32 = 4096;
const WINDOW: u32 = 512;
const WINDOWS: usize = 64;

pub fn run(work: &Path, quick: bool) -> Result<()> {
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let python = std::env::var("KESTREL_PYTHON").unwrap_or_else(|_| "python3".into());
    println!("kestrel bench — 2 threads max for the peers; figures are this machine's, this run's");

    // 1. Windowed reads of a 4096² RGB deflate COG.
    let cog = work.join("bench_4096_deflate.tif");
    if !cog.exists() {
        let partial = cog.with_extension("partial.tif");
        write_bench_cog(&partial)?;
        std::fs::rename(&partial, &cog)?;
    }
    let windows = random_windows(COG_SIDE, WINDOW, WINDOWS);
    let src = open_raster(&cog)?;
    let t = Instant::now();
    let mut checksum = 0u64;
    for w in &windows {
        let buf = src.read_window(0, *w)?;
        checksum += buf.get(0, 0, 0) as u64;
    }
    let ours_s = t.elapsed().as_secs_f64();
    let mpx = (WINDOWS as f64 * f64::from(WINDOW * WINDOW)) / 1e6;
    println!("COG windowed read ({WINDOWS} windows of {WINDOW}², deflate+predictor, RGB u8):");
    println!(
        "  kestrel:            {:7.1} Mpx/s ({ours_s:.3} s, checksum {checksum})",
        mpx / ours_s
    );
    match gdal_windows(&cog, &windows) {
        Ok(gdal_s) => println!(
            "  GDAL (osgeo ReadRaster, one process): {:7.1} Mpx/s ({gdal_s:.3} s) → kestrel/GDAL = {:.2}",
            mpx / gdal_s,
            gdal_s / ours_s
        ),
        Err(e) => println!("  GDAL: not measured ({e})"),
    }
    let t = Instant::now();
    for w in windows.iter().take(8) {
        let out = work.join("gdal_win.raw");
        let status = Command::new("gdal_translate")
            .args(["-q", "-of", "ENVI", "-srcwin"])
            .args([w.col_off, w.row_off, w.cols, w.rows].map(|v| v.to_string()))
            .arg(&cog)
            .arg(&out)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            break;
        }
    }
    let translate_s = t.elapsed().as_secs_f64() / 8.0 * WINDOWS as f64;
    println!(
        "  gdal_translate -srcwin (a process per window, extrapolated from 8): {:7.1} Mpx/s → kestrel/gdal_translate = {:.2}",
        mpx / translate_s,
        translate_s / ours_s
    );

    // 2. LAZ decoding.
    let sizes: &[u64] = if quick {
        &[1_000_000]
    } else {
        &[1_000_000, 10_000_000]
    };
    let mut peaks = Vec::new();
    for &n in sizes {
        let laz = work.join(format!("bench_{}M.laz", n / 1_000_000));
        if !laz.exists() {
            println!("  (writing {} with {n} synthetic points)", laz.display());
            let partial = laz.with_extension("partial.laz");
            write_synthetic_cloud(&partial, n, 400.0, 7)?;
            std::fs::rename(&partial, &laz)?;
        }
        let t = Instant::now();
        let mut pc = PointCloud::open(&laz)?;
        let mut zsum = 0f64;
        pc.for_each_chunk(
            |c| {
                zsum += c.z.iter().sum::<f64>();
                Ok(())
            },
            |_| {},
        )?;
        let ours_s = t.elapsed().as_secs_f64();
        println!("LAZ decode, {n} points:");
        println!(
            "  kestrel (las + laz): {:6.2} M points/s ({ours_s:.2} s)",
            n as f64 / 1e6 / ours_s
        );
        match laspy_read(&python, &laz) {
            Ok(s) => println!(
                "  laspy + lazrs:       {:6.2} M points/s ({s:.2} s) → kestrel/laspy = {:.2}",
                n as f64 / 1e6 / s,
                s / ours_s
            ),
            Err(e) => println!("  laspy: not measured ({e})"),
        }
        // 3. Peak memory of the DSM, in a fresh process each time.
        let out = Command::new(std::env::current_exe()?)
            .args(["dsm"])
            .arg(&laz)
            .arg("-o")
            .arg(work.join("bench_dsm.tif"))
            .args(["--cell", "0.5", "--kind", "ndsm"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let peak = text
            .split("peak memory ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse::<f64>().ok());
        match peak {
            Some(p) => {
                println!("  nDSM at 0.5 m (800×800 cells): peak RSS {p:.0} MiB");
                peaks.push(p);
            }
            None => bail!(
                "kestrel dsm failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
    if peaks.len() == 2 {
        println!(
            "Peak RSS 10 M / 1 M points = {:.2} (flat means ≈ 1)",
            peaks[1] / peaks[0]
        );
    }
    Ok(())
}

fn write_bench_cog(path: &Path) -> Result<()> {
    let georef = Georef {
        transform: GeoTransform::north_up(500_000.0, 4_000_000.0, 0.1, 0.1),
        crs: Some(Crs::from_epsg(32633)?),
    };
    let opts = CogWriterOptions {
        tile_size: 512,
        ..Default::default()
    };
    let mut w = CogWriter::<u8>::create(path, COG_SIDE, COG_SIDE, 3, Some(&georef), &opts)?;
    let ts = opts.tile_size as usize;
    let mut tile = vec![0u8; ts * ts * 3];
    let mut state = 12345u32;
    for row in (0..COG_SIDE).step_by(ts) {
        for col in (0..COG_SIDE).step_by(ts) {
            for (i, px) in tile.chunks_exact_mut(3).enumerate() {
                let (x, y) = (col as usize + i % ts, row as usize + i / ts);
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (state >> 28) as u8;
                px[0] = ((x / 3 + y / 5) % 200) as u8 + noise;
                px[1] = ((x / 7) % 180) as u8 + noise;
                px[2] = ((y / 4) % 190) as u8 + noise;
            }
            w.write_tile(col, row, ts, ts, &tile)?;
        }
    }
    w.finish()?;
    Ok(())
}

fn random_windows(side: u32, size: u32, n: usize) -> Vec<PixelWindow> {
    let mut s = 99u64;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let c = ((s >> 33) % u64::from(side - size)) as u32;
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = ((s >> 33) % u64::from(side - size)) as u32;
            PixelWindow::new(c, r, size, size)
        })
        .collect()
}

/// Seconds GDAL (through Debian's python3-gdal, one process, 2 threads) takes to read the
/// same windows.
fn gdal_windows(cog: &Path, windows: &[PixelWindow]) -> Result<f64> {
    let list: Vec<String> = windows
        .iter()
        .map(|w| format!("({},{},{},{})", w.col_off, w.row_off, w.cols, w.rows))
        .collect();
    let script = format!(
        "import time\nfrom osgeo import gdal\ngdal.SetConfigOption('GDAL_NUM_THREADS','2')\nds=gdal.Open({:?})\nws=[{}]\nt=time.perf_counter()\nfor (c,r,w,h) in ws:\n    ds.ReadRaster(c,r,w,h)\nprint(time.perf_counter()-t)",
        cog.display().to_string(),
        list.join(",")
    );
    python_seconds("/usr/bin/python3", &script)
}

fn laspy_read(python: &str, laz: &Path) -> Result<f64> {
    let script = format!(
        "import time, laspy\nt=time.perf_counter()\nlas=laspy.read({:?}, laz_backend=laspy.LazBackend.Lazrs)\nimport numpy\nz=numpy.asarray(las.z).sum()\nprint(time.perf_counter()-t)",
        laz.display().to_string()
    );
    python_seconds(python, &script)
}

fn python_seconds(python: &str, script: &str) -> Result<f64> {
    let out = Command::new(python)
        .args(["-c", script])
        .output()
        .with_context(|| format!("running {python}"))?;
    if !out.status.success() {
        bail!(
            "{}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("failed")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// Normalized chips per second (window read, colour mapping, orientation analysis for
/// axis-aligned boxes, rotated resampling) on a synthetic 2048² scene, all cores.
pub fn chips(work: &Path) -> Result<()> {
    use kestrel_samples::chips::{build_chips, ChipOptions};
    use kestrel_samples::synthetic::{Scene, SceneSpec, TruthBoxes};
    use kestrel_samples::{HeadingMode, Project};
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let scene = Scene::generate(&SceneSpec {
        width_px: 2048,
        height_px: 2048,
        vehicles: 600,
        seed: 21,
        ..Default::default()
    });
    let tif = work.join("bench_scene.tif");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("kestrel bench chips — {threads} threads, synthetic 2048² scene at 0.15 m");
    for (name, axis_boxes) in [
        ("oriented boxes (heading given)", false),
        ("axis-aligned boxes (heading estimated)", true),
    ] {
        let dir = work.join(if axis_boxes {
            "bench_project_axis"
        } else {
            "bench_project_oriented"
        });
        let _ = std::fs::remove_dir_all(&dir);
        let mut project = Project::create(&dir)?;
        let class = project.add_class("vehicle", HeadingMode::Axis)?;
        let boxes = if axis_boxes {
            TruthBoxes::AxisAligned
        } else {
            TruthBoxes::Oriented
        };
        scene.add_to_project(&mut project, &tif, class.id, boxes)?;
        let positives = scene.truth.iter().filter(|t| t.class == "vehicle").count();
        let t = Instant::now();
        let set = build_chips(
            &project,
            "vehicle",
            &ChipOptions {
                auto_negative_ratio: 1.0,
                ..Default::default()
            },
            |_, _| {},
        )?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "  {name}: {} chips ({} positives, {}² px) in {s:.2} s → {:.0} chips/s",
            set.chips.len(),
            positives,
            set.contract.chip_size_px,
            set.chips.len() as f64 / s
        );
    }
    Ok(())
}

/// `kestrel bench network`: the network's training and inference throughput, and the same
/// architecture in PyTorch (CPU, 2 threads; CUDA when Kestrel runs on the GPU) in the same
/// run when `KESTREL_TORCH_PYTHON` names a Python with torch (see bench/README.md);
/// `KESTREL_TORCH_SCRIPT` points at the script where the source tree is not beside the binary.
pub fn network(quick: bool) -> Result<()> {
    let steps = if quick { 4 } else { 10 };
    let config = kestrel_model::network::NetworkConfig::new(3, 1).with_offset_head(true);
    let (chip, batch, tile) = (52, 64, 1024);
    println!("kestrel bench network — chips {chip}×{chip}×3, batch {batch}, dense tile {tile}²; median of {steps} steps");
    let ours = kestrel_model::bench::measure(&config, chip, batch, tile, steps);
    let macs = config.macs_per_output_cell() as f64
        / (kestrel_model::network::STRIDE * kestrel_model::network::STRIDE) as f64;
    println!(
        "  network: {} parameters, {:.0} MAC per input pixel ({:.2} GFLOP per megapixel)",
        ours.parameters,
        macs,
        2.0 * macs * 1e6 / 1e9
    );
    println!(
        "  kestrel ({}): train {:7.1} img/s, infer {:7.1} img/s, dense tile {:.3} s = {:.2} Mpx/s ({:.1} GFLOP/s counted as direct convolution; on the CPU the 3×3 stride-1 layers run as Winograd F(2×2, 3×3), 16 products where direct takes 36)",
        kestrel_model::device::describe(&kestrel_model::device::current()), ours.train_images_per_s, ours.infer_images_per_s, ours.tile_seconds, ours.tile_mpx_per_s, ours.tile_gflop_per_s
    );
    println!(
        "  chips scored at their centre cell alone (as detection scores candidates' views): {:7.1} img/s ({:.2}× the whole pass)",
        ours.infer_centre_images_per_s,
        ours.infer_centre_images_per_s / ours.infer_images_per_s
    );
    println!(
        "  the same tile through burn's forward pass: {:.3} s ({:.2}× the time of the fused inference pass detection runs)",
        ours.tile_framework_seconds,
        ours.tile_framework_seconds / ours.tile_seconds
    );
    if kestrel_model::device::is_cpu(&kestrel_model::device::current()) {
        println!(
            "  training steps through burn's autodiff: {:7.1} img/s (Kestrel's CPU training pass: {:.2}× as fast)",
            ours.train_framework_images_per_s,
            ours.train_images_per_s / ours.train_framework_images_per_s
        );
    }
    let Ok(python) = std::env::var("KESTREL_TORCH_PYTHON") else {
        println!("  PyTorch: not measured (set KESTREL_TORCH_PYTHON to a Python with torch; see bench/README.md)");
        return Ok(());
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/network_pytorch.py");
    // The peer runs where Kestrel ran: 2 CPU threads, or CUDA beside Kestrel's GPU.
    let on_gpu = !kestrel_model::device::is_cpu(&kestrel_model::device::current());
    let script = std::env::var_os("KESTREL_TORCH_SCRIPT").map_or(script, Into::into);
    let out = Command::new(&python)
        .arg(&script)
        .args([
            "--chip",
            &chip.to_string(),
            "--batch",
            &batch.to_string(),
            "--tile",
            &tile.to_string(),
            "--steps",
            &steps.to_string(),
            "--threads",
            "2",
            "--device",
            if on_gpu { "cuda" } else { "cpu" },
        ])
        .output()
        .with_context(|| format!("running {python} {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let peer: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading the PyTorch benchmark's JSON")?;
    let f = |k: &str| peer[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "  PyTorch {} on {} ({} CPU threads, {} parameters): train {:7.1} img/s, infer {:7.1} img/s, dense tile {:.3} s = {:.2} Mpx/s",
        peer["torch"].as_str().unwrap_or("?"),
        peer["device"].as_str().unwrap_or("CPU"),
        peer["threads"],
        peer["parameters"],
        f("train_images_per_s"),
        f("infer_images_per_s"),
        f("tile_seconds"),
        f("tile_mpx_per_s")
    );
    println!(
        "  kestrel/PyTorch: train {:.2}×, infer {:.2}×, dense tile {:.2}×",
        ours.train_images_per_s / f("train_images_per_s"),
        ours.infer_images_per_s / f("infer_images_per_s"),
        ours.tile_mpx_per_s / f("tile_mpx_per_s")
    );
    Ok(())
}
