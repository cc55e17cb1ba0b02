//! What the verbs share about flags: parsers for values with a parameter (`cuda:N`,
//! `recalibrate:K`, `sample-top:K`) that list their forms in `--help`; config defaults in
//! the help text; laying the given flags over a config; the flags a command line gave.
use clap::builder::{PossibleValue, TypedValueParser};
use clap::parser::ValueSource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::ffi::OsStr;
use std::path::Path;

/// A parser for `T` (through its `FromStr`, whose error names the flag and what is
/// allowed) that lists `forms` (value, description) in `--help`.
#[derive(Clone)]
pub struct Forms<T> {
    forms: &'static [(&'static str, &'static str)],
    check: fn(&str) -> Result<T, String>,
}

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Forms<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let text = value.to_string_lossy();
        (self.check)(&text).map_err(|why| {
            let flag = arg.map_or("value".to_string(), |a| format!("--{}", a.get_id()));
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid value '{text}' for {flag}: {why}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            self.forms
                .iter()
                .map(|(v, help)| PossibleValue::new(*v).help(*help)),
        ))
    }
}

fn forms<T>(
    forms: &'static [(&'static str, &'static str)],
    check: fn(&str) -> Result<T, String>,
) -> Forms<T> {
    Forms { forms, check }
}

/// `--device auto|cpu|cuda|cuda:N` (kept as text: whether the device exists is checked
/// when the run starts, on the machine that runs it).
pub fn device_parser() -> Forms<String> {
    forms(
        &[
            ("auto", "CUDA when libtorch sees a device, else the CPU"),
            ("cpu", "the CPU"),
            ("cuda", "the first CUDA device"),
            ("cuda:N", "CUDA device N"),
        ],
        |s| {
            let ok = matches!(s, "auto" | "cpu" | "cuda")
                || s.strip_prefix("cuda:")
                    .is_some_and(|n| n.parse::<usize>().is_ok());
            if ok {
                Ok(s.to_string())
            } else {
                Err(format!("expected {}", crate::run::DEVICE_FORMS))
            }
        },
    )
}

/// `--bn batch|running|recalibrate|recalibrate:K`.
pub fn bn_parser() -> Forms<crate::sample::BnMode> {
    forms(
        &[
            ("batch", "the statistics of each evaluation batch"),
            ("running", "the supernet's running statistics"),
            (
                "recalibrate",
                "re-estimated per sub-network on 10 training batches",
            ),
            (
                "recalibrate:K",
                "re-estimated per sub-network on K training batches",
            ),
        ],
        |s| s.parse().map_err(|e: crate::Error| e.to_string()),
    )
}

/// `--score inherited|few-shot|synflow|naswot|grad-norm|snip|jacov`.
pub fn score_parser() -> Forms<crate::sample::ScoreKind> {
    forms(
        &[
            (
                "inherited",
                "validation accuracy with inherited weights (see --bn)",
            ),
            (
                "few-shot",
                "inherited weights from the few-shot sub-supernet of the architecture's op on the split edge",
            ),
            (
                "synflow",
                "zero-cost proxy: sum |W * dR/dW|, |W|, all-ones input",
            ),
            (
                "naswot",
                "zero-cost proxy: log |det K| of the ReLU codes' kernel",
            ),
            (
                "grad-norm",
                "zero-cost proxy: sum of the weights' gradient norms",
            ),
            ("snip", "zero-cost proxy: sum |W * dL/dW|"),
            (
                "jacov",
                "zero-cost proxy: input-Jacobian correlation eigenvalues",
            ),
        ],
        |s| s.parse().map_err(|e: crate::Error| e.to_string()),
    )
}

/// `--rule top2|argmax|sample-top:K|controller|controller-best:K`.
pub fn rule_parser() -> Forms<crate::derive::RuleArg> {
    forms(
        &[
            (
                "top2",
                "DARTS: per node the 2 incoming edges with the strongest op other than none",
            ),
            ("argmax", "per edge its strongest op, every edge kept"),
            (
                "sample-top:K",
                "K architectures drawn from softmax(alphas), scored, the best",
            ),
            (
                "controller",
                "ENAS runs: the controller's most likely architecture (greedy)",
            ),
            (
                "controller-best:K",
                "ENAS runs: K architectures drawn from the controller, scored, the best",
            ),
            (
                "perturbation",
                "DARTS-PT: per edge the op whose removal drops the supernet's validation accuracy most, fine-tuning between edges; then per node the top-2 edges alike",
            ),
        ],
        |s| s.parse().map_err(|e: crate::Error| e.to_string()),
    )
}

/// Append `[default: V]` to the help of every flag of `subcommand` that the flags struct
/// `F` defines (the flags laid over the config by name) and that has a value in the
/// default config `toml` (at the top level or one table down).
pub fn with_config_defaults<F: clap::Args>(
    cmd: clap::Command,
    subcommand: &str,
    toml: &str,
) -> clap::Command {
    let table: toml::Table = toml.parse().expect("a config serialises to a TOML table");
    let ids: Vec<String> = F::augment_args(clap::Command::new("flags"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    cmd.mut_subcommand(subcommand, |sub| {
        ids.into_iter()
            .fold(sub, |sub, id| match default_of(&table, &id) {
                Some(v) => sub.mut_arg(&id, |a| {
                    let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                    a.help(format!("{help} [default: {v}]"))
                }),
                None => sub,
            })
    })
}

/// Append `note` to the help of each named flag of `subcommand`.
pub fn with_notes(cmd: clap::Command, subcommand: &str, notes: &[(&str, &str)]) -> clap::Command {
    cmd.mut_subcommand(subcommand, |sub| {
        notes.iter().fold(sub, |sub, &(id, note)| {
            sub.mut_arg(id, |a| append_help(a, note))
        })
    })
}

fn append_help(arg: clap::Arg, text: &str) -> clap::Arg {
    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    arg.help(format!("{help} {text}"))
}

fn default_of(table: &toml::Table, id: &str) -> Option<String> {
    let shown = |v: &toml::Value| match v {
        toml::Value::String(s) if s.is_empty() => None,
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Table(_) | toml::Value::Array(_) => None,
        other => Some(other.to_string()),
    };
    if let Some(v) = table.get(id) {
        return shown(v);
    }
    table.values().find_map(|v| match v {
        toml::Value::Table(t) => t.get(id).and_then(shown),
        _ => None,
    })
}

/// `base` with the fields `flags` sets laid over it (matched by field name; tables are
/// merged key by key). A flag without a config field of its name is an error.
pub fn overlay<C: Serialize + DeserializeOwned>(
    base: &C,
    flags: &impl Serialize,
) -> anyhow::Result<C> {
    let mut merged = toml::Table::try_from(base)?;
    merge(&mut merged, toml::Table::try_from(flags)?);
    Ok(merged.try_into()?)
}

fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => merge(b, t),
            (_, toml::Value::Table(t)) if t.is_empty() => {}
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// Refuse a `supernet VERB --resume DIR` that also gave flags other than `allowed`: the
/// run continues with the config it was started with, so they would be ignored.
pub fn refuse_ignored_flags(
    matches: &clap::ArgMatches,
    allowed: &[&str],
    verb: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let ignored: Vec<String> = matches
        .ids()
        .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.as_str())
        .filter(|id| *id != "resume" && !allowed.contains(id))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if !ignored.is_empty() {
        anyhow::bail!(
            "--resume continues the run in {0} with the config it was started with, so these \
             flags would be ignored: {1}. Leave them out, or start a new run from its config \
             with them (supernet {verb} --config {0}/config.toml --out NEW_DIR and the flags)",
            dir.display(),
            ignored.join(", "),
        );
    }
    Ok(())
}
