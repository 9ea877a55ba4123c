//! The `kestrel` command: argument parsing, progress bars and printing. The work itself
//! lives in the library crates.

mod bench;
mod detect_cmd;
mod eval_cmd;
mod progress;
mod samples_cmd;
mod serve;
mod train_cmd;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kestrel_geo::pointcloud::{rasterize, HeightKind, PointCloud, RasterizeOptions};
use kestrel_geo::{open_raster, sniff, FileKind};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "kestrel",
    version,
    about = "Find objects with their heading in geospatial imagery and point clouds"
)]
struct Cli {
    /// Where the network runs: auto (the GPU when this build has one and it answers), cpu or
    /// gpu. The environment variable KESTREL_DEVICE sets the same.
    #[arg(long, global = true)]
    device: Option<String>,
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
        /// dsm, dtm, ndsm, intensity or class:N (mask of ASPRS class N); several,
        /// comma-separated, become the bands of one file (e.g. ndsm,intensity).
        #[arg(long, default_value = "dsm")]
        kind: String,
        /// Fill empty DSM cells by interpolation (the DTM is always filled).
        #[arg(long)]
        fill: bool,
        /// Only this area: min_x,min_y,max_x,max_y in the cloud's CRS.
        #[arg(long, value_delimiter = ',')]
        bbox: Option<Vec<f64>>,
        /// On this image's grid (its extent and pixel size; same CRS), to fuse with it.
        #[arg(long, conflicts_with_all = ["bbox", "cell"])]
        like: Option<PathBuf>,
    },
    /// Stack rasters of one grid into one multi-band GeoTIFF (e.g. RGB + nDSM for fusion).
    Stack {
        /// The rasters, their bands in this order.
        #[arg(required = true, num_args = 2..)]
        rasters: Vec<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
        /// Only this area, min_x,min_y,max_x,max_y in the rasters' CRS (pixel coordinates
        /// without georeferencing), widened to whole pixels.
        #[arg(long, value_delimiter = ',')]
        bbox: Option<Vec<f64>>,
    },
    /// Objects of a point cloud: segmented by an extra dimension (e.g. lidR's treeID),
    /// footprints of a class, or tree tops of its canopy height; one box per object with its
    /// top, as GeoJSON or GeoPackage (truth for training or evaluation).
    Objects {
        cloud: PathBuf,
        /// The extra dimension that numbers the objects.
        #[arg(long, required_unless_present_any = ["class", "tree_tops"])]
        dimension: Option<String>,
        /// Or: footprints of this ASPRS class (6 = building), as connected groups of cells.
        #[arg(long, conflicts_with = "dimension")]
        class: Option<u8>,
        /// Or: tree tops, the local maxima of the nDSM (the highest cell within --radius and
        /// at least --min-height tall), each with its crown's extent.
        #[arg(long, conflicts_with_all = ["dimension", "class"])]
        tree_tops: bool,
        /// Tree tops: a top is the highest cell within this many metres.
        #[arg(long, default_value_t = 2.0, requires = "tree_tops")]
        radius: f64,
        /// Tree tops: the least height above ground, in metres.
        #[arg(long, default_value_t = 2.0, requires = "tree_tops")]
        min_height: f64,
        /// Cell size (m) for --class footprints and the --tree-tops height model.
        #[arg(long, default_value_t = 0.5)]
        cell: f64,
        #[arg(short, long)]
        output: PathBuf,
        /// Only objects whose top lies in this area: min_x,min_y,max_x,max_y.
        #[arg(long, value_delimiter = ',')]
        bbox: Option<Vec<f64>>,
        /// Leave out objects of fewer points (fragments).
        #[arg(long, default_value_t = 1)]
        min_points: usize,
    },
    /// Import labels (YOLO, VOC, CSV, DOTA, GeoJSON, COCO) of an image into a project.
    Import {
        #[arg(long)]
        project: PathBuf,
        #[arg(long)]
        image: PathBuf,
        /// Label files.
        #[arg(required = true)]
        labels: Vec<PathBuf>,
        /// yolo, voc, csv, dota, geojson or coco (default: detected).
        #[arg(long)]
        format: Option<String>,
        /// Store every label under this class.
        #[arg(long)]
        class: Option<String>,
        /// Names of YOLO class ids 0, 1, …, comma-separated.
        #[arg(long)]
        class_names: Option<String>,
        /// Keep only labels of this class.
        #[arg(long)]
        only: Option<String>,
        /// Ground sample distance in metres (required for images without georeferencing).
        #[arg(long)]
        gsd: Option<f64>,
        /// Import the labels as negative samples.
        #[arg(long)]
        negative: bool,
        /// For new classes: 'axis' (0–180°) or 'directed' (front known, 0–360°).
        #[arg(long, default_value = "axis")]
        heading_mode: String,
        /// Import the valid labels even when others are broken.
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Export a project's samples as GeoJSON or GeoPackage.
    Export {
        #[arg(long)]
        project: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long)]
        class: Option<String>,
    },
    /// Write normalized chips of a class (PNG), a manifest and a contact sheet.
    Chips {
        #[command(flatten)]
        target: ClassTarget,
        /// Target ground sample distance in metres (default: the positives' median).
        #[arg(long)]
        gsd: Option<f64>,
        /// Automatic negatives per positive.
        #[arg(long, default_value_t = 1.0)]
        negatives: f64,
        /// Bands to use, 1-based, in order (default: the first three), e.g. 4,3,2.
        #[arg(long)]
        bands: Option<String>,
        /// Colour normalization: 'quantile' (invariant to gamma too) or 'stretch'.
        #[arg(long, default_value = "quantile")]
        colour: String,
    },
    /// Detect a model's class across whole rasters, into GeoJSON (lon/lat) or GeoPackage.
    Detect {
        /// The model package (from `kestrel train`). Given more than once, the models — one
        /// class, one normalization contract, e.g. trained with other seeds — detect as an
        /// ensemble: the first proposes, all judge each candidate together (a pass of each
        /// over the candidates' views), and the default threshold is the mean of theirs.
        #[arg(long, required = true)]
        model: Vec<PathBuf>,
        /// Rasters: files, https:// or s3:// COGs.
        #[arg(required = true)]
        images: Vec<String>,
        /// OUT.geojson or OUT.gpkg.
        #[arg(short, long)]
        output: PathBuf,
        /// Score at or above which an object is reported (default: the model's, chosen on its
        /// validation images).
        #[arg(long)]
        threshold: Option<f32>,
        /// Ground sample distance in metres, for images without georeferencing.
        #[arg(long)]
        gsd: Option<f64>,
        /// Area of interest: min_x,min_y,max_x,max_y in the image's CRS (pixels without one).
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
        bbox: Option<Vec<f64>>,
        /// Tile edge in network pixels (larger tiles waste less on their overlap, at about
        /// 12 MiB per band and 1,000² pixels).
        #[arg(long, default_value_t = 1024)]
        tile: usize,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Combine models of one class and one normalization contract (e.g. one recipe trained
    /// with other seeds) into one ensemble package, which `detect`, `eval` and the GUI's
    /// detection use as `--model A --model B` would: the members judge each candidate
    /// together. Models trained from different seeds err on different unseen surfaces, so an
    /// ensemble varies less from one training run to the next.
    Ensemble {
        /// Model packages (single or ensembles, whose members join), two networks or more.
        #[arg(required = true, num_args = 1..)]
        models: Vec<PathBuf>,
        /// The ensemble package to write.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Score detections against ground truth: precision, recall, F1, AP50, AP50:95, heading error.
    Eval {
        /// Truth label files (any format `kestrel import` reads), each beside its image.
        #[arg(long, num_args = 1.., required = true)]
        truth: Vec<PathBuf>,
        /// Detections written by `kestrel detect` (GeoJSON); not with --robustness, which
        /// detects itself.
        #[arg(long, required_unless_present = "robustness")]
        pred: Option<PathBuf>,
        #[arg(long, default_value_t = 0.5)]
        iou: f64,
        /// The detection threshold to report besides the best one (default: --model's, else 0.5).
        #[arg(long)]
        threshold: Option<f32>,
        /// Names of YOLO class ids 0, 1, …, comma-separated.
        #[arg(long, value_delimiter = ',')]
        class_names: Vec<String>,
        /// Score only truth of this class.
        #[arg(long)]
        only: Option<String>,
        #[arg(long)]
        json: bool,
        /// Turn (0–345° by 15°), rescale (0.5–2×) and re-colour (gamma 0.5–2, white balance,
        /// u8 → u16) each test image, truth alike, detect with --model, and report AP50 each.
        #[arg(long, requires = "model")]
        robustness: bool,
        /// The model: its default threshold, and the detector for --robustness (given more
        /// than once, an ensemble, as in `kestrel detect`).
        #[arg(long)]
        model: Vec<PathBuf>,
        /// Ground sample distance (m) of test images without georeferencing (for --robustness
        /// and --radius).
        #[arg(long)]
        gsd: Option<f64>,
        /// Match detections to truth by centre distance (metres) instead of IoU: for object
        /// positions such as tree tops.
        #[arg(long, conflicts_with_all = ["iou", "robustness"])]
        radius: Option<f64>,
    },
    /// Train a detector for a class from the project's positives and negatives.
    Train {
        #[command(flatten)]
        target: ClassTarget,
        /// Validate on the images whose path contains this text, or any of several separated
        /// by commas (`MOS176,MOS177`): a separate area, never frames overlapping training's.
        #[arg(long)]
        validate_on: Option<String>,
        #[arg(long, default_value_t = 12)]
        epochs: usize,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long, default_value_t = 2e-3)]
        learning_rate: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Stop after this many epochs without one whose validation F1 lies within 0.01 of the
        /// best (the epoch training keeps).
        #[arg(long, default_value_t = 4)]
        patience: usize,
        /// Decay of the weight average that is validated and shipped (0: the last weights).
        #[arg(long, default_value_t = 0.99)]
        average_decay: f32,
        /// Scale augmentation: chips cut at ±this fraction of the model's GSD (0–0.5).
        #[arg(long, default_value_t = 0.1)]
        scale_jitter: f64,
        /// Colour augmentation: per-band gain ±this fraction, offset ±half of it (0–0.5).
        #[arg(long, default_value_t = 0.1)]
        colour_jitter: f32,
        /// Hard-negative mining rounds: score the training images, add the confident false
        /// positives as negatives, train on (each round continues from the previous round's
        /// network for half the epochs).
        #[arg(long, default_value_t = 0)]
        mine_rounds: usize,
        /// At most this many mined negatives per training image and round, strongest first.
        #[arg(long, default_value_t = 20)]
        mine_per_image: usize,
        /// Automatic negatives per positive.
        #[arg(long, default_value_t = 2.0)]
        negatives: f64,
        /// Print progress events as JSON lines on stdout.
        #[arg(long)]
        json: bool,
        /// Continue an interrupted run from its last checkpoint (`OUTPUT.checkpoints/`).
        #[arg(long)]
        resume: bool,
        /// Train this many networks, with seeds SEED, SEED+1, …, and write them as one
        /// ensemble package (each also alone in `OUTPUT.members/`): they judge candidates
        /// together, which steadies what one training run learns (see `kestrel ensemble`).
        /// N times the training time and about 1.6× detection's post-processing for two.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=8))]
        members: u64,
        /// Colour normalization: 'quantile' (invariant to gamma too) or 'stretch'.
        #[arg(long, default_value = "quantile")]
        colour: String,
        /// Bands (1-based) that hold heights in metres (an nDSM from `kestrel dsm`): kept in
        /// metres (÷ 20) instead of colour-normalized per image.
        #[arg(long, value_delimiter = ',')]
        height_bands: Vec<usize>,
        /// Bands the network reads, 1-based, in order (default: the first three), e.g.
        /// 1,2,3,4 for RGB + nDSM stacked with `kestrel stack`.
        #[arg(long, value_delimiter = ',')]
        bands: Vec<usize>,
        /// Ground sample distance (m) the network works at (default: the positives' median).
        /// A coarser one detects faster — pixels fall with its square — while the objects
        /// stay some 20 pixels long or more.
        #[arg(long)]
        gsd: Option<f64>,
        /// Channels of the network's stem and its two stages: more sees finer differences
        /// (and costs about the square in time).
        #[arg(long, value_delimiter = ',', default_values_t = [16, 32, 64])]
        widths: Vec<usize>,
        /// Share of positives (0–1) shown as decoy negatives: the object's outline filled
        /// flat with its own colour, its shadow and surroundings kept, so that the network
        /// learns the object's inner structure and not just "a blob of the right size"
        /// (only positives with inner structure to lose: dark, flat ones stay positives, so
        /// fewer than this share become decoys).
        #[arg(long, default_value_t = 0.0)]
        decoys: f64,
        /// Share of chips (0–1) whose colour bands are shuffled: no colour of objects or
        /// surroundings becomes a cue (an area the training images lack, e.g. red roofs).
        #[arg(long, default_value_t = 0.0)]
        band_shuffle: f64,
        /// Share of positives (0–1) shown as negatives at a size the class does not have
        /// (0.55–0.7× or 1.45–1.8× as long), so that the object's size in metres counts: a
        /// car-like box of 3 m (a roof dormer) is not a car. Default: 0.2 for a class of one
        /// size (90 % of the positives' lengths within 0.7–1.45× their median: vehicles),
        /// else 0 (trees, buildings).
        #[arg(long)]
        size_negatives: Option<f64>,
    },
    /// Start the labelling and review GUI: open the printed address in a browser.
    Serve(ServeOptions),
    /// Measure I/O throughput against GDAL and laspy on this machine.
    Bench {
        /// What to measure: 'io' (rasters and point clouds against GDAL and laspy),
        /// 'chips' (sample normalization throughput) or 'network' (training and inference
        /// against the same network in PyTorch).
        #[arg(default_value = "io")]
        what: String,
        /// Folder for the generated test files.
        #[arg(long, default_value = "target/bench-data")]
        work: PathBuf,
        /// Skip the 10 M point run (faster).
        #[arg(long)]
        quick: bool,
    },
}

#[derive(clap::Args)]
struct ServeOptions {
    /// The project folder (created if missing); without it, the demo project (made on first
    /// run under $KESTREL_HOME, default ~/.local/share/kestrel).
    #[arg(long)]
    project: Option<PathBuf>,
    /// Address to listen on. Another address than a loopback one needs a token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Required on every API call (`Authorization: Bearer TOKEN` or `?token=TOKEN`).
    #[arg(long, env = "KESTREL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A folder whose images may be added through the GUI (repeatable); default: the project
    /// folder and the current directory.
    #[arg(long = "image-root")]
    image_roots: Vec<PathBuf>,
    /// Serve the web app from this folder instead of the copy built into the binary.
    #[arg(long)]
    web_dir: Option<PathBuf>,
}

/// A project, one of its classes, and where to write the result.
#[derive(clap::Args)]
struct ClassTarget {
    /// The project folder.
    #[arg(long)]
    project: PathBuf,
    /// The class's name.
    #[arg(long)]
    class: String,
    /// Where to write: the chips folder, or the model package (e.g. car.kestrel).
    #[arg(short, long)]
    output: PathBuf,
}

/// The area and cell (metres) that put a rasterized layer on `image`'s grid.
fn grid_of(image: &std::path::Path, cloud: &PointCloud) -> Result<(Option<[f64; 4]>, f64)> {
    let src = open_raster(image)?;
    let info = src.info();
    let g = info.georef.as_ref().with_context(|| format!("{}: no georeferencing to align to", image.display()))?;
    let t = g.transform.0;
    if t[2] != 0.0 || t[4] != 0.0 {
        anyhow::bail!("{}: a rotated geotransform; --like needs a north-up image", image.display());
    }
    let crs = cloud.crs()?;
    if let (Some(a), Some(b)) = (&g.crs, &crs) {
        if a.proj4 != b.proj4 {
            anyhow::bail!("{} is in {} but the cloud in {}: reproject one first", image.display(), a.label(), b.label());
        }
    }
    let unit_m = crs.as_ref().and_then(|c| c.linear_unit_m()).unwrap_or(1.0);
    let (w, h) = (f64::from(info.width), f64::from(info.height));
    let area = [t[0], t[3] + h * t[5], t[0] + w * t[1], t[3]];
    Ok((Some(area), t[1].abs() * unit_m))
}

/// `--bbox min_x,min_y,max_x,max_y` as an array.
fn four(bbox: Option<Vec<f64>>) -> Result<Option<[f64; 4]>> {
    match bbox.as_deref() {
        None => Ok(None),
        Some(&[a, b, c, d]) => Ok(Some([a, b, c, d])),
        Some(v) => anyhow::bail!("--bbox takes four numbers, min_x,min_y,max_x,max_y (got {})", v.len()),
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Output piped into a reader that stops early (`kestrel eval ... | head`) ends the process
/// quietly, as other command-line tools do, instead of a panic in `println!` (Rust starts with
/// SIGPIPE ignored). Not for `serve`, whose work outlives any one reader; sockets are written
/// without the signal either way (MSG_NOSIGNAL).
#[cfg(unix)]
fn quiet_on_closed_pipe() {
    // SAFETY: restores a signal's default disposition at start-up, before any other thread
    // exists; no handler of ours is replaced.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn quiet_on_closed_pipe() {}

fn run() -> Result<()> {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        quiet_on_closed_pipe();
    }
    let device = cli
        .device
        .clone()
        .or_else(|| std::env::var("KESTREL_DEVICE").ok())
        .unwrap_or_else(|| "auto".into());
    if matches!(cli.command, Command::Train { .. } | Command::Bench { .. } | Command::Detect { .. } | Command::Eval { robustness: true, .. } | Command::Serve(_)) {
        let chosen = kestrel_model::device::select(&device)?;
        eprintln!("network device: {chosen}");
    }
    match cli.command {
        Command::Info { path, json, gsd } => info(&path, json, gsd),
        Command::Serve(o) => serve::run(serve::ServeArgs { project: o.project, addr: o.addr, token: o.token, image_roots: o.image_roots, web_dir: o.web_dir }),
        Command::Dsm {
            cloud,
            output,
            cell,
            kind,
            fill,
            bbox,
            like,
        } => {
            let kinds = kind.split(',').map(|k| k.trim().parse::<HeightKind>()).collect::<Result<Vec<_>, _>>()?;
            let (mut area, mut cell) = (four(bbox)?, cell);
            if let Some(image) = &like {
                (area, cell) = grid_of(image, &PointCloud::open(&cloud)?)?;
            }
            let mut layers = Vec::new();
            let mut points = 0;
            for kind in kinds {
                let mut pc = PointCloud::open(&cloud)?;
                points = pc.point_count();
                let bar = progress::points_bar(pc.point_count(), "rasterizing");
                layers.push(rasterize(&mut pc, &RasterizeOptions { cell_m: cell, kind, fill_dsm_holes: fill, area }, |n| bar.set_position(n))?);
                bar.finish_and_clear();
            }
            kestrel_geo::pointcloud::write_layers(&output, &layers).with_context(|| format!("writing {}", output.display()))?;
            println!(
                "{}: {}x{} cells of {} m, {} band(s), {} points, peak memory {:.0} MiB",
                output.display(),
                layers[0].width,
                layers[0].height,
                cell,
                layers.len(),
                points,
                progress::peak_rss_mib().unwrap_or(f64::NAN)
            );
            Ok(())
        }
        Command::Stack { rasters, output, bbox } => samples_cmd::stack(&rasters, &output, four(bbox)?),
        Command::Objects { cloud, dimension, class, tree_tops, radius, min_height, cell, output, bbox, min_points } => {
            let source = match (dimension, class) {
                (Some(d), _) => samples_cmd::ObjectSource::Dimension(d),
                (None, Some(c)) => samples_cmd::ObjectSource::Class(c),
                (None, None) if tree_tops => samples_cmd::ObjectSource::TreeTops { radius_m: radius, min_height_m: min_height },
                (None, None) => anyhow::bail!("give --dimension NAME, --class CODE or --tree-tops"),
            };
            samples_cmd::objects(&cloud, &source, cell, &output, four(bbox)?, min_points)
        }
        Command::Detect { model, images, output, threshold, gsd, bbox, tile, json } => detect_cmd::run(detect_cmd::DetectArgs { model, images, output, threshold, gsd, bbox, tile, json }),
        Command::Eval { truth, pred, iou, threshold, class_names, only, json, robustness, model, gsd, radius } => eval_cmd::run(eval_cmd::EvalArgs { truth, pred, iou, threshold, class_names, only, json, model, robustness, gsd, radius_m: radius }).map(|_| ()),
        Command::Ensemble { models, output } => ensemble(&models, &output),
        Command::Bench { what, work, quick } => match what.as_str() {
            "io" => bench::run(&work, quick),
            "chips" => bench::chips(&work),
            "network" => bench::network(quick),
            other => anyhow::bail!("unknown benchmark '{other}': expected io, chips or network"),
        },
        Command::Import {
            project,
            image,
            labels,
            format,
            class,
            class_names,
            only,
            gsd,
            negative,
            heading_mode,
            skip_invalid,
        } => samples_cmd::import(samples_cmd::ImportArgs {
            project,
            image,
            labels,
            format,
            class,
            class_names,
            only,
            gsd,
            negative,
            heading_mode,
            skip_invalid,
        }),
        Command::Train {
            target,
            validate_on,
            epochs,
            batch,
            learning_rate,
            seed,
            patience,
            average_decay,
            scale_jitter,
            colour_jitter,
            mine_rounds,
            mine_per_image,
            negatives,
            json,
            resume,
            colour,
            height_bands,
            bands,
            gsd,
            widths,
            decoys,
            band_shuffle,
            size_negatives,
            members,
        } => train_cmd::run(train_cmd::TrainArgs {
            members: members as usize,
            target_gsd_m: match gsd {
                Some(g) if !(g.is_finite() && g > 0.0) => anyhow::bail!("--gsd takes a ground sample distance in metres above 0 (got {g})"),
                g => g,
            },
            bands: {
                if !(0.0..=0.5).contains(&scale_jitter) || !(0.0..=0.5).contains(&colour_jitter) {
                    anyhow::bail!("--scale-jitter and --colour-jitter take a fraction from 0 to 0.5 (got {scale_jitter} and {colour_jitter})");
                }
                if !(0.0..=1.0).contains(&decoys) || !(0.0..=1.0).contains(&band_shuffle) || size_negatives.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
                    anyhow::bail!("--decoys, --band-shuffle and --size-negatives take a share from 0 to 1 (got {decoys}, {band_shuffle} and {})", size_negatives.unwrap_or_default());
                }
                if bands.contains(&0) || height_bands.contains(&0) {
                    anyhow::bail!("--bands and --height-bands count from 1");
                }
                (!bands.is_empty()).then(|| bands.iter().map(|b| b - 1).collect())
            },
            colour: {
                colour.parse::<kestrel_samples::normalize::ColourMethod>().map_err(anyhow::Error::msg)?.with_heights(height_bands.iter().map(|b| b - 1).collect())
            },
            project: &target.project,
            class: &target.class,
            output: &target.output,
            validate_on: validate_on.as_deref(),
            options: kestrel_model::train::TrainOptions {
                epochs,
                batch_size: batch,
                learning_rate,
                seed,
                patience,
                average_decay,
                scale_jitter,
                colour_jitter,
                widths: match kestrel_model::network::checked_widths(&widths) {
                    Some(w) => w,
                    None => anyhow::bail!("--widths takes three channel counts from 1 to 512, e.g. 16,32,64 (got {widths:?})"),
                },
                decoys,
                band_shuffle,
                size_negatives,
                ..Default::default()
            },
            negatives,
            json,
            resume,
            mine_rounds,
            mine_per_image,
        }),
        Command::Export {
            project,
            output,
            class,
        } => samples_cmd::export(&project, &output, class.as_deref()),
        Command::Chips {
            target,
            gsd,
            negatives,
            bands,
            colour,
        } => samples_cmd::chips(
            &target.project,
            &target.class,
            &target.output,
            gsd,
            negatives,
            bands.as_deref(),
            colour.parse().map_err(anyhow::Error::msg)?,
        ),
    }
}

fn ensemble(models: &[PathBuf], output: &PathBuf) -> Result<()> {
    let metas = kestrel_model::package::save_ensemble(output, models)?;
    let threshold = kestrel_model::package::ensemble_default_threshold(&metas).unwrap_or(0.5);
    println!(
        "{}: an ensemble of {} networks of class {} (default threshold {threshold:.3}, the mean of theirs: {})",
        output.display(),
        metas.len(),
        metas[0].classes.join(", "),
        metas.iter().map(|m| format!("{:.3}", m.default_threshold())).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

fn info(path: &PathBuf, json: bool, gsd: Option<f64>) -> Result<()> {
    if kestrel_model::package::is_package(path) {
        let metas = kestrel_model::package::read_metas(path)?;
        let v = if let [meta] = metas.as_slice() {
            let mut v = serde_json::to_value(meta)?;
            v["kind"] = serde_json::json!("model");
            v
        } else {
            serde_json::json!({
                "kind": "ensemble",
                "classes": metas[0].classes,
                "contract": metas[0].contract,
                "default_threshold": kestrel_model::package::ensemble_default_threshold(&metas),
                "members": metas,
            })
        };
        println!(
            "{}",
            if json {
                serde_json::to_string_pretty(&v)?
            } else {
                progress::as_text(&v)
            }
        );
        return Ok(());
    }
    let remote = path.to_str().is_some_and(kestrel_geo::raster::is_remote);
    let kind = if remote {
        FileKind::Raster
    } else {
        sniff(path)?
    };
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
        FileKind::GeoPackage => {
            serde_json::to_value(kestrel_geo::vector::describe_geopackage(path)?)?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", progress::as_text(&value));
    }
    Ok(())
}
