//! Fixtures shared by the integration tests that need a small trained world model.

use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::Backend;
use rlcd::model::Lm;
use rlcd::stages::pretrain::{PretrainConfig, WorldPretrain, load_world_lm, pretrain_world};
use rlcd::templates::Templates;
use rlcd::world::World;

/// The project's prompt templates.
pub fn templates() -> Templates {
    Templates::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("prompt-templates"))
        .expect("templates")
}

/// world-xs pretrained for 40 steps on `world`'s corpus (seed `seed`; a few seconds) on the
/// CPU, loaded on backend `B`.
pub fn world_xs<B: Backend>(world: &World, templates: &Templates, seed: u64) -> Lm<B> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = PretrainConfig::for_preset("world-xs").expect("preset");
    config.steps = 40;
    let job = WorldPretrain {
        world,
        templates,
        preset: "world-xs",
        config,
        heldout_documents: 0,
        seed,
    };
    let t = Instant::now();
    pretrain_world::<burn::backend::Autodiff<rlcd::model::Cpu>>(
        &job,
        &Default::default(),
        dir.path(),
        &mut |_, _| {},
    )
    .expect("pretraining");
    eprintln!("world-xs pretrained in {:.1}s", t.elapsed().as_secs_f64());
    load_world_lm(dir.path(), &Default::default()).expect("load")
}
