//! `supernet train`: a derived architecture trained on its own (DARTS evaluation network
//! with auxiliary head, drop-path and cutout, or the NAS-Bench-201 stand-alone network), as
//! a [`Job`] of the same run loop as the search (run file, atomic checkpoints, exact
//! resume, progress, NaN guard), or one architecture of a chain space. The trained network
//! is exported into `DIR/model/` at the end.
mod config;

pub use crate::data::AugmentOverrides;
pub use config::{TrainConfig, EVAL_CHANNELS, EVAL_CUTOUT, EVAL_LAYERS};

use crate::data::{DataSets, EpochIter, Loader, LoaderConfig, Subset};
use crate::evaluate::{accuracy, Score};
use crate::model::{read_description, ChainModelSpec, ModelSpec, NetSpec, Standalone};
use crate::optim::{clip_grad_norm, cosine_lr, split_variables, zero_grad, Sgd};

use crate::rng::{hash_key, PURPOSE_DROP_PATH};
use crate::run::{
    begin, checkpoint, device_name, drive, parse_device, EpochEnd, Job, MetaSource, MetaSpace,
    Position, Progress, RunDir, Schedule, StepStats, StopFlag, Stopped,
};
use crate::space::chain::ChainArch;
use crate::space::{Genotype, Space};
use crate::supernet::{InputShape, Pass};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// The trained network is exported here inside the run directory.
pub const MODEL_DIR: &str = "model";

#[derive(Debug)]
pub enum Outcome {
    Finished {
        test: Score,
        dir: PathBuf,
        model: PathBuf,
    },
    /// Stopped by SIGINT/SIGTERM after checkpointing.
    Interrupted(Stopped),
}

/// The position record of a training checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct TrainPosition {
    #[serde(flatten)]
    pos: Position,
    /// Fingerprint of the network, to refuse a checkpoint of another one.
    model_hash: u64,
}

/// Start a new training run in `dir` (which must not hold a run yet). A start that fails
/// leaves nothing behind.
pub fn start(cfg: TrainConfig, dir: &Path, quiet: bool) -> Result<Outcome> {
    cfg.validate()?;
    let mut dir = RunDir::create(dir)?;
    run(cfg, &mut dir, false, quiet)
}

/// Continue the training run in `dir` from its last checkpoint, with its own config
/// (checked as a fresh start checks it).
pub fn resume(dir: &Path, quiet: bool) -> Result<Outcome> {
    let mut dir = RunDir::resume(dir)?;
    let cfg: TrainConfig = dir.read_config()?;
    cfg.validate()
        .map_err(|e| Error::bad_file(dir.config_file(), format!("the run's config: {e}")))?;
    run(cfg, &mut dir, true, quiet)
}

/// The network a config asks for: from `--init`'s description, or genotype + space.
pub fn model_spec(cfg: &TrainConfig, input: InputShape) -> Result<NetSpec> {
    if let Some(init) = &cfg.init {
        let json = crate::model::locate(init).1;
        let spec = read_description(&json)?.net_spec(&json)?;
        if spec.input() != input {
            return Err(Error::bad_file(
                &json,
                format!("the model takes {}, the data set has {input}", spec.input()),
            ));
        }
        if matches!(spec, NetSpec::Chain(_)) {
            cfg.refuse_cell_settings()?;
        }
        return Ok(spec);
    }
    match Space::load(&cfg.space)? {
        Space::Cell(space) => {
            let space = space.with_overrides(cfg.network)?;
            let genotype = Genotype::from_arg(&cfg.genotype)?;
            genotype.validate(&space)?;
            Ok(NetSpec::Cell(ModelSpec {
                space_file: cfg.space.clone(),
                space,
                genotype,
                input,
                style: cfg.style,
                auxiliary: cfg.auxiliary_weight > 0.0,
            }))
        }
        Space::Chain(space) => {
            cfg.refuse_cell_settings()?;
            let arch = ChainArch::from_arg(&cfg.genotype)?;
            arch.validate(&space)?;
            Ok(NetSpec::Chain(ChainModelSpec {
                space_file: cfg.space.clone(),
                space,
                arch,
                input,
            }))
        }
    }
}

/// Fingerprint of everything that fixes the network's tensors.
fn model_hash(spec: &NetSpec) -> u64 {
    let key = match spec {
        NetSpec::Cell(spec) => format!(
            "{}|{}|{}|{}|{:?}",
            spec.space.fingerprint(),
            spec.genotype.to_text(),
            spec.style.name(),
            spec.auxiliary,
            spec.input
        ),
        NetSpec::Chain(spec) => format!(
            "chain|{}|{}|{:?}",
            spec.space.fingerprint(),
            spec.arch.to_text(),
            spec.input
        ),
    };
    hash_key(&key.bytes().map(u64::from).collect::<Vec<_>>())
}

/// A training run as the loop drives it: the network with its optimizer and data.
struct TrainJob {
    cfg: TrainConfig,
    model: Box<dyn Standalone>,
    names: Vec<String>,
    weights: Vec<Tensor>,
    sgd: Sgd,
    model_hash: u64,
    train: Loader,
    test: Loader,
    device: Device,
    lr: f64,
    drop_path: f64,
    last_test: Option<Score>,
}

impl TrainJob {
    /// Every tensor a checkpoint holds, as live handles.
    fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut named: Vec<(String, Tensor)> =
            crate::model::sorted_variables(self.model.var_store())
                .into_iter()
                .map(|(k, v)| (format!("net.{k}"), v))
                .collect();
        for (name, buf) in self.names.iter().zip(&self.sgd.buffers) {
            named.push((format!("sgd.{name}"), buf.shallow_clone()));
        }
        named
    }

    fn test_score(&self) -> Score {
        self.model.score(&self.test, self.device)
    }
}

impl Job for TrainJob {
    type Batch = crate::data::Batch;
    type Batches = EpochIter;

    fn batches(&self, epoch: usize, start: usize) -> EpochIter {
        self.train.epoch(epoch, start)
    }

    fn start_epoch(&mut self, epoch: usize) -> f64 {
        let cfg = &self.cfg;
        self.lr = cosine_lr(cfg.lr, cfg.lr_min, epoch, cfg.epochs);
        self.drop_path = cfg.drop_path * epoch as f64 / cfg.epochs as f64;
        self.lr
    }

    /// One SGD step: main loss plus the weighted auxiliary loss.
    fn step(&mut self, batch: Self::Batch, at: &Position) -> Result<StepStats> {
        // Drop-path masks from libtorch's generator: a pure function of the step.
        tch::manual_seed(hash_key(&[self.cfg.seed, PURPOSE_DROP_PATH, at.global_step]) as i64);
        let images = batch.images.to_device(self.device);
        let labels = batch.labels.to_device(self.device);
        let finite = |v: f64, what: &str| {
            if v.is_finite() {
                Ok(v)
            } else {
                Err(Error::NonFinite {
                    what: what.into(),
                    epoch: at.epoch,
                    step: at.step_in_epoch,
                })
            }
        };
        zero_grad(&self.weights);
        let pass = Pass {
            train: true,
            drop_path: self.drop_path,
        };
        let logits = self.model.forward(&images, pass);
        let mut loss = logits.main.cross_entropy_for_logits(&labels);
        if let Some(aux) = &logits.auxiliary {
            loss += aux.cross_entropy_for_logits(&labels) * self.cfg.auxiliary_weight;
        }
        let value = finite(loss.double_value(&[]), "training loss")?;
        loss.backward();
        drop(loss);
        let norm = finite(
            clip_grad_norm(&self.weights, self.cfg.grad_clip),
            "weight gradient",
        )?;
        self.sgd.step(&self.weights, self.lr);
        Ok(StepStats {
            train_loss: value,
            train_acc: accuracy(&logits.main, &labels),
            val_loss: f64::NAN,
            val_acc: f64::NAN,
            grad_norm: norm,
        })
    }

    fn end_epoch(&mut self, _epoch: usize) -> Result<EpochEnd> {
        let test = self.test_score();
        self.last_test = Some(test);
        Ok(EpochEnd {
            loss: test.loss,
            accuracy: test.accuracy,
            genotype: self.model.arch_text(),
            note: format!("drop-path {:.3}", self.drop_path),
            show_genotype: false,
            finish: false,
            hessian_eigenvalue: None,
        })
    }

    fn save(&self, dir: &RunDir, pos: &Position) -> Result<()> {
        let record = TrainPosition {
            pos: *pos,
            model_hash: self.model_hash,
        };
        checkpoint::save(dir, self.tensors(), &record)
    }

    fn load(&mut self, dir: &Path) -> Result<Position> {
        let mut map = checkpoint::open(dir)?;
        let record: TrainPosition = checkpoint::decode_record(&mut map)?;
        if record.model_hash != self.model_hash {
            return Err(map.error(
                "this checkpoint was written for a different network than the run's config describes",
            ));
        }
        for (key, dst) in self.tensors() {
            map.copy_into(&key, &dst)?;
        }
        Ok(record.pos)
    }
}

/// The training and test loaders of a run on `data`, and their input shape.
fn loaders(cfg: &TrainConfig, data: &DataSets) -> Result<(Loader, Loader, InputShape)> {
    let augment = cfg
        .augment
        .resolve(TrainConfig::augment_default(data.default_augment()));
    let subset = |set: &std::sync::Arc<crate::data::Dataset>, n: Option<usize>| match n {
        Some(n) => Subset::balanced(set, n, cfg.seed),
        None => Ok(Subset::all(set)),
    };
    let train = Loader::new(
        subset(&data.train, cfg.subset)?,
        LoaderConfig::train(cfg.batch_size, augment, cfg.seed),
    )?;
    let test = Loader::eval(
        subset(&data.test, cfg.test_subset)?,
        cfg.batch_size.max(256),
    )?;
    Ok((train, test, InputShape::of(&data.train)))
}

/// The job of `cfg`: its network freshly initialised from the seed (or `--init`'s
/// weights), its optimizer and data.
fn new_job(
    cfg: TrainConfig,
    spec: NetSpec,
    (train, test): (Loader, Loader),
    device: Device,
) -> Result<TrainJob> {
    let model_hash = model_hash(&spec);
    tch::manual_seed(cfg.seed as i64);
    let model = spec.build(device)?;
    if let Some(init) = &cfg.init {
        crate::model::load_weights(model.as_ref(), &crate::model::locate(init).0)?;
    }
    let (names, weights, _) = split_variables(model.var_store());
    let sgd = Sgd::new(&weights, cfg.momentum, cfg.weight_decay);
    Ok(TrainJob {
        cfg,
        model,
        names,
        weights,
        sgd,
        model_hash,
        train,
        test,
        device,
        lr: 0.0,
        drop_path: 0.0,
        last_test: None,
    })
}

/// Train `cfg`'s network on `data` in memory, with no run directory, checkpoint, run file
/// or export, and score it on the test set after the last epoch: the steps and the score
/// of [`start`] with the same config (tested), at none of its file costs. For many short
/// trainings on data loaded once (`supernet tabulate`).
pub fn fit(cfg: &TrainConfig, data: &DataSets) -> Result<Score> {
    cfg.validate()?;
    let device = parse_device(&cfg.device)?;
    if cfg.threads > 0 {
        tch::set_num_threads(cfg.threads as i32);
    }
    let (train, test, input) = loaders(cfg, data)?;
    let spec = model_spec(cfg, input)?;
    let mut job = new_job(cfg.clone(), spec, (train, test), device)?;
    let mut pos = Position::default();
    for epoch in 0..cfg.epochs {
        job.start_epoch(epoch);
        for batch in job.batches(epoch, 0) {
            job.step(batch, &pos)?;
            pos.global_step += 1;
            pos.step_in_epoch += 1;
        }
        pos.epoch += 1;
        pos.step_in_epoch = 0;
    }
    Ok(job.test_score())
}

fn run(cfg: TrainConfig, dir: &mut RunDir, resuming: bool, quiet: bool) -> Result<Outcome> {
    let device = parse_device(&cfg.device)?;
    if cfg.threads > 0 {
        tch::set_num_threads(cfg.threads as i32);
    }
    let (train, test, input) = loaders(&cfg, &cfg.data.load()?)?;
    let spec = model_spec(&cfg, input)?;
    if let NetSpec::Cell(spec) = &spec {
        crate::run::check::fits_in_memory(
            spec.space
                .size_bound_of(&spec.genotype, input.height as usize, input.width as usize),
            &format!(
                "the network of this genotype in '{}' on {input}",
                spec.space.name
            ),
            cfg.batch_size,
            None,
        )?;
    }
    let progress = Progress::new(quiet);
    if let Some(note) = dir.stale_note() {
        progress.line(&note);
    }
    let steps = train.batches_per_epoch();
    let meta = MetaSource {
        kind: "train",
        config: cfg.to_toml(),
        space: match &spec {
            NetSpec::Cell(s) => MetaSpace::Cell(&s.space),
            NetSpec::Chain(s) => MetaSpace::Chain(&s.space),
        },
        seed: cfg.seed,
        device,
        steps_per_epoch: steps,
        classes: input.classes as usize,
    }
    .meta();
    let mut job = new_job(cfg, spec, (train, test), device)?;
    let (mut log, pos) = begin(&mut job, dir, resuming, meta)?;
    let stop = StopFlag::install()?;
    let (params, params_main) = crate::model::parameter_counts(job.model.var_store());
    let head = if params != params_main {
        format!(" ({params} with the auxiliary head)")
    } else {
        String::new()
    };
    let cfg = job.cfg.clone();
    progress.line(&format!(
        "train: {}\n  {} network, {params_main} parameters{head}, {} epochs x {steps} steps, batch {}, {} classes, device {}, run dir {}",
        job.model.arch_text(),
        job.model.form(),
        cfg.epochs,
        cfg.batch_size,
        input.classes,
        device_name(device),
        dir.path().display()
    ));
    let schedule = Schedule {
        epochs: cfg.epochs,
        steps_per_epoch: steps,
        checkpoint_every: cfg.checkpoint_every,
        eval_name: "test",
    };
    if let Some(stopped) = drive(&mut job, schedule, dir, &mut log, pos, &progress, &stop)? {
        return Ok(Outcome::Interrupted(stopped));
    }
    // The last epoch's score, unless every epoch was done before this resume.
    let test = job.last_test.unwrap_or_else(|| job.test_score());
    let origin = format!(
        "supernet train, run {}, {} epochs",
        dir.path().display(),
        cfg.epochs
    );
    let model =
        crate::model::write_export(job.model.as_ref(), &dir.file(MODEL_DIR), cfg.seed, &origin)?;
    log.genotype = Some((job.model.arch_text(), job.model.arch_json()));
    dir.write_run(&log)?;
    Ok(Outcome::Finished {
        test,
        dir: dir.path().to_path_buf(),
        model,
    })
}
