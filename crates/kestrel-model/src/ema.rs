//! An exponential moving average of a network's weights (and batch-norm running statistics).
//!
//! Why: validation F1 of a single step's weights swings by several points from epoch to
//! epoch on a street the network never saw (the decision boundary moves with every batch);
//! the average of the recent weights sits in a flatter region and transfers better. The
//! average is what validation scores, what early stopping keeps, and what the package ships.

use crate::network::Network;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;
use std::collections::VecDeque;

/// Collects every float tensor of a module, flattened, in traversal order. Order, not
/// parameter ids, pairs the tensors of two networks: weights loaded from a checkpoint carry
/// fresh ids, but two networks of one architecture are always traversed alike.
struct Collect(VecDeque<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.0.push_back(t.reshape([n]));
    }
}

/// Moves every float tensor towards the collected one: `avg ← decay·avg + (1 − decay)·new`.
struct Blend {
    current: VecDeque<Tensor<1>>,
    decay: f32,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let decay = self.decay;
        match self.current.pop_front() {
            Some(new) => param.map(|avg| {
                let dims = avg.dims();
                avg * decay + new.reshape(dims) * (1.0 - decay)
            }),
            None => param,
        }
    }
}

/// The running average of a network trained elsewhere. Hand out `model.valid()`, not a clone:
/// clones share batch-norm running statistics with the average.
/// The decay of the `steps`-th update: warming up from 0.18 (the first weights count most
/// while the average holds little) to `max_decay`.
pub(crate) fn decay_at(steps: u64, max_decay: f32) -> f32 {
    let warm = (1.0 + steps as f32) / (10.0 + steps as f32);
    warm.min(max_decay)
}

pub struct WeightAverage {
    pub model: Network,
    steps: u64,
    /// Decay once warmed up; early steps use less so the average does not drag the random
    /// initialization along.
    pub max_decay: f32,
}

impl WeightAverage {
    /// Starts from `model` (inference copy; parameter ids are shared with the trained one).
    pub fn new(model: Network, max_decay: f32) -> Self {
        // `valid` copies the batch-norm running statistics, which clones would share.
        WeightAverage {
            model: model.valid(),
            steps: 0,
            max_decay,
        }
    }

    /// Resumes an average that has already seen `steps` updates.
    pub fn resumed(model: Network, max_decay: f32, steps: u64) -> Self {
        WeightAverage {
            model,
            steps,
            max_decay,
        }
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Folds the current weights of `trained` (its inference copy) into the average.
    pub fn update(&mut self, trained: &Network) {
        let mut collect = Collect(VecDeque::new());
        trained.visit(&mut collect);
        self.steps += 1;
        let mut blend = Blend {
            current: collect.0,
            decay: decay_at(self.steps, self.max_decay),
        };
        // A module's running statistics sit behind a shared lock that `map` writes through:
        // map a copy (`valid`), so that models handed out earlier (the best so far) keep theirs.
        self.model = self.model.valid().map(&mut blend);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::NetworkConfig;
    use burn::tensor::Device;

    fn first_weights(n: &Network) -> Vec<f32> {
        let mut c = Collect(VecDeque::new());
        n.visit(&mut c);
        c.0.into_iter()
            .flat_map(|t| t.into_data().try_to_vec::<f32>().unwrap())
            .collect()
    }

    #[test]
    fn the_average_moves_towards_the_trained_weights_by_one_minus_decay() {
        let device = Device::default();
        let a = NetworkConfig::new(3, 1).init(&device);
        // Other values, as after an optimizer step.
        let b = a.valid();
        let mut shift = Collect(VecDeque::new());
        b.visit(&mut shift);
        let shifted: VecDeque<Tensor<1>> = shift.0.into_iter().map(|t| t + 1.0).collect();
        let b = b.map(&mut Blend {
            current: shifted,
            decay: 0.0,
        });
        let mut avg = WeightAverage::new(a.clone(), 0.5);
        let handed_out = avg.model.valid();
        let before = first_weights(&handed_out);
        // Step 1 of the warm-up uses decay (1 + 1) / (10 + 1).
        avg.update(&b);
        let (wa, wavg) = (first_weights(&a), first_weights(&avg.model));
        let decay = 2.0 / 11.0;
        for (x, y) in wa.iter().zip(&wavg) {
            assert!(
                (y - (x * decay + (x + 1.0) * (1.0 - decay))).abs() < 1e-5,
                "{x} → {y}"
            );
        }
        // Warmed up, the decay is capped at max_decay.
        for _ in 0..50 {
            avg.update(&b);
        }
        for (x, y) in wa.iter().zip(first_weights(&avg.model)) {
            assert!(
                (y - (x + 1.0)).abs() < 1e-4,
                "after many updates the average is the trained weights: {x} → {y}"
            );
        }
        assert_eq!(avg.steps(), 51);
        assert_eq!(
            first_weights(&handed_out),
            before,
            "a model handed out earlier is not changed by later updates"
        );
    }
}
