//! Kestrel's detection: the trained network run densely over normalized tiles (it is fully
//! convolutional, so one forward pass scores every output cell of a tile), peaks of the
//! objectness map turned into candidates with heading and size, and hard-negative mining,
//! which is detection over the labelled images of a training set.

pub mod calibrate;
pub mod detect;
pub mod eval;
pub mod geometry;
pub mod mine;
pub mod robustness;
pub mod scan;
