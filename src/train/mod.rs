//! `supernet train`: a derived architecture trained on its own (DARTS evaluation network
//! with auxiliary head, drop-path and cutout, or the NAS-Bench-201 stand-alone network),
//! with the same run file, atomic checkpoints, exact resume, progress and NaN guard as the
//! search. The trained network is exported into `DIR/model/` at the end.
mod config;

pub use config::{AugmentOverrides, TrainConfig, EVAL_CHANNELS, EVAL_CUTOUT, EVAL_LAYERS};

use crate::data::rng::{hash_key, PURPOSE_DROP_PATH};
use crate::data::{DataSets, Loader, LoaderConfig, Subset};
use crate::evaluate::{evaluate, Score};
use crate::model::{read_description, Model, ModelSpec};
use crate::optim::{clip_grad_norm, cosine_lr, zero_grad, Sgd};
use crate::record::{read_run, write_run, RunLog, RunMeta};
use crate::search::progress::Progress;
use crate::search::{checkpoint, parse_device, stop_flag, StepStats, CONFIG_FILE, RUN_FILE};
use crate::space::{Genotype, SearchSpace};
use crate::supernet::{InputShape, Pass};
use crate::tensorfile::TensorMap;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;
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
    Interrupted {
        dir: PathBuf,
        global_step: u64,
    },
}

/// Where the run stands: the next step is `step_in_epoch` of `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    epoch: usize,
    step_in_epoch: usize,
    global_step: u64,
    /// Fingerprint of the network, to refuse a checkpoint of another one.
    model_hash: u64,
}

/// Start a new training run in `dir` (which must not hold a run yet).
pub fn start(cfg: TrainConfig, dir: &Path, quiet: bool) -> Result<Outcome> {
    cfg.validate()?;
    crate::rundir::create_new(dir)?;
    run(cfg, dir, false, quiet)
}

/// Continue the training run in `dir` from its last checkpoint, with its own config.
pub fn resume(dir: &Path, quiet: bool) -> Result<Outcome> {
    run(crate::rundir::read_config(dir)?, dir, true, quiet)
}

/// The network a config asks for: from `--init`'s description, or genotype + space.
pub fn model_spec(cfg: &TrainConfig, input: InputShape) -> Result<ModelSpec> {
    if let Some(init) = &cfg.init {
        let json = crate::model::locate(init).1;
        let spec = read_description(&json)?.spec(&json)?;
        if spec.input != input {
            return Err(Error::bad_file(
                &json,
                format!(
                    "the model takes {:?}, the data set has {:?}",
                    spec.input, input
                ),
            ));
        }
        return Ok(spec);
    }
    let space = SearchSpace::from_file(&cfg.space)?.with_overrides(cfg.network)?;
    let genotype = Genotype::from_arg(&cfg.genotype)?;
    genotype.validate(&space)?;
    Ok(ModelSpec {
        space_file: cfg.space.clone(),
        space,
        genotype,
        input,
        style: cfg.style,
        auxiliary: cfg.auxiliary_weight > 0.0,
    })
}

/// Fingerprint of everything that fixes the network's tensors.
fn model_hash(spec: &ModelSpec) -> u64 {
    let key = format!(
        "{}|{}|{}|{}|{:?}",
        spec.space.fingerprint(),
        spec.genotype.to_text(),
        spec.style.name(),
        spec.auxiliary,
        spec.input
    );
    crate::data::rng::hash_key(&key.bytes().map(u64::from).collect::<Vec<_>>())
}

/// The network with its optimizer.
struct TrainState {
    model: Model,
    names: Vec<String>,
    weights: Vec<Tensor>,
    sgd: Sgd,
}

impl TrainState {
    /// Fresh weights from `seed`, or those of `--init`.
    fn new(cfg: &TrainConfig, spec: ModelSpec, device: Device) -> Result<Self> {
        tch::manual_seed(cfg.seed as i64);
        let model = Model::new(spec, device)?;
        if let Some(init) = &cfg.init {
            model.load_weights(&crate::model::locate(init).0)?;
        }
        let (names, weights, _) = crate::search::split_variables(&model.vs);
        let sgd = Sgd::new(&weights, cfg.momentum, cfg.weight_decay);
        Ok(TrainState {
            model,
            names,
            weights,
            sgd,
        })
    }

    /// Every tensor a checkpoint holds, as live handles (see search::checkpoint).
    fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut named: Vec<(String, Tensor)> = self
            .model
            .named_tensors()
            .into_iter()
            .map(|(k, v)| (format!("net.{k}"), v))
            .collect();
        for (name, buf) in self.names.iter().zip(&self.sgd.buffers) {
            named.push((format!("sgd.{name}"), buf.shallow_clone()));
        }
        named
    }

    fn save(&self, pos: &Position, dir: &Path) -> Result<()> {
        let mut named = self.tensors();
        named.push(("position".into(), checkpoint::encode_position(pos)));
        crate::tensorfile::save(named, &dir.join(checkpoint::FILE))
    }

    fn load(&mut self, dir: &Path, model_hash: u64) -> Result<Position> {
        let mut map: TensorMap = checkpoint::open(dir)?;
        let pos: Position = checkpoint::decode_position(&mut map)?;
        if pos.model_hash != model_hash {
            return Err(map.error(
                "this checkpoint was written for a different network than the run's config describes",
            ));
        }
        for (key, dst) in self.tensors() {
            map.copy_into(&key, &dst)?;
        }
        Ok(pos)
    }

    /// One SGD step on `images`: main loss plus the weighted auxiliary loss.
    fn step(
        &mut self,
        images: &Tensor,
        labels: &Tensor,
        cfg: &TrainConfig,
        lr: f64,
        drop_path: f64,
        at: (usize, usize),
    ) -> Result<StepStats> {
        let finite = |v: f64, what: &str| {
            if v.is_finite() {
                Ok(v)
            } else {
                Err(Error::NonFinite {
                    what: what.into(),
                    epoch: at.0,
                    step: at.1,
                })
            }
        };
        zero_grad(&self.weights);
        let logits = self.model.forward(
            images,
            Pass {
                train: true,
                drop_path,
            },
        );
        let mut loss = logits.main.cross_entropy_for_logits(labels);
        if let Some(aux) = &logits.auxiliary {
            loss += aux.cross_entropy_for_logits(labels) * cfg.auxiliary_weight;
        }
        let value = finite(loss.double_value(&[]), "training loss")?;
        loss.backward();
        let norm = finite(
            clip_grad_norm(&self.weights, cfg.grad_clip),
            "weight gradient",
        )?;
        self.sgd.step(&self.weights, lr);
        Ok(StepStats {
            train_loss: value,
            train_acc: crate::search::accuracy(&logits.main, labels),
            val_loss: f64::NAN,
            val_acc: f64::NAN,
            grad_norm: norm,
        })
    }
}

struct Setup {
    train: Loader,
    test: Loader,
    input: InputShape,
    device: Device,
}

fn setup(cfg: &TrainConfig) -> Result<Setup> {
    let device = parse_device(&cfg.device)?;
    if cfg.threads > 0 {
        tch::set_num_threads(cfg.threads as i32);
    }
    let data: DataSets = cfg.data.load()?;
    let augment = cfg.augment.resolve(data.default_augment());
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
    let t = &data.train;
    let input = InputShape {
        channels: t.channels() as i64,
        height: t.height() as i64,
        width: t.width() as i64,
        classes: t.num_classes() as i64,
    };
    Ok(Setup {
        train,
        test,
        input,
        device,
    })
}

fn meta(cfg: &TrainConfig, spec: &ModelSpec, s: &Setup) -> RunMeta {
    let (a, b, c) = hdf5::library_version();
    RunMeta {
        kind: "train".into(),
        config: cfg.to_toml(),
        space: spec.space.to_toml(),
        seed: cfg.seed,
        device: format!("{:?}", s.device),
        supernet_version: env!("CARGO_PKG_VERSION").into(),
        libtorch_version: crate::info::LIBTORCH_VERSION.into(),
        hdf5_version: format!("{a}.{b}.{c}"),
        ops: spec
            .space
            .ops
            .iter()
            .map(|o| o.name().to_string())
            .collect(),
        edges: spec.space.cell.edges().iter().map(|e| e.key()).collect(),
        cell_types: spec
            .space
            .network
            .cell_types()
            .iter()
            .map(|t| t.name().to_string())
            .collect(),
        steps_per_epoch: s.train.batches_per_epoch() as u64,
    }
}

fn persist(st: &TrainState, log: &RunLog, pos: &Position, dir: &Path) -> Result<()> {
    write_run(log, &dir.join(RUN_FILE))?;
    st.save(pos, dir)
}

fn run(cfg: TrainConfig, dir: &Path, resuming: bool, quiet: bool) -> Result<Outcome> {
    let s = setup(&cfg)?;
    let spec = model_spec(&cfg, s.input)?;
    if !resuming {
        crate::fsutil::write_atomic(&dir.join(CONFIG_FILE), cfg.to_toml().as_bytes())?;
    }
    let hash = model_hash(&spec);
    let genotype_text = spec.genotype.to_text();
    let steps = s.train.batches_per_epoch();
    let log_meta = meta(&cfg, &spec, &s);
    let mut st = TrainState::new(&cfg, spec, s.device)?;
    let (mut log, mut pos);
    if resuming {
        pos = st.load(dir, hash)?;
        log = read_run(&dir.join(RUN_FILE))?;
        log.truncate_to(pos.global_step, pos.epoch as u32);
    } else {
        pos = Position {
            epoch: 0,
            step_in_epoch: 0,
            global_step: 0,
            model_hash: hash,
        };
        log = RunLog {
            meta: log_meta,
            ..Default::default()
        };
        persist(&st, &log, &pos, dir)?;
    }
    let stop = stop_flag()?;
    let progress = Progress::new(quiet);
    let (params, params_main) = st.model.parameter_counts();
    let head = if st.model.net.has_auxiliary() {
        format!(" ({params} with the auxiliary head)")
    } else {
        String::new()
    };
    progress.line(&format!(
        "train: {genotype_text}\n  {} network, {params_main} parameters{head}, {} epochs x {steps} steps, batch {}, device {:?}, run dir {}",
        st.model.spec.style.name(),
        cfg.epochs,
        cfg.batch_size,
        s.device,
        dir.display()
    ));

    let mut last_test = None;
    while pos.epoch < cfg.epochs {
        let epoch = pos.epoch;
        let lr = cosine_lr(cfg.lr, cfg.lr_min, epoch, cfg.epochs);
        let drop_path = cfg.drop_path * epoch as f64 / cfg.epochs as f64;
        let bar = progress.epoch_bar(epoch, cfg.epochs, steps, pos.step_in_epoch);
        for batch in s.train.epoch(epoch, pos.step_in_epoch) {
            let t0 = Instant::now();
            // Drop-path masks from libtorch's generator: a pure function of the step.
            tch::manual_seed(hash_key(&[cfg.seed, PURPOSE_DROP_PATH, pos.global_step]) as i64);
            let images = batch.images.to_device(s.device);
            let labels = batch.labels.to_device(s.device);
            let at = (epoch, pos.step_in_epoch);
            let stats = match st.step(&images, &labels, &cfg, lr, drop_path, at) {
                Ok(stats) => stats,
                Err(e) => {
                    // The log up to the last good step is written; the checkpoint is untouched.
                    let _ = write_run(&log, &dir.join(RUN_FILE));
                    return Err(e);
                }
            };
            let seconds = t0.elapsed().as_secs_f64();
            log.steps
                .push(stats.record(pos.global_step, epoch, lr, seconds));
            pos.global_step += 1;
            pos.step_in_epoch += 1;
            progress.step(&bar, &stats);
            let interrupted = stop.load(Ordering::Relaxed);
            if crate::rundir::checkpoint_after_step(
                interrupted,
                cfg.checkpoint_every,
                pos.global_step,
                pos.step_in_epoch < steps,
            ) {
                persist(&st, &log, &pos, dir)?;
            }
            if interrupted {
                bar.abandon();
                if pos.step_in_epoch >= steps {
                    break;
                }
                return Ok(Outcome::Interrupted {
                    dir: dir.to_path_buf(),
                    global_step: pos.global_step,
                });
            }
        }
        bar.finish_and_clear();

        let eval_start = Instant::now();
        let test = evaluate(
            &st.model.net,
            st.model.arch_weights(),
            &s.test,
            s.device,
            false,
        );
        let record = log.epoch_summary(
            epoch as u32,
            lr,
            (test.loss, test.accuracy),
            eval_start.elapsed().as_secs_f64(),
            &genotype_text,
        );
        progress.line(&format!(
            "epoch {:>3}/{}  train loss {:.4} acc {:.2}%  test loss {:.4} acc {:.2}%  lr {:.5}  drop-path {:.3}  {:.1}s",
            epoch + 1,
            cfg.epochs,
            record.train_loss,
            100.0 * record.train_acc,
            record.val_loss,
            100.0 * record.val_acc,
            lr,
            drop_path,
            record.seconds,
        ));
        log.epochs.push(record);
        last_test = Some(test);
        pos.epoch += 1;
        pos.step_in_epoch = 0;
        persist(&st, &log, &pos, dir)?;
        if stop.load(Ordering::Relaxed) {
            return Ok(Outcome::Interrupted {
                dir: dir.to_path_buf(),
                global_step: pos.global_step,
            });
        }
    }

    // The last epoch's score, unless every epoch was done before this resume.
    let test = last_test.unwrap_or_else(|| {
        evaluate(
            &st.model.net,
            st.model.arch_weights(),
            &s.test,
            s.device,
            false,
        )
    });
    let origin = format!(
        "supernet train, run {}, {} epochs",
        dir.display(),
        cfg.epochs
    );
    let model = st.model.export(&dir.join(MODEL_DIR), cfg.seed, &origin)?;
    log.genotype = Some((genotype_text, st.model.spec.genotype.to_json()));
    write_run(&log, &dir.join(RUN_FILE))?;
    Ok(Outcome::Finished {
        test,
        dir: dir.to_path_buf(),
        model,
    })
}
