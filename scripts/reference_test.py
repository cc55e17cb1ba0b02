#!/usr/bin/env python3
"""Self-checks of scripts/reference.py: counts, names, file round trips, subnets, the
finite-difference Hessian-vector product and the bench modes. Run with the project venv:
    .venv/bin/python scripts/reference_test.py
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
import reference as R  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPACES = ROOT / "supernets"


def cli(*args):
    out = subprocess.run([sys.executable, str(ROOT / "scripts/reference.py"), *map(str, args)],
                         check=True, capture_output=True, text=True)
    return out.stdout


def randomise(model, seed=0):
    """Random weights and non-trivial BN statistics so eval-mode BN is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            else:
                t.copy_(0.3 * torch.randn(t.shape, generator=g))


def tch_state(model):
    """What tch's VarStore::save writes: every variable, no num_batches_tracked."""
    return {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def test_counts():
    # DARTS search net at 16 ch / 8 layers / 10 classes: 1.930618 M, as the paper code prints.
    # NB201 (C=16, N=5): 1,692,826, checked by hand (60 C^2 + 12 C conv biases per cell, as
    # NAS-Bench-201's ReLUConvBN has bias=not affine, + residual blocks + stem/head).
    expect = {"darts_cnn": ("3x32x32", 1930618), "nb201": ("3x32x32", 1692826),
              "fmnist_small": ("1x28x28", None), "tiny": ("1x28x28", None)}
    for name, (inp, params) in expect.items():
        c = json.loads(cli("count", "--space", SPACES / f"{name}.toml", "--input", inp, "--classes", 10))
        print(f"  {name:13s} {inp}: {c}")
        if params is not None:
            assert c["parameters"] == params, (name, c)


def test_round_trip_logits(tmp):
    space = R.load_space(SPACES / "fmnist_small.toml")
    model = R.Supernet(space, [1, 28, 28], 10)
    randomise(model)
    save_file(tch_state(model), tmp / "w.safetensors")
    x = torch.randn(3, 1, 28, 28)
    alphas = {t: F.softmax(torch.randn(14, 8), -1) for t in ("normal", "reduce")}
    save_file({"x": x, **{f"alpha_{t}": a for t, a in alphas.items()}}, tmp / "io.safetensors")
    for train in (False, True):
        flag = ["--train"] if train else []
        cli("logits", "--space", SPACES / "fmnist_small.toml", "--weights", tmp / "w.safetensors",
            "--io", tmp / "io.safetensors", "--out", tmp / "out.safetensors", *flag)
        from safetensors.torch import load_file
        got = load_file(tmp / "out.safetensors")["logits"]
        m2 = R.Supernet(space, [1, 28, 28], 10)
        m2.load_state_dict(model.state_dict())
        m2.train(train)
        with torch.no_grad():
            want = m2(x, {t: R.dense(a) for t, a in alphas.items()})
        assert got.shape == (3, 10) and torch.equal(got, want), (train, (got - want).abs().max())


def test_strict_names(tmp):
    space = R.load_space(SPACES / "tiny.toml")
    model = R.Supernet(space, [1, 28, 28], 10)
    state = tch_state(model)
    state.pop("classifier.bias")
    save_file(state, tmp / "bad.safetensors")
    try:
        R.load_strict(R.Supernet(space, [1, 28, 28], 10), tmp / "bad.safetensors")
    except SystemExit as e:
        assert "classifier.bias" in str(e)
    else:
        raise AssertionError("a missing tensor must fail the load")


def check_subnet(tmp, space_file, chw, genotype, layers=None, channels=None):
    """A subnet reading the supernet's file, with unit one-hot weights, equals the supernet
    driven by the same one-hot weights as a dense mixture (eval mode)."""
    space = R.load_space(space_file, layers, channels)
    sup = R.Supernet(space, chw, 10)
    randomise(sup, seed=1)
    save_file(tch_state(sup), tmp / "sup.safetensors")
    (tmp / "g.json").write_text(json.dumps(genotype))
    x = torch.randn(2, *chw)
    save_file({"x": x}, tmp / "io.safetensors")
    size = [a for k, v in (("--layers", layers), ("--channels", channels)) if v for a in (k, v)]
    cli("logits", "--space", space_file, "--weights", tmp / "sup.safetensors", "--io", tmp / "io.safetensors",
        "--out", tmp / "sub.safetensors", "--genotype", tmp / "g.json", *size)
    from safetensors.torch import load_file
    got = load_file(tmp / "sub.safetensors")["logits"]
    sup.eval()
    mix = {t: R.dense(R.one_hot(R.edge_choice(genotype[t], space), len(space["ops"]))) for t in R.cell_types(space)}
    with torch.no_grad():
        want = sup(x, mix)
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6), (got - want).abs().max()
    sub_params = json.loads(cli("count", "--space", space_file, "--input", "x".join(map(str, chw)),
                                "--genotype", tmp / "g.json", *size))["parameters"]
    assert sub_params < R.counts(sup)[0]
    return sub_params


def test_subnets(tmp):
    darts_cell = {"nodes": [[{"op": "sep_conv_3x3", "from": 0}, {"op": "skip_connect", "from": 1}],
                            [{"op": "max_pool_3x3", "from": 0}, {"op": "dil_conv_5x5", "from": 2}],
                            [{"op": "avg_pool_3x3", "from": 1}, {"op": "sep_conv_5x5", "from": 3}],
                            [{"op": "skip_connect", "from": 0}, {"op": "dil_conv_3x3", "from": 4}]],
                  "concat": [2, 3, 4, 5]}
    n = check_subnet(tmp, SPACES / "darts_cnn.toml", [3, 16, 16], {"normal": darts_cell, "reduce": darts_cell},
                     layers=5, channels=4)
    print(f"  darts_cnn subnet (5 layers, 4 ch): {n} parameters")
    nb = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
    n = check_subnet(tmp, SPACES / "nb201.toml", [3, 16, 16], R.load_genotype(nb), layers=1, channels=4)
    print(f"  nb201 subnet (1 cell/stage, 4 ch): {n} parameters")
    # A node whose only edges are `none` is zero at the edges' resolution (reduction cell).
    tiny_cell = {"nodes": [[{"op": "none", "from": 0}, {"op": "none", "from": 1}],
                           [{"op": "sep_conv_3x3", "from": 0}, {"op": "max_pool_3x3", "from": 2}]],
                 "concat": [2, 3]}
    check_subnet(tmp, SPACES / "tiny.toml", [1, 28, 28], {"normal": tiny_cell, "reduce": tiny_cell})


def test_hessian_vector():
    """The finite-difference HVP against exact double backward on a smooth toy (float64).
    Not on the supernet: ReLU and max-pool kinks crossed by the +-R step, divided by 2R,
    make finite differences of its gradient meaningless."""
    torch.manual_seed(0)
    w1 = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    a = torch.randn(5, dtype=torch.float64, requires_grad=True)
    x = torch.randn(8, 5, dtype=torch.float64)

    def loss():
        return (torch.tanh(torch.tanh((x * F.softmax(a, 0)) @ w1.T) @ w2.T) ** 2).mean()

    v = [torch.randn_like(w1), torch.randn_like(w2)]
    before = (w1.detach().clone(), w2.detach().clone())
    (fd,) = R.hessian_vector(loss, [w1, w2], [a], v)
    assert torch.equal(w1, before[0]) and torch.equal(w2, before[1]), "weights must be restored"
    gw = torch.autograd.grad(loss(), [w1, w2], create_graph=True)
    (exact,) = torch.autograd.grad(sum((g * d).sum() for g, d in zip(gw, v)), [a])
    rel = ((fd - exact).norm() / exact.norm()).item()
    assert rel < 1e-4, rel
    print(f"  finite-difference HVP vs double backward: relative error {rel:.1e}")


def test_bench():
    for mode in ("forward", "first-order", "second-order"):
        r = json.loads(cli("bench", "--space", SPACES / "tiny.toml", "--input", "1x28x28", "--classes", 10,
                           "--batch", 4, "--steps", 2, "--mode", mode))
        assert r["median_s"] > 0 and r["peak_memory_bytes"] > 0, r
        print(f"  bench tiny {mode}: {r['median_s']:.4f} s, peak {r['peak_memory_bytes'] / 2**20:.0f} MiB")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        for name, fn in list(globals().items()):
            if name.startswith("test_"):
                print(name)
                fn(*([Path(d)] if fn.__code__.co_argcount else []))
    print("all reference checks passed")
