//! An exponential moving average of a model's weights (Polyak averaging), kept in a second,
//! frozen store of the same variables. The last iterate of a short, high-learning-rate run moves
//! a lot from step to step; the average over the last few hundred steps is a steadier model
//! (DDPM sampling, DANN's saved model).

use std::collections::HashMap;

use tch::{nn, Tensor};

use super::state::{restore_store, StateError, TrainingState};

/// `store` follows a live store as `average = decay * average + (1 - decay) * weights` after
/// every step; buffers (batch-norm statistics) are copied, not averaged.
pub struct MovingAverage {
    pub store: nn::VarStore,
    decay: f64,
    /// (average, live) pairs, matched by name once: the step loop then touches no maps.
    pairs: Vec<(Tensor, Tensor)>,
}

impl MovingAverage {
    /// `store` must hold the same variables as `live` (built by the same constructor); it
    /// starts as a copy of `live` and is frozen.
    pub fn new(mut store: nn::VarStore, live: &nn::VarStore, decay: f64) -> Self {
        store.freeze();
        let weights = live.variables();
        let pairs: Vec<(Tensor, Tensor)> = store
            .variables()
            .into_iter()
            .filter_map(|(name, average)| Some((average, weights.get(&name)?.shallow_clone())))
            .collect();
        tch::no_grad(|| {
            for (average, value) in &pairs {
                average.shallow_clone().copy_(value);
            }
        });
        MovingAverage {
            store,
            decay,
            pairs,
        }
    }

    /// One step of the average towards the live store's current weights.
    pub fn update(&self) {
        tch::no_grad(|| {
            for (average, value) in &self.pairs {
                let mut average = average.shallow_clone();
                if value.requires_grad() {
                    average.copy_(&(&average * self.decay + value * (1.0 - self.decay)));
                } else {
                    average.copy_(value);
                }
            }
        });
    }

    pub fn save_state(&self, key: &str, state: &mut TrainingState) {
        state.add_store(key, &self.store);
    }

    pub fn load_state(&self, key: &str, state: &HashMap<String, Tensor>) -> Result<(), StateError> {
        restore_store(&self.store, key, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn store() -> nn::VarStore {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = nn::linear(vs.root() / "fc", 3, 2, Default::default());
        let _ = nn::batch_norm1d(vs.root() / "bn", 2, Default::default());
        vs
    }

    #[test]
    fn the_average_starts_equal_then_moves_by_one_minus_decay() {
        let live = store();
        let average = MovingAverage::new(store(), &live, 0.75);
        let name = "fc.bias";
        assert!(average.store.variables()[name].equal(&live.variables()[name]));
        let before = live.variables()[name].copy();
        tch::no_grad(|| {
            let _ = live.variables()[name].shallow_clone().fill_(1.0);
            let _ = live.variables()["bn.running_mean"]
                .shallow_clone()
                .fill_(3.0);
        });
        average.update();
        let expected = before * 0.75 + 0.25;
        let averaged = &average.store.variables()[name];
        assert!(averaged.allclose(&expected, 1e-6, 1e-6, false));
        assert!(!averaged.requires_grad());
        // Buffers follow the live model exactly.
        let running = &average.store.variables()["bn.running_mean"];
        assert!(running.equal(&live.variables()["bn.running_mean"]));
    }
}
