//! The search settings (config.toml and the run file's attributes) and the time the run took.
use super::md;
use crate::record::RunData;
use crate::search::SearchConfig;

/// "## Search settings": a table of the settings and the recorded time.
pub(super) fn section(run: &RunData, cfg: &SearchConfig) -> String {
    let s = &run.space;
    let log = &run.log;
    let space = format!(
        "`{}` ({}; {} ops, {} intermediate nodes, {} edges per cell; derivation: {})",
        s.name,
        s.network,
        s.ops.len(),
        s.cell.nodes,
        run.edges.len(),
        s.cell.derive
    );
    let data = format!(
        "`{}`, {} training images cut 50/50 into weight and architecture halves",
        cfg.data.path.display(),
        cfg.subset.map_or("all".to_string(), |n| n.to_string())
    );
    let strategy = match &cfg.preset {
        Some(p) => format!("{} (preset `{p}`)", cfg.strategy.name()),
        None => cfg.strategy.name().to_string(),
    };
    let weights = format!(
        "SGD, lr {} cosine to {}, momentum {}{}, weight decay {}, gradient clip {}",
        cfg.lr,
        cfg.lr_min,
        cfg.momentum,
        if cfg.nesterov { " (Nesterov)" } else { "" },
        cfg.weight_decay,
        cfg.grad_clip
    );
    let mut alphas = format!(
        "Adam, lr {}, betas ({}, {}), weight decay {}",
        cfg.arch_lr, cfg.arch_beta1, cfg.arch_beta2, cfg.arch_weight_decay
    );
    if cfg.arch_warmup_epochs > 0 {
        alphas.push_str(&format!(
            "; frozen for the first {}",
            md::count(cfg.arch_warmup_epochs, "epoch")
        ));
    }
    let rows = [
        ("space", space),
        ("data", data),
        ("strategy", strategy),
        (
            "epochs",
            format!("{} ({} recorded)", cfg.epochs, log.epochs.len()),
        ),
        ("steps per epoch", log.meta.steps_per_epoch.to_string()),
        ("batch", cfg.batch_size.to_string()),
        ("weights", weights),
        ("alphas", alphas),
        ("seed", log.meta.seed.to_string()),
        ("device", format!("`{}`", log.meta.device)),
        ("time", time(run)),
    ];
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(k, v)| vec![k.to_string(), v])
        .collect();
    format!(
        "## Search settings\n\n{}",
        md::table(&["setting", "value"], &rows)
    )
}

/// The recorded time: the epochs' seconds (their steps and their end-of-epoch evaluation)
/// plus the steps of an unfinished epoch, and the time per step.
fn time(run: &RunData) -> String {
    let log = &run.log;
    let done = log.epochs.len() as u32;
    let step_secs: Vec<f64> = log.steps.iter().map(|s| s.seconds).collect();
    if step_secs.is_empty() {
        return "no steps recorded".into();
    }
    let in_epochs: f64 = log
        .steps
        .iter()
        .filter(|s| s.epoch < done)
        .map(|s| s.seconds)
        .sum();
    let epochs: f64 = log.epochs.iter().map(|e| e.seconds).sum();
    let after: f64 = log
        .steps
        .iter()
        .filter(|s| s.epoch >= done)
        .map(|s| s.seconds)
        .sum();
    let total: f64 = epochs + after;
    let mean = step_secs.iter().sum::<f64>() / step_secs.len() as f64;
    let median = crate::numeric::median(&step_secs).unwrap_or(f64::NAN);
    format!(
        "{} in steps and end-of-epoch evaluations (start-up not counted): {} steps at {} \
         per step (median {}), {} evaluating",
        md::secs(total),
        step_secs.len(),
        md::secs(mean),
        md::secs(median),
        md::secs(epochs - in_epochs),
    )
}

/// "## Training": loss and accuracy per epoch.
pub(super) fn training(run: &RunData) -> String {
    let head = "## Training per epoch\n\nTrain: means over the epoch's steps on the weight half; \
                val: the supernet on the whole architecture half at the epoch's end.\n\n";
    if run.log.epochs.is_empty() {
        return format!("{head}No epoch has finished yet.\n");
    }
    let rows: Vec<Vec<String>> = run
        .log
        .epochs
        .iter()
        .map(|e| {
            vec![
                (e.epoch + 1).to_string(),
                md::f4(e.train_loss),
                md::pct(e.train_acc),
                md::f4(e.val_loss),
                md::pct(e.val_acc),
                md::sig4(e.lr),
                md::secs(e.seconds),
            ]
        })
        .collect();
    format!(
        "{head}{}",
        md::table(
            &[
                "epoch",
                "train loss",
                "train acc",
                "val loss",
                "val acc",
                "lr",
                "time"
            ],
            &rows
        )
    )
}
