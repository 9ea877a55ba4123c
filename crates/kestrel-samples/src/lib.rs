//! Kestrel's samples: the project store (SQLite) of images, classes and positive/negative
//! samples; label import and export; the normalization contract (scale, colour, rotation);
//! normalized training chips; and synthetic scenes with known objects.
//!
//! It reads imagery through `kestrel-geo` and knows nothing of networks or detection.

pub mod chips;
pub mod dataset;
pub mod export;
pub mod labels;
pub mod normalize;
pub mod parallel;
pub mod sample;
pub mod store;
pub mod synthetic;

pub use sample::{HeadingMode, Origin, Polarity, Sample, Shape};
pub use store::{Project, StoreError};
