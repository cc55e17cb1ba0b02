"""Optuna's side of `supernet sweep`: one study in a journal file, driven by ask-and-tell.

Started by the sweep with the study's settings as JSON in argv[1]; then reads one JSON
request per line on stdin and answers one JSON line on stdout:

  {"op": "trials"}                                 -> {"trials": [{number, state, params, value}]}
  {"op": "ask"}                                    -> {"number": n, "params": {...}}
  {"op": "report", "number": n, "step": e, "value": v} -> {"prune": bool}
  {"op": "tell", "number": n, "state": "complete"|"pruned"|"fail", "value": v|null} -> {}

The samplers (grid, random, TPE) and the pruner (SuccessiveHalvingPruner: asynchronous
successive halving, ASHA) are Optuna's own. The journal file lets a killed sweep continue
and lets several machines share one study.
"""

import json
import sys
import warnings

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

warnings.filterwarnings("ignore")
optuna.logging.set_verbosity(optuna.logging.ERROR)


def distribution(p):
    if "values" in p:
        return optuna.distributions.CategoricalDistribution(p["values"])
    if p.get("int"):
        return optuna.distributions.IntDistribution(int(p["low"]), int(p["high"]), log=p.get("log", False))
    return optuna.distributions.FloatDistribution(p["low"], p["high"], log=p.get("log", False))


def main():
    cfg = json.loads(sys.argv[1])
    params = cfg["params"]
    seed = cfg["seed"]
    if cfg["sampler"] == "grid":
        sampler = optuna.samplers.GridSampler({k: v["values"] for k, v in params.items()}, seed=seed)
    elif cfg["sampler"] == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg["startup_trials"])
    if cfg["pruner"] == "asha":
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=cfg["min_epochs"], reduction_factor=cfg["reduction_factor"]
        )
    else:
        pruner = optuna.pruners.NopPruner()
    storage = JournalStorage(JournalFileBackend(cfg["journal"]))
    study = optuna.create_study(
        study_name="sweep",
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )
    dists = {k: distribution(v) for k, v in params.items()}
    states = {
        "complete": optuna.trial.TrialState.COMPLETE,
        "pruned": optuna.trial.TrialState.PRUNED,
        "fail": optuna.trial.TrialState.FAIL,
    }

    def trial_of(number):
        t = study.trials[number]
        return optuna.trial.Trial(study, t._trial_id)

    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "trials":
            out = {
                "trials": [
                    {
                        "number": t.number,
                        "state": t.state.name.lower(),
                        "params": t.params,
                        "value": t.value,
                    }
                    for t in study.get_trials(deepcopy=False)
                ]
            }
        elif op == "ask":
            t = study.ask(dists)
            out = {"number": t.number, "params": t.params}
        elif op == "report":
            t = trial_of(req["number"])
            t.report(req["value"], req["step"])
            out = {"prune": t.should_prune()}
        elif op == "tell":
            value = req.get("value")
            state = states[req["state"]]
            if state == optuna.trial.TrialState.COMPLETE:
                study.tell(req["number"], value)
            else:
                study.tell(req["number"], state=state)
            out = {}
        else:
            out = {"error": "unknown op " + op}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
