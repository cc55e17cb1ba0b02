//! Worker processes of `supernet tabulate`: each is this binary's hidden `tabulate-worker`
//! verb with the [`Plan`] as JSON. It loads the data once, then reads one task per line
//! on stdin (`{"architecture", "genotype", "seed"}`), trains it and answers one JSON line
//! on stdout (the accuracy and seconds, or the error), until stdin closes. The parent
//! hands a worker its next task when it answers, and alone writes the table.
use super::{train_pair, Plan};
use crate::space::Genotype;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;

/// The hidden verb that runs [`serve`].
pub const VERB: &str = "tabulate-worker";

#[derive(Debug, Serialize, Deserialize)]
struct Task {
    architecture: usize,
    genotype: String,
    seed: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Done {
        architecture: usize,
        seed: u64,
        accuracy: f64,
        seconds: f64,
    },
    Failed {
        error: String,
    },
}

/// The worker's side: serve tasks from stdin until it closes.
pub fn serve(plan_json: &str) -> Result<()> {
    let plan: Plan = serde_json::from_str(plan_json)
        .map_err(|e| Error::invalid("tabulate-worker plan", plan_json, e.to_string()))?;
    let data = plan.data.load()?;
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line =
            line.map_err(|e| Error::Other(format!("tabulate worker: reading stdin: {e}")))?;
        let result = serde_json::from_str::<Task>(&line)
            .map_err(|e| Error::invalid("tabulate-worker task", &line, e.to_string()))
            .and_then(|t| {
                let g = Genotype::parse(&t.genotype)?;
                let (accuracy, seconds) = train_pair(&plan, &data, &g, t.seed)?;
                Ok(Reply::Done {
                    architecture: t.architecture,
                    seed: t.seed,
                    accuracy,
                    seconds,
                })
            });
        let (reply, failed) = match result {
            Ok(r) => (r, false),
            Err(e) => (
                Reply::Failed {
                    error: e.to_string(),
                },
                true,
            ),
        };
        let text = serde_json::to_string(&reply).expect("a reply always serialises");
        writeln!(out, "{text}")
            .and_then(|()| out.flush())
            .map_err(|e| Error::Other(format!("tabulate worker: writing stdout: {e}")))?;
        if failed {
            break;
        }
    }
    Ok(())
}

/// The parent's workers; dropping the pool kills those still running.
struct Pool {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    replies: mpsc::Receiver<(usize, Option<String>)>,
}

impl Pool {
    fn start(exe: &Path, plan: &Plan, n: usize) -> Result<Self> {
        let json = serde_json::to_string(plan).expect("a plan always serialises");
        let (tx, replies) = mpsc::channel();
        let mut pool = Pool {
            children: Vec::new(),
            stdins: Vec::new(),
            replies,
        };
        for w in 0..n {
            let mut cmd = Command::new(exe);
            cmd.arg(VERB)
                .arg(&json)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .env("OMP_NUM_THREADS", plan.threads.max(1).to_string());
            // A worker dies with the parent: nothing but the parent writes its results.
            // SAFETY: prctl is async-signal-safe, as code between fork and exec must be.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let mut child = cmd.spawn().map_err(|e| Error::io(exe, e))?;
            let stdout = child.stdout.take().expect("piped");
            pool.stdins.push(child.stdin.take());
            pool.children.push(child);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    match line {
                        Ok(l) => {
                            if tx.send((w, Some(l))).is_err() {
                                return;
                            }
                        }
                        Err(_) => break,
                    }
                }
                let _ = tx.send((w, None));
            });
        }
        Ok(pool)
    }

    fn send(&mut self, w: usize, task: &Task) -> Result<()> {
        let line = serde_json::to_string(task).expect("a task always serialises");
        let stdin = self.stdins[w].as_mut().expect("an open worker");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| Error::Other(format!("tabulate worker {w} no longer takes tasks: {e}")))
    }

    /// Close worker `w`'s stdin: it exits after its last answer.
    fn close(&mut self, w: usize) {
        self.stdins[w] = None;
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stdins.clear();
        for c in &mut self.children {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// Train the `pending` (architecture, seed index) pairs on `jobs` workers of `exe`,
/// handing each result to `record` as it arrives (in this thread).
pub fn run_pool(
    exe: &Path,
    plan: &Plan,
    jobs: usize,
    pending: Vec<(usize, usize)>,
    genotypes: &[String],
    seeds: &[u64],
    mut record: impl FnMut((usize, usize), (f64, f64)) -> Result<()>,
) -> Result<()> {
    let mut queue: VecDeque<(usize, usize)> = pending.into();
    let n = jobs.min(queue.len());
    let mut pool = Pool::start(exe, plan, n)?;
    let mut busy: Vec<Option<(usize, usize)>> = vec![None; n];
    let task = |(i, s): (usize, usize)| Task {
        architecture: i,
        genotype: genotypes[i].clone(),
        seed: seeds[s],
    };
    for (w, slot) in busy.iter_mut().enumerate() {
        let pair = queue.pop_front().expect("at least one task per worker");
        pool.send(w, &task(pair))?;
        *slot = Some(pair);
    }
    while busy.iter().any(Option::is_some) {
        let (w, line) = pool
            .replies
            .recv()
            .map_err(|_| Error::Other("every tabulate worker is gone".into()))?;
        let Some((i, s)) = busy[w] else {
            continue; // the end of a worker whose stdin was closed
        };
        let what = || format!("architecture {i} ({}) with seed {}", genotypes[i], seeds[s]);
        let reply: Reply = match line {
            None => {
                let status = pool.children[w]
                    .wait()
                    .map_or("unknown".into(), |s| s.to_string());
                return Err(Error::Other(format!(
                    "tabulate worker {w} ended ({status}) while training {}",
                    what()
                )));
            }
            Some(l) => serde_json::from_str(&l).map_err(|e| {
                Error::Other(format!(
                    "tabulate worker {w} answered '{l}' ({e}) to {}",
                    what()
                ))
            })?,
        };
        match reply {
            Reply::Done {
                architecture,
                seed,
                accuracy,
                seconds,
            } if architecture == i && seed == seeds[s] => record((i, s), (accuracy, seconds))?,
            Reply::Done { architecture, seed, .. } => {
                return Err(Error::Other(format!(
                    "tabulate worker {w} answered for architecture {architecture} seed {seed}, asked for {}",
                    what()
                )))
            }
            Reply::Failed { error } => {
                return Err(Error::Other(format!("training {}: {error}", what())))
            }
        }
        busy[w] = queue.pop_front();
        match busy[w] {
            Some(pair) => pool.send(w, &task(pair))?,
            None => pool.close(w),
        }
    }
    Ok(())
}
