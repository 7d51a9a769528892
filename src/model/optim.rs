//! AdamW, the optimizer of every trainer in the pipeline (pretraining, the preference model of
//! paper §3, PPO and its value model, context distillation, judge tuning). On the Flex CPU
//! backend each parameter's update is one pass over all cores, bit-identical to burn's AdamW;
//! other backends run burn's AdamW itself. Its state and saved records are burn's
//! ([`AdamWState`]), so checkpoints of either load into the other.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamWState, AdaptiveMomentumState, LearningRate, SimpleOptimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

use super::kernels::{self, AdamWScalars};

/// AdamW's settings (the defaults are burn's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// Decay of the first moment estimate.
    pub beta_1: f32,
    /// Decay of the second moment estimate.
    pub beta_2: f32,
    /// Added to the second moment's square root, for numerical stability.
    pub epsilon: f32,
    /// Decoupled weight decay λ: each step multiplies the parameters by `1 - lr·λ`.
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            weight_decay: 1e-4,
        }
    }
}

impl AdamWConfig {
    /// burn's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `beta_1`.
    pub fn with_beta_1(self, beta_1: f32) -> Self {
        Self { beta_1, ..self }
    }

    /// With `beta_2`.
    pub fn with_beta_2(self, beta_2: f32) -> Self {
        Self { beta_2, ..self }
    }

    /// With `epsilon`.
    pub fn with_epsilon(self, epsilon: f32) -> Self {
        Self { epsilon, ..self }
    }

    /// With `weight_decay`.
    pub fn with_weight_decay(self, weight_decay: f32) -> Self {
        Self {
            weight_decay,
            ..self
        }
    }

    /// The optimizer of module `M`'s parameters.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(&self) -> OptimizerAdaptor<AdamW, M, B> {
        OptimizerAdaptor::from(AdamW {
            config: *self,
            burn: burn::optim::AdamWConfig::new()
                .with_beta_1(self.beta_1)
                .with_beta_2(self.beta_2)
                .with_epsilon(self.epsilon)
                .with_weight_decay(self.weight_decay)
                .build(),
        })
    }
}

/// AdamW (see [`AdamWConfig`]).
#[derive(Clone)]
pub struct AdamW {
    config: AdamWConfig,
    /// burn's AdamW with the same settings, for backends other than Flex.
    burn: burn::optim::AdamW,
}

impl<B: Backend> SimpleOptimizer<B> for AdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let time = state.as_ref().map_or(0, |s| s.momentum.time);
        let c = self.config;
        let scalars = AdamWScalars::new(
            [c.beta_1, c.beta_2, c.epsilon, c.weight_decay],
            time + 1,
            lr,
        );
        let moments = state.map(|s| [s.momentum.moment_1, s.momentum.moment_2]);
        match kernels::adamw((tensor, grad, moments), &scalars) {
            Ok([tensor, moment_1, moment_2]) => {
                let momentum = AdaptiveMomentumState::new(time + 1, moment_1, moment_2);
                (tensor, Some(AdamWState::new(momentum)))
            }
            Err((tensor, grad, moments)) => {
                let state =
                    moments.map(|[m, v]| AdamWState::new(AdaptiveMomentumState::new(time, m, v)));
                self.burn.step(lr, tensor, grad, state)
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <burn::optim::AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::module::{Module, Param};
    use burn::optim::{GradientsParams, Optimizer};
    use burn::tensor::backend::Backend;
    use burn::tensor::{Distribution, Tensor};

    use super::AdamWConfig;

    type Ad = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Two<B: Backend> {
        w: Param<Tensor<B, 2>>,
        b: Param<Tensor<B, 1>>,
    }

    fn loss(m: &Two<Ad>, x: &Tensor<Ad, 2>) -> Tensor<Ad, 1> {
        let y = x.clone().matmul(m.w.val()) + m.b.val().unsqueeze();
        (y.clone() * y.tanh()).mean()
    }

    fn values(m: &Two<Ad>) -> Vec<u32> {
        let w = m.w.val().into_data().to_vec::<f32>().unwrap();
        let b = m.b.val().into_data().to_vec::<f32>().unwrap();
        w.into_iter().chain(b).map(f32::to_bits).collect()
    }

    /// Steps of this AdamW and of burn's, from the same parameters and gradients, give the same
    /// bits, with and without weight decay, over enough elements for several tasks and with a
    /// saved record between steps (which shares the moments' buffers).
    #[test]
    fn equals_burns_adamw_bit_for_bit() {
        let device = Default::default();
        let x = Tensor::<Ad, 2>::random([8, 300], Distribution::Normal(0.0, 1.0), &device);
        let init = Two {
            w: Param::from_tensor(Tensor::random(
                [300, 200],
                Distribution::Normal(0.0, 0.05),
                &device,
            )),
            b: Param::from_tensor(Tensor::zeros([200], &device)),
        };
        for (decay, eps) in [(0.0, 1e-8), (0.1, 1e-5)] {
            let config = AdamWConfig::new()
                .with_beta_2(0.95)
                .with_epsilon(eps)
                .with_weight_decay(decay);
            let mut ours = config.init::<Ad, Two<Ad>>();
            let mut theirs = burn::optim::AdamWConfig::new()
                .with_beta_2(0.95)
                .with_epsilon(eps)
                .with_weight_decay(decay)
                .init::<Ad, Two<Ad>>();
            let (mut a, mut b) = (init.clone(), init.clone());
            let mut saved = None;
            for step in 0..4 {
                let lr = 1e-2 / (1 + step) as f64;
                let ga = GradientsParams::from_grads(loss(&a, &x).backward(), &a);
                let gb = GradientsParams::from_grads(loss(&b, &x).backward(), &b);
                a = ours.step(lr, a, ga);
                b = theirs.step(lr, b, gb);
                if step == 1 {
                    // Kept over the next step, so its moments are shared then.
                    saved = Some(ours.to_record());
                }
                let (va, vb) = (values(&a), values(&b));
                let differ = va.iter().zip(&vb).filter(|(p, q)| p != q).count();
                assert_eq!(
                    differ, 0,
                    "step {step}, decay {decay}: {differ} values differ"
                );
            }
            assert!(saved.is_some());
            assert_ne!(
                values(&a),
                values(&init),
                "the steps changed the parameters"
            );
        }
    }
}
