//! `sample`, `evolve` and `derive` on a chain run: uniform draws and evolution (top-k or
//! NSGA-II) under hard latency, multiply-add and parameter limits, scored with inherited
//! weights; the argmax architecture of the last alphas with its costs.
use super::subnet::{
    evolve_config, evolve_files, refuse_flags, DeriveArgs, EvolveArgs, SampleArgs, ScoreArgs,
};
use crate::derive::RuleArg;
use crate::run::RunDir;
use crate::sample::chain_score::ChainScore;
use crate::sample::{SampleFrom, ScoreKind};

/// The first of `refused` (a flag and whether it was given) that was given, as an error
/// saying what a chain run is scored with.
fn refuse_on_chain(score: &ScoreArgs, refused: &[(&str, bool)]) -> anyhow::Result<()> {
    let scoring = [
        ("--score", score.score != ScoreKind::Inherited),
        ("--few-shot", score.few_shot.is_some()),
    ];
    if let Some((flag, _)) = scoring.iter().chain(refused).find(|(_, given)| *given) {
        anyhow::bail!(
            "{flag}: a chain run's architectures are drawn uniformly and scored with inherited weights only"
        );
    }
    Ok(())
}

/// A chain run attached for results, its supernet loaded from the last checkpoint.
fn load_chain(score: &ScoreArgs) -> anyhow::Result<(RunDir, crate::search::TrainedChain)> {
    let dir = RunDir::attach(&score.run)?;
    let trained = crate::search::load_trained_chain(dir.path())?;
    // The run's own thread setting was applied by the load: the flag overrides it.
    if let Some(t) = score.threads.filter(|&t| t > 0) {
        tch::set_num_threads(t as i32);
    }
    Ok((dir, trained))
}

/// One scored chain architecture as a line, after `label` (its row or generation).
fn chain_line(label: &str, s: &ChainScore, pareto: bool) -> String {
    let lat = s
        .latency_ms
        .map_or(String::new(), |l| format!("  {l:.3} ms"));
    format!(
        "{label}  acc {:6.2}%  loss {:.4}  params {:>8}  MACs {:>11}{lat}{}  {}",
        100.0 * s.accuracy,
        s.loss,
        s.params,
        s.macs,
        if pareto { "  pareto" } else { "" },
        s.arch
    )
}

/// `evolve` on a chain run: SPOS or NSGA-II evolution under hard limits.
pub(super) fn evolve_chain(a: EvolveArgs) -> anyhow::Result<()> {
    refuse_on_chain(&a.score, &[])?;
    let (dir, trained) = load_chain(&a.score)?;
    let cfg = crate::sample::chain_evolve::ChainEvolveConfig {
        evolve: evolve_config(&a),
        latency_table: a.latency.latency_table.clone(),
        max_latency_ms: a.latency.max_latency_ms,
        pareto: a.pareto,
        bn: a.score.bn.unwrap_or_default(),
        max_batches: a.score.batches,
    };
    let quiet = a.score.quiet;
    let r = crate::sample::chain_evolve::evolve_chain(&dir, &trained, &cfg, |g, s| {
        if !quiet {
            eprintln!("{}", chain_line(&format!("gen {g:>3}"), s, false));
        }
    })?;
    let best = &r.history[r.best].1;
    println!("{}", best.arch);
    eprintln!(
        "Pareto front of {} candidates (accuracy against {}), by increasing cost:",
        r.history.len(),
        r.cost_name
    );
    for &i in &r.front {
        eprintln!("{}", chain_line(&format!("{i:>4}"), &r.history[i].1, true));
    }
    eprintln!(
        "best of {} candidates ({} over a limit): accuracy {:.2}%, loss {:.4}, {} parameters, {} MACs; {}",
        r.history.len(),
        r.rejected,
        100.0 * best.accuracy,
        best.loss,
        best.params,
        best.macs,
        evolve_files(&a.score.run, &r.group, &[&r.csv, &r.best_text, &r.best_json])
    );
    Ok(())
}

/// `sample` on a chain run: inherited-weight scores under hard limits, the Pareto front.
pub(super) fn sample_chain(a: SampleArgs) -> anyhow::Result<()> {
    refuse_on_chain(
        &a.score,
        &[
            ("--with-derived", a.with_derived),
            ("--from", a.from != SampleFrom::Uniform),
        ],
    )?;
    let (dir, trained) = load_chain(&a.score)?;
    let bn = a.score.bn.unwrap_or_default();
    let limits = crate::sample::chain_score::ChainLimits {
        latency_table: a.latency.latency_table.clone(),
        max_latency_ms: a.latency.max_latency_ms,
        max_macs: a.max_macs,
        max_params: a.max_params,
    };
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("uniform-{}-seed{}", bn.name().replace(':', ""), a.seed));
    let r = crate::sample::chain::sample_chain(
        &dir,
        &trained,
        a.n,
        a.seed,
        &limits,
        bn,
        a.score.batches,
        &name,
    )?;
    if !a.score.quiet {
        for (i, (s, p)) in r.scores.iter().zip(&r.pareto).enumerate() {
            eprintln!("{}", chain_line(&format!("{i:>4}"), s, *p));
        }
    }
    if r.scores.len() < a.n {
        eprintln!(
            "only {} distinct architectures within the limits in {} draws ({} over a limit)",
            r.scores.len(),
            20 * a.n,
            r.rejected
        );
    }
    eprintln!(
        "{} architectures scored, {} on the Pareto front: {}/run.h5 /{}, {}",
        r.scores.len(),
        r.pareto.iter().filter(|p| **p).count(),
        a.score.run.display(),
        r.group,
        r.csv.display()
    );
    Ok(())
}

/// `derive` on a chain run: per layer the argmax of the last recorded alphas, written as
/// RUN/genotype-argmax.{txt,json}, with its costs against the search's hardware targets.
pub(super) fn derive_chain(a: DeriveArgs) -> anyhow::Result<()> {
    if let Some(rule) = a.rule.filter(|&r| r != RuleArg::Argmax) {
        anyhow::bail!(
            "--rule {}: a cell-space rule; {} is a chain run, derived by --rule argmax (per layer its strongest choice)",
            rule.name(),
            a.score.run.display()
        );
    }
    refuse_flags(
        &[
            ("--max-skip", a.max_skip.is_some()),
            ("--tune-steps", a.tune_steps.is_some()),
        ],
        "cell",
        &a.score.run,
    )?;
    let dir = RunDir::attach(&a.score.run)?;
    let d = crate::search::chain_derive::derive_chain_run(dir.path())?;
    let (txt, json) = dir.write_chain_arch("genotype-argmax", &d.arch)?;
    println!("{}", d.arch);
    for c in &d.costs {
        let target = match c.target {
            Some(t) if c.value > t => {
                format!(" (target {t}: over by {:.1}%)", 100.0 * (c.value / t - 1.0))
            }
            Some(t) => format!(" (target {t}: within)"),
            None => String::new(),
        };
        eprintln!("{} {}{target}", c.name, c.value);
    }
    eprintln!(
        "derived from the alphas recorded at step {}; written {}, {}",
        d.step,
        txt.display(),
        json.display()
    );
    Ok(())
}
