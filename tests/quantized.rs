//! A run whose model has `weights = "q8_0"`: simulation, evaluation samples and the LM judge
//! run it with Q8_0 matrices, the distilled policy trains from `f32` weights and samples in
//! Q8_0 too, and the run ends with a win-rate table.

mod common;

use std::fs;
use std::path::PathBuf;

#[test]
fn a_q8_run_simulates_samples_and_judges_with_quantized_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prompt-templates");
    let recipe = tmp.path().join("q8.toml");
    fs::write(
        &recipe,
        format!(
            "name = \"q8-test\"\nseed = 3\ntemplates_dir = {:?}\n\n\
             [models.sim]\npreset = \"world-xs\"\nweights = \"q8_0\"\n\n\
             [world]\ndocuments = 400\nprompts_train = 16\nprompts_test = 8\n\n\
             [pretrain]\nsteps = 40\nheldout_documents = 20\n\n\
             [pretrain.report]\nprompts = 4\npairs = 4\nmax_new_tokens = 8\n\n\
             [tasks.helpful]\nprompts = \"world:helpful\"\ntemplates = \"helpful\"\naxes = [\"help\"]\n\n\
             [simulate]\nn_prompts = 8\nmax_new_tokens = 16\nretries = 1\nbatch_size = 8\n\n\
             [distill]\nepochs = 1\nbatch_size = 4\n\n\
             [methods.distilled]\nkind = \"context-distillation\"\nsimulator = \"sim\"\npolicy = \"sim\"\n\n\
             [methods.base]\nkind = \"base\"\npolicy = \"sim\"\n\n\
             [eval]\njudges = [\"lm:sim\"]\ncomparisons = [[\"distilled\", \"base\"]]\n\
             n_prompts = 8\nmax_new_tokens = 16\n",
            templates.display().to_string()
        ),
    )
    .unwrap();
    common::rlcd_ok(
        tmp.path(),
        &["run".as_ref(), "--quiet".as_ref(), recipe.as_os_str()],
    );
    let runs = tmp.path().join("results/runs/q8-test");
    let run = fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    let plan: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("plan.json")).unwrap()).unwrap();
    let config = |id: &str| -> String {
        plan["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no stage {id}"))["config"]
            .to_string()
    };
    for id in [
        "simulate/sim/helpful/rlcd",
        "generate/distilled/helpful",
        "generate/base/helpful",
        "judge/lm-sim/helpful",
    ] {
        assert!(
            config(id).contains(r#""weights":"q8_0""#),
            "{id}: {}",
            config(id)
        );
    }
    assert!(!config("policy/distilled/helpful").contains("q8_0"));
    let table = fs::read_to_string(run.join("tables/winrates.csv")).unwrap();
    assert!(
        table.lines().count() >= 2,
        "an empty win-rate table: {table}"
    );
    assert!(table.contains("distilled"), "{table}");
}
