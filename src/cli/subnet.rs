//! `supernet sample`, `supernet evolve` and `supernet derive`: sub-networks of a trained
//! supernet, scored with the weights they inherit.
use super::args::{bn_parser, rule_parser, score_parser};
use crate::derive::RuleArg;
use crate::run::RunDir;
use crate::sample::{ArchScore, BnMode, SampleFrom, ScoreKind, Scorer};
use std::path::PathBuf;
use std::sync::Arc;

/// A run attached for scoring, and the data-parallel group when a launcher started this
/// process as one rank of several (ranks other than 0 read the run and write nothing).
pub struct Attached {
    dir: RunDir,
    group: Option<Arc<crate::distrib::Group>>,
}

impl Attached {
    /// Whether this process reports and writes (a single process, or rank 0).
    fn root(&self) -> bool {
        self.group.as_ref().is_none_or(|g| g.is_root())
    }
}

/// How sub-networks are scored (shared by sample, evolve and derive).
#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    /// Run directory (a finished or interrupted search: config.toml, checkpoint, run.h5).
    #[arg(long)]
    pub run: PathBuf,
    /// What scores a sub-network: its validation accuracy with the weights it inherits, or
    /// a zero-cost proxy of a freshly initialised stand-alone network on one training batch.
    #[arg(long, default_value = "inherited", value_parser = score_parser())]
    pub score: ScoreKind,
    /// The few-shot set (`supernet few-shot --name`) `--score few-shot` inherits from;
    /// implies `--score few-shot` [default: the run's only set].
    #[arg(long, value_name = "NAME")]
    pub few_shot: Option<String>,
    /// BN statistics the sub-networks are evaluated with (`--score inherited` only)
    /// [default: recalibrate:10].
    #[arg(long, value_parser = bn_parser())]
    pub bn: Option<BnMode>,
    /// Score on at most this many evaluation batches of the architecture half
    /// (`--score inherited` only) [default: all].
    #[arg(long)]
    pub batches: Option<usize>,
    /// CPU threads for libtorch [default: the run's setting]. Give each of several
    /// concurrent jobs a share of the cores: oversubscribed threads are many times slower.
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

impl ScoreArgs {
    /// The run, held to add results to it (refused at once, before the supernet is loaded,
    /// when they could not be written: the run busy, unreadable or its disk full).
    fn attach(&self) -> anyhow::Result<Attached> {
        let group = match crate::distrib::from_env()? {
            Some(launch) => Some(Arc::new(crate::distrib::Group::join(launch)?)),
            None => None,
        };
        let dir = match &group {
            Some(g) if !g.is_root() => RunDir::follower(&self.run)?,
            _ => RunDir::attach(&self.run)?,
        };
        Ok(Attached { dir, group })
    }

    /// The supernet of the attached run, ready to score (on every rank of a group).
    fn scorer(&self, at: &Attached) -> anyhow::Result<Scorer> {
        if let Some(proxy) = self.score.proxy() {
            let inherited_only = [
                ("--bn", self.bn.map(BnMode::name)),
                ("--batches", self.batches.map(|b| b.to_string())),
            ];
            if let Some((flag, value)) = inherited_only.iter().find(|(_, v)| v.is_some()) {
                return Err(crate::Error::invalid(
                    *flag,
                    value.as_deref().unwrap_or_default(),
                    format!(
                        "no {flag} with --score {}: it applies to --score inherited only",
                        proxy.name()
                    ),
                )
                .into());
            }
        }
        if let (Some(proxy), Some(name)) = (self.score.proxy(), &self.few_shot) {
            return Err(crate::Error::invalid(
                "--few-shot",
                name,
                format!("no --few-shot with --score {}", proxy.name()),
            )
            .into());
        }
        let bn = self.bn.unwrap_or_default();
        let scorer = Scorer::open(at.dir.path(), bn, self.batches)?;
        let mut scorer = if self.score == ScoreKind::FewShot || self.few_shot.is_some() {
            scorer.with_few_shot(at.dir.path(), self.few_shot.as_deref())?
        } else {
            scorer.with_score(self.score)
        };
        scorer.st.dist = at.group.clone();
        if let Some(t) = self.threads.filter(|&t| t > 0) {
            tch::set_num_threads(t as i32);
        }
        Ok(scorer)
    }

    fn progress(&self, at: &Attached) -> impl FnMut(usize, &ArchScore) + '_ {
        let show = !self.quiet && at.root();
        move |i, s| {
            if !show {
                return;
            }
            if let Some(v) = s.proxy {
                eprintln!(
                    "{i:>4}  {} {v:.6e}  params {:>8}  MACs {:>11}  {}",
                    self.score.name(),
                    s.parameters,
                    s.macs,
                    s.text
                );
            } else {
                eprintln!(
                    "{i:>4}  acc {:6.2}%  loss {:.4}  params {:>8}  MACs {:>11}  {}",
                    100.0 * s.accuracy,
                    s.loss,
                    s.parameters,
                    s.macs,
                    s.text
                );
            }
        }
    }
}

/// The latency table and limit of chain runs (`sample`, `evolve`).
#[derive(clap::Args, Debug)]
pub struct LatencyArgs {
    /// Chain runs: a latency lookup table (`supernet profile`) of the run's space, device
    /// and input; adds a predicted `latency_ms` column, against which the Pareto front is
    /// taken (else against the multiply-adds).
    #[arg(long, value_name = "LUT.json")]
    pub latency_table: Option<PathBuf>,
    /// Chain runs: only architectures whose predicted latency is at most MS (needs
    /// --latency-table).
    #[arg(long, value_name = "MS")]
    pub max_latency_ms: Option<f64>,
}

#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    #[command(flatten)]
    pub score: ScoreArgs,
    /// Number of distinct architectures.
    #[arg(long)]
    pub n: usize,
    /// Where the architectures are drawn from.
    #[arg(long, value_enum, default_value_t = SampleFrom::Uniform)]
    pub from: SampleFrom,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Table name (/samples/NAME, RUN/samples-NAME.csv) [default: FROM-BN-seedSEED].
    #[arg(long)]
    pub name: Option<String>,
    /// Also score the run's derived genotype (RUN/genotype.txt) with the same BN setting
    /// and batches, its row marked in a `derived` column (not scored twice when drawn).
    #[arg(long)]
    pub with_derived: bool,
    #[command(flatten)]
    pub latency: LatencyArgs,
    /// Chain runs: only architectures with at most this many multiply-adds per image.
    #[arg(long)]
    pub max_macs: Option<u64>,
    /// Chain runs: only architectures with at most this many parameters.
    #[arg(long)]
    pub max_params: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct EvolveArgs {
    #[command(flatten)]
    pub score: ScoreArgs,
    /// Candidates per generation.
    #[arg(long, default_value_t = 50)]
    pub population: usize,
    /// Generations.
    #[arg(long, default_value_t = 20)]
    pub generations: usize,
    /// Probability that each choice (a node's inputs, an edge's op; a chain layer's
    /// choice) is re-drawn.
    #[arg(long, default_value_t = 0.1)]
    pub mutation_prob: f64,
    /// The best this many candidates so far are the parents of the next generation.
    #[arg(long, default_value_t = 10)]
    pub parents: usize,
    /// Random search instead of evolution: N distinct uniform candidates.
    #[arg(long, value_name = "N")]
    pub random: Option<usize>,
    /// Only candidates with at most this many parameters.
    #[arg(long)]
    pub max_params: Option<u64>,
    /// Only candidates with at most this many multiply-adds per image (the "FLOPs" of
    /// NAS papers).
    #[arg(long, alias = "max-flops")]
    pub max_macs: Option<u64>,
    /// Seed of the draws, mutations and crossovers.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// History name (/evolution/NAME, RUN/evolution-NAME.csv) [default: MODE-seedSEED].
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub latency: LatencyArgs,
    /// Chain runs: multi-objective search (accuracy up, latency or multiply-adds down):
    /// NSGA-II selects the parents (non-dominated sorting, then crowding distance)
    /// instead of the top --parents by accuracy.
    #[arg(long)]
    pub pareto: bool,
}

#[derive(clap::Args, Debug)]
pub struct DeriveArgs {
    /// How the run's alphas become one architecture [default: top2; on a chain run
    /// argmax, its only rule: per layer the strongest choice].
    #[arg(long, value_parser = rule_parser())]
    pub rule: Option<RuleArg>,
    /// Seed of sample-top:K, and of the order of DARTS-PT's decisions (perturbation).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// DARTS-PT (--rule perturbation): weight steps of fine-tuning between two rounds of
    /// decisions (the paper: 5 epochs of the weight half) [default: 10].
    #[arg(long, value_name = "N")]
    pub tune_steps: Option<usize>,
    /// P-DARTS: at most N skip connections in the normal cell; the weakest beyond N are
    /// replaced by their edge's next-best op (P-DARTS: 2). With --rule top2 or argmax.
    #[arg(long, value_name = "N")]
    pub max_skip: Option<usize>,
    #[command(flatten)]
    pub score: ScoreArgs,
}

pub fn sample(a: SampleArgs) -> anyhow::Result<()> {
    if is_chain_run(&a.score.run)? {
        return super::chain::sample_chain(a);
    }
    refuse_flags(
        &[
            ("--latency-table", a.latency.latency_table.is_some()),
            ("--max-latency-ms", a.latency.max_latency_ms.is_some()),
            ("--max-macs", a.max_macs.is_some()),
            ("--max-params", a.max_params.is_some()),
        ],
        "chain",
        &a.score.run,
    )?;
    let at = a.score.attach()?;
    let scorer = a.score.scorer(&at)?;
    let cfg = crate::sample::SampleConfig {
        n: a.n,
        from: a.from,
        seed: a.seed,
        name: a.name.clone(),
        with_derived: a.with_derived,
    };
    let r = crate::sample::sample(&at.dir, &scorer, &cfg, a.score.progress(&at))?;
    if !at.root() {
        return Ok(());
    }
    if r.duplicates > 0 {
        eprintln!("{} duplicate draws skipped", r.duplicates);
    }
    let added = matches!(r.derived, Some(crate::sample::DerivedRow::Added(_)));
    let drawn = r.scores.len() - usize::from(added);
    if drawn < a.n {
        eprintln!(
            "only {drawn} distinct architectures found in {} draws",
            20 * a.n
        );
    }
    if let Some(i) = r.derived.map(|d| d.index()) {
        let column = |f: fn(&ArchScore) -> f64| r.scores.iter().map(f).collect::<Vec<_>>();
        // Under a proxy the loss column is NaN throughout: ties stay ties.
        let p = crate::sample::rank::placement(&column(ArchScore::fitness), &column(|s| s.loss), i)
            .expect("the derived row is a row of the table");
        match r.scores[i].proxy {
            None => eprintln!(
                "derived architecture: accuracy {:.2}%, loss {:.4}: rank {} of {} (accuracy, ties by lower loss)",
                100.0 * r.scores[i].accuracy,
                r.scores[i].loss,
                p.rank,
                p.n
            ),
            Some(v) => eprintln!(
                "derived architecture: {} {v:.6e}: rank {} of {}",
                scorer.score.name(),
                p.rank,
                p.n
            ),
        }
    }
    eprintln!(
        "{} architectures scored on {} images: {}/run.h5 /{}, {}",
        r.scores.len(),
        scorer.val_images(),
        a.score.run.display(),
        r.group,
        r.csv.display()
    );
    Ok(())
}

pub fn evolve(a: EvolveArgs) -> anyhow::Result<()> {
    if is_chain_run(&a.score.run)? {
        return super::chain::evolve_chain(a);
    }
    refuse_flags(
        &[
            ("--latency-table", a.latency.latency_table.is_some()),
            ("--max-latency-ms", a.latency.max_latency_ms.is_some()),
            ("--pareto", a.pareto),
        ],
        "chain",
        &a.score.run,
    )?;
    let at = a.score.attach()?;
    let scorer = a.score.scorer(&at)?;
    let cfg = evolve_config(&a);
    let r = crate::sample::evolve(&at.dir, &scorer, &cfg, a.score.progress(&at))?;
    if !at.root() {
        return Ok(());
    }
    println!("{}", r.best.text);
    let score = match r.best.proxy {
        Some(v) => format!("{} {v:.6e}", scorer.score.name()),
        None => format!(
            "accuracy {:.2}%, loss {:.4}",
            100.0 * r.best.accuracy,
            r.best.loss
        ),
    };
    eprintln!(
        "best of {} candidates: {score}, {} parameters, {} MACs; {}",
        r.history.len(),
        r.best.parameters,
        r.best.macs,
        evolve_files(
            &a.score.run,
            &r.group,
            &[&r.csv, &r.best_text, &r.best_json]
        )
    );
    Ok(())
}

/// Where an evolution went: the run file's group, the CSV, the best architecture's files.
pub(super) fn evolve_files(
    run: &std::path::Path,
    group: &str,
    [csv, txt, json]: &[&PathBuf; 3],
) -> String {
    format!(
        "history {}/run.h5 /{group}, {}; best architecture {}, {}",
        run.display(),
        csv.display(),
        txt.display(),
        json.display()
    )
}

/// The first of `flags` (a flag and whether it was given) that was given, as an error: it
/// applies to `kind` runs only, and `run` is the other kind.
pub(super) fn refuse_flags(
    flags: &[(&str, bool)],
    kind: &str,
    run: &std::path::Path,
) -> anyhow::Result<()> {
    if let Some((flag, _)) = flags.iter().find(|(_, given)| *given) {
        let other = if kind == "chain" { "cell" } else { "chain" };
        anyhow::bail!(
            "{flag} applies to {kind} runs; {} is a {other} run",
            run.display()
        );
    }
    Ok(())
}

/// The search settings `evolve` shares between cell and chain runs.
pub(super) fn evolve_config(a: &EvolveArgs) -> crate::sample::EvolveConfig {
    crate::sample::EvolveConfig {
        population: a.population,
        generations: a.generations,
        mutation_prob: a.mutation_prob,
        parents: a.parents,
        max_params: a.max_params,
        max_macs: a.max_macs,
        seed: a.seed,
        random: a.random,
        name: a.name.clone(),
    }
}

pub fn derive(a: DeriveArgs) -> anyhow::Result<()> {
    if is_chain_run(&a.score.run)? {
        return super::chain::derive_chain(a);
    }
    let rule = a.rule.unwrap_or(RuleArg::Top2);
    if a.max_skip.is_some() && !matches!(rule, RuleArg::Top2 | RuleArg::Argmax) {
        return Err(crate::Error::invalid(
            "--max-skip",
            a.max_skip.unwrap_or_default(),
            format!(
                "left out with --rule {} (the cap re-derives the alphas: top2 or argmax)",
                rule.name()
            ),
        )
        .into());
    }
    if let Some(n) = a.tune_steps.filter(|_| rule != RuleArg::Perturbation) {
        return Err(crate::Error::invalid(
            "--tune-steps",
            n,
            format!(
                "left out with --rule {} (fine-tuning between decisions is DARTS-PT's: --rule perturbation)",
                rule.name()
            ),
        )
        .into());
    }
    if rule == RuleArg::Perturbation {
        refuse_with_perturbation(&a.score)?;
    }
    let at = a.score.attach()?;
    let dir = &at.dir;
    let genotype = match rule {
        RuleArg::Perturbation => perturbation(&a, &at)?,
        RuleArg::Controller => {
            let cfg: crate::search::SearchConfig = crate::run::read_config(dir.path())?;
            let space = cfg.validate_with_space()?;
            let c = crate::search::enas::load_controller(dir.path(), &cfg, &space)?;
            tch::no_grad(|| c.rollout(None)).genotype
        }
        RuleArg::SampleTop(k) | RuleArg::ControllerBest(k) => {
            let scorer = a.score.scorer(&at)?;
            let from = match rule {
                RuleArg::ControllerBest(_) => SampleFrom::Controller,
                _ => SampleFrom::Alphas,
            };
            let cfg = crate::sample::SampleConfig {
                n: k,
                from,
                seed: a.seed,
                name: Some(format!("derive-{}-seed{}", rule.name(), a.seed)),
                with_derived: false,
            };
            let r = crate::sample::sample(dir, &scorer, &cfg, a.score.progress(&at))?;
            let best = r
                .scores
                .iter()
                .max_by(|x, y| {
                    x.fitness()
                        .total_cmp(&y.fitness())
                        .then(y.loss.total_cmp(&x.loss))
                })
                .ok_or_else(|| anyhow::anyhow!("{} scored no architecture", rule.name()))?;
            eprintln!(
                "best of {} sampled: {} {} (scores in /{})",
                r.scores.len(),
                scorer.score.name(),
                match best.proxy {
                    Some(v) => format!("{v:.6e}"),
                    None => format!("{:.2}%", 100.0 * best.accuracy),
                },
                r.group
            );
            best.genotype.clone()
        }
        _ => match a.max_skip {
            Some(max) => crate::record::derive_run_capped(dir.path(), rule, max)?,
            None => crate::record::derive_run(dir.path(), rule)?,
        },
    };
    let stem = match a.max_skip {
        Some(max) => format!("genotype-{}-maxskip{max}", rule.name()),
        None => format!("genotype-{}", rule.name()),
    };
    let (txt, json) = dir.write_genotype(&stem, &genotype)?;
    if !at.root() {
        return Ok(());
    }
    println!("{}", genotype.to_text());
    eprintln!("written {}, {}", txt.display(), json.display());
    Ok(())
}

/// Scoring flags that DARTS-PT does not take (it scores the whole supernet by its
/// accuracy with BN batch statistics, as the paper's code does).
fn refuse_with_perturbation(score: &ScoreArgs) -> anyhow::Result<()> {
    let given = [
        (
            "--score",
            (score.score != ScoreKind::Inherited).then(|| score.score.name().to_string()),
        ),
        ("--bn", score.bn.map(BnMode::name)),
    ];
    if let Some((flag, Some(value))) = given.into_iter().find(|(_, v)| v.is_some()) {
        return Err(crate::Error::invalid(
            flag,
            value,
            "left out with --rule perturbation (DARTS-PT measures the supernet's validation accuracy with BN batch statistics)",
        )
        .into());
    }
    Ok(())
}

/// `derive --rule perturbation`: DARTS-PT on the run's supernet (fine-tuned in memory
/// only), its measurements stored as `/perturbation/<name>` and `RUN/perturbation-<name>.csv`.
fn perturbation(a: &DeriveArgs, at: &Attached) -> anyhow::Result<crate::space::Genotype> {
    use crate::record::{Column, Table};
    use crate::search::perturbation::{select, PtConfig, DEFAULT_TUNE_STEPS};
    let cfg = PtConfig {
        tune_steps: a.tune_steps.unwrap_or(DEFAULT_TUNE_STEPS),
        seed: a.seed,
        max_batches: a.score.batches,
    };
    let trained = crate::search::load_trained(at.dir.path())?;
    // The run's own thread setting was applied by the load: the flag overrides it.
    if let Some(t) = a.score.threads.filter(|&t| t > 0) {
        tch::set_num_threads(t as i32);
    }
    let quiet = a.score.quiet || !at.root();
    let sel = select(trained, cfg, |line| {
        if !quiet {
            eprintln!("{line}");
        }
    })?;
    let p = &sel.perturbations;
    let text = |f: &dyn Fn(&crate::search::perturbation::Perturbation) -> String| {
        Column::Text(p.iter().map(f).collect())
    };
    let f64s = |f: fn(&crate::search::perturbation::Perturbation) -> f64| {
        Column::F64(p.iter().map(f).collect())
    };
    let name = format!("seed{}-tune{}", cfg.seed, cfg.tune_steps);
    let table = Table {
        group: format!("perturbation/{name}"),
        attrs: vec![
            ("rule".into(), "perturbation".into()),
            ("seed".into(), cfg.seed.to_string()),
            ("tune_steps".into(), cfg.tune_steps.to_string()),
            ("genotype".into(), sel.genotype.to_text()),
        ],
        columns: vec![
            (
                "round".into(),
                Column::U64(p.iter().map(|r| r.round as u64).collect()),
            ),
            ("cell".into(), text(&|r| r.cell.name().to_string())),
            ("stage".into(), text(&|r| r.stage.name().to_string())),
            ("edge".into(), text(&|r| r.edge.key())),
            ("op".into(), text(&|r| r.op.name().to_string())),
            ("base_accuracy".into(), f64s(|r| r.base_accuracy)),
            ("accuracy".into(), f64s(|r| r.accuracy)),
            ("drop".into(), f64s(|r| r.drop())),
            (
                "chosen".into(),
                Column::U64(p.iter().map(|r| u64::from(r.chosen)).collect()),
            ),
        ],
    };
    if at.root() {
        let csv = crate::sample::store_table(&at.dir, table, &format!("perturbation-{name}"))?;
        eprintln!(
            "{} perturbations: {}/run.h5 /perturbation/{name}, {}",
            p.len(),
            a.score.run.display(),
            csv.display()
        );
    }
    Ok(sel.genotype)
}

/// Whether the run in `dir` searched a chain space (its config's space). A run whose config
/// cannot be read is left to the cell path, which reports what is wrong with it.
fn is_chain_run(dir: &std::path::Path) -> anyhow::Result<bool> {
    let Ok(cfg) = crate::run::read_config::<crate::search::SearchConfig>(dir) else {
        return Ok(false);
    };
    Ok(matches!(
        crate::space::Space::load(&cfg.space),
        Ok(crate::space::Space::Chain(_))
    ))
}
