//! Kestrel's model: the network, its training loop, and the model package that carries the
//! weights together with the normalization contract detection replays.
//!
//! It knows chips and tensors, not files of imagery (those come through `kestrel-samples`).

pub mod bench;
pub mod device;
pub mod ema;
pub mod infer;
pub mod network;
pub mod package;
pub mod train;
pub mod train_cpu;
