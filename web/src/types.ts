// Shapes of the JSON exchanged with `kestrel serve` (see the HTTP API contract).

export type HeadingMode = 'directed' | 'axis';
export type Polarity = 'positive' | 'negative';

export interface Project {
  name: string;
  dir: string;
  demo: boolean;
  image_roots: string[];
  token_required: boolean;
}

export interface TileInfo {
  size: number;
  origin: [number, number];
  resolutions: number[];
}

export interface ImageView {
  id: number;
  uri: string;
  name: string;
  width: number;
  height: number;
  bands: number;
  data_type: string;
  crs: string | null;
  epsg: number | null;
  gsd_m: number | null;
  georeferenced: boolean;
  projection: string;
  map_units: 'm' | 'degrees' | 'pixels' | string;
  pixel_to_map: [number, number, number, number, number, number];
  extent: [number, number, number, number];
  tiles: TileInfo;
  samples: number;
  /** The point cloud attached to the image (same CRS), if any. */
  cloud?: string | null;
  /** Raster layers derived from the point cloud (empty without one); tiles on the image's grid. */
  layers?: HeightLayerInfo[];
}

/** A coloured layer of the image: `GET /api/images/{id}/layers/{name}/tiles/{z}/{x}/{y}.png[?max=]`. */
export interface HeightLayerInfo {
  name: string;
  title: string;
  unit: string;
  /** Top of the colour ramp by default (in `unit`). */
  max: number;
}

export interface BandStats {
  band: number;
  min: number;
  max: number;
  p2: number;
  p98: number;
  mean: number;
}

export interface ImageStats {
  bands: BandStats[];
  data_type: string;
}

export interface ClassInfo {
  id: number;
  name: string;
  heading_mode: HeadingMode;
  color: string;
  samples?: { positive: number; negative: number };
}

export interface OrientedBox {
  kind: 'oriented_box';
  cx: number;
  cy: number;
  length: number;
  width: number;
  heading_deg: number;
}

export interface AxisBox {
  kind: 'axis_box';
  cx: number;
  cy: number;
  w: number;
  h: number;
}

export interface PointShape {
  kind: 'point';
  x: number;
  y: number;
  heading_deg: number | null;
}

export type Shape = OrientedBox | AxisBox | PointShape;

export type Origin = 'drawn' | 'imported' | 'auto_negative' | 'accepted_detection' | 'rejected_detection';

export interface Sample {
  id: number;
  image_id: number;
  class_id: number;
  polarity: Polarity;
  shape: Shape;
  heading_mode: HeadingMode;
  origin: Origin;
  version: number;
  created_at?: string;
  updated_at?: string;
}

export interface ModelInfo {
  id: string;
  class: string;
  created_unix_s: number;
  f1: number | null;
  precision: number | null;
  recall: number | null;
  default_threshold: number | null;
  /** Networks in the package: more than one for an ensemble, which detects with all of them. */
  members?: number;
  positives: number;
  negatives: number;
  epochs: number;
  gsd_m?: number;
  heading_mode?: HeadingMode;
  /** Bands the model reads, 1-based, in the order it reads them. */
  bands?: number[];
  /** Those of `bands` it reads as heights in metres (an nDSM). */
  height_bands?: number[];
  metrics?: EpochMetrics[];
}

export type ColourMethod = 'quantile' | 'stretch';

/** Options of `POST /api/jobs/train` besides the class and the epochs. */
export interface TrainOptions {
  /** 1-based bands the network reads, ascending; null: the default (the first three). */
  bands: number[] | null;
  /** Among `bands`: heights in metres, kept in metres instead of colour-normalized. */
  height_bands: number[];
  colour: ColourMethod;
  mine_rounds: number;
  /** Ground sample distance (m) the network works at; null: the positives' median. */
  gsd_m: number | null;
  /** Channels of the network's stem and two stages. */
  widths: [number, number, number];
  /** Networks trained with other seeds into one ensemble package (1: one network). */
  members: number;
}

export interface EpochMetrics {
  epoch: number;
  train_loss: number | null;
  val_loss: number | null;
  precision: number | null;
  recall: number | null;
  f1: number | null;
  heading_error_deg?: number | null;
}

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface Job {
  id: number;
  kind: 'train' | 'detect';
  state: JobState;
  progress: number;
  message: string;
  epochs: EpochMetrics[];
  result: { model_id?: string; image_id?: number; detections?: number; threshold?: number | null } | null;
  error: string | null;
  created_at?: string;
  finished_at?: string | null;
}

export type DetectionStatus = 'pending' | 'accepted' | 'rejected';

export interface Detection {
  id: number;
  image_id: number;
  class_id: number;
  model_id: string;
  shape: OrientedBox;
  score: number;
  match_score: number | null;
  status: DetectionStatus;
  sample_id: number | null;
  version: number;
}

export interface ReviewResult {
  detection: Detection;
  sample?: Sample;
}

export function isTerminal(state: JobState): boolean {
  return state === 'done' || state === 'failed' || state === 'cancelled';
}
