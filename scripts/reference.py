#!/usr/bin/env python3
"""PyTorch reference of the `supernet` search networks (DARTS and NAS-Bench-201 spaces).

It builds exactly the networks of `src/supernet` with the SAME parameter and buffer names, so
a file written by the Rust `VarStore::save("x.safetensors")` loads here strictly (PyTorch's
`num_batches_tracked` buffers, which tch lacks, are the only names allowed to be missing).
It is the golden reference for tests and the side-by-side comparator for benchmarks.

  count   --space F [--input CxHxW] [--classes N] [--layers L] [--channels C] [--genotype G]
  logits  --space F --weights W.safetensors --io IO.safetensors --out OUT.safetensors [...] [--train]
  bench   --space F --input CxHxW --classes N --batch B [--steps K] [--threads T]
          [--mode forward|first-order|second-order] [--device cpu|cuda]

`--partial-channels K` (count, logits, bench): PC-DARTS partial channel connections; the
ops of every edge see the first C/K channels, the rest bypass them, and edges are weighted
by the per-node softmax of their betas (`beta_normal`/`beta_reduce` raw betas in --io).

Written from the Rust sources and the DARTS / NAS-Bench-201 papers' conventions; see
/work/shared/DESIGN.md section 5. Pinned to the published code only through the Rust networks,
which tests/integration/upstream.rs compares with xautodl and nni (scripts/upstream.py), and
which this file must match to 1e-5 (tests/integration/reference.rs):
  DARTS supernet            darts_search_supernet_equals_xautodl_nasnetwork_darts
                            (xautodl NASNetworkDARTS changed back to DARTS's model_search in
                            three documented places), darts_gdas_sample_equals_xautodl_nasnetwork_gdas
  NAS-Bench-201 supernet    nb201_search_supernet_equals_xautodl_tiny_networks (TinyNetworkDarts,
  and its sub-networks      TinyNetworkSETN joint/select/dynamic, TinyNetworkRANDOM),
                            nb201_gdas_sample_equals_xautodl_tiny_network_gdas
Not pinned: PC-DARTS partial channels (`--partial-channels`; no installable upstream), `score`'s
BN recalibration, and `darts_step` (timed by `bench` only; the update rules it implements are
those the upstream step tests check on the Rust side: darts_first_order_step_equals_darts_train_search,
darts_second_order_step_equals_darts_architect).
"""
import argparse
import contextlib
import json
import re
import resource
import statistics
import sys
import time
import tomllib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_ops
from torch_ops import FactorizedReduce, ResBlock, bn, conv, relu_conv_bn

# ---------------------------------------------------------------------------------------------
# The search space (plain data, as in src/space/spec.rs)


def load_space(path, layers=None, channels=None):
    """Read a space TOML and apply --layers/--channels the way `NetworkSpec::apply` does."""
    space = tomllib.loads(Path(path).read_text())
    net = space["network"]
    if layers is not None:
        key = "layers" if net["kind"] == "darts" else "cells_per_stage"
        if net["kind"] == "darts" and net["layers"] != layers:
            net.pop("reduction_layers", None)  # the file's reductions were for its own depth
        net[key] = layers
    if channels is not None:
        net["channels"] = channels
    if net["kind"] == "darts":
        net.setdefault("reduction_layers", [net["layers"] // 3, 2 * net["layers"] // 3])
    return space


def cell_edges(cell):
    """Edges (to, from) in alpha-row order: node by node, then by source state."""
    inputs = cell["inputs"]
    return [(to, frm) for to in range(inputs, inputs + cell["nodes"]) for frm in range(to)]


def parse_input(text):
    dims = [int(d) for d in text.split("x")]
    if len(dims) != 3 or min(dims) < 1:
        sys.exit(f"--input must be CxHxW with positive integers, got {text!r}")
    return dims


# ---------------------------------------------------------------------------------------------
# Genotypes: JSON (file or string), NAS-Bench-201 `|op~0|+|...|`, DARTS `Genotype(...)` text


def load_genotype(arg):
    inline = arg.lstrip().startswith(("{", "|", "Genotype"))  # else a file, as in Rust
    text = (arg if inline else Path(arg).read_text()).strip()
    if text.startswith("{"):
        return json.loads(text)
    if text.startswith("|"):
        nodes = [[{"op": e.split("~")[0], "from": int(e.split("~")[1])} for e in part.strip("|").split("|")]
                 for part in text.split("+")]
        return {"normal": {"nodes": nodes, "concat": [len(nodes)]}}
    geno = {}
    for name in ("normal", "reduce"):
        m = re.search(name + r"\s*=\s*\[(.*?)\]", text)
        if not m:
            continue
        edges = [{"op": op, "from": int(frm)} for op, frm in re.findall(r"['\"](\w+)['\"]\s*,\s*(\d+)", m.group(1))]
        rng = re.search(name + r"_concat\s*=\s*range\((\d+),\s*(\d+)\)", text)
        lst = re.search(name + r"_concat\s*=\s*\[([\d,\s]*)\]", text)
        concat = list(range(int(rng[1]), int(rng[2]))) if rng else [int(v) for v in lst[1].split(",")]
        geno[name] = {"nodes": [edges[i:i + 2] for i in range(0, len(edges), 2)], "concat": concat}
    return geno


def edge_choice(cell_geno, space):
    """Op column chosen on every edge of a discrete cell (None for dropped edges)."""
    edges = cell_edges(space["cell"])
    choice = [None] * len(edges)
    for i, node in enumerate(cell_geno["nodes"]):
        for g in node:
            choice[edges.index((space["cell"]["inputs"] + i, g["from"]))] = space["ops"].index(g["op"])
    return choice


def one_hot(choice, n_ops):
    w = torch.zeros(len(choice), n_ops)
    for e, k in enumerate(choice):
        if k is not None:
            w[e, k] = 1.0
    return w


# ---------------------------------------------------------------------------------------------
# Operations (src/ops): chains are nn.Sequential under "op", so names are `op.1.weight`


def make_op(kind, c, stride, pool_bn):
    """One candidate op; search-network BN is affine-free. `none` holds nothing (None)."""
    return torch_ops.make_op(kind, c, stride, False, pool_bn)


def zeros_at(x, stride):
    """The `none` op's output: zeros at the (strided) output resolution."""
    return torch.zeros_like(x[:, :, ::stride, ::stride])


# ---------------------------------------------------------------------------------------------
# Mixing weights: {cell type: (weights [edges, ops], active columns per edge or None, unit)}


def dense(w):
    """A softmax mixture: every op of every edge runs and is multiplied by its weight."""
    return (w, None, False)


def sparse(w, unit=False):
    """Only non-zero columns run; `unit` (a genotype's one-hot) skips the multiplication."""
    return (w, [[k for k in range(w.shape[1]) if w[e, k] != 0] for e in range(w.shape[0])], unit)


# ---------------------------------------------------------------------------------------------
# Cells and networks (src/supernet)


def mixed_ops(kinds, keep, c, stride, pool_bn):
    """The ops an edge holds, by name, so paths read `edges.2_0.sep_conv_3x3.op.1.weight`."""
    ops = nn.ModuleDict()
    for k in keep:
        op = make_op(kinds[k], c, stride, pool_bn)
        if op is not None:
            ops[kinds[k]] = op
    return ops


def channel_shuffle(x, groups):
    """[B, C, H, W] -> [B, G, C/G, H, W], swap axes 1 and 2, back to [B, C, H, W]."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


def partial_forward(ops, kinds, x, mix, e, k, stride):
    """PC-DARTS edge: ops on x[:, :C/K], the rest bypassed (2x2 max pool when strided),
    concatenated and shuffled in K groups."""
    c = x.shape[1]
    head, rest = x[:, :c // k], x[:, c // k:]
    y = mixed_forward(ops, kinds, head, mix, e)
    if y is None:
        y = zeros_at(head, stride)
    if y.shape[2] != x.shape[2]:
        rest = F.max_pool2d(rest, 2, 2)
    return channel_shuffle(torch.cat([y, rest], dim=1), k)


def edge_weights(betas, inputs, nodes):
    """PC-DARTS edge normalisation: per node, softmax over its incoming edges' betas."""
    out, start = [], 0
    for i in range(nodes):
        out.append(F.softmax(betas[start:start + inputs + i], dim=-1))
        start += inputs + i
    return torch.cat(out)


def mixed_forward(ops, kinds, x, mix, e):
    """sum_k w[e,k] * op_k(x) over the active ops in column order; `none` (exactly 0) is
    skipped as in Rust. None when nothing contributes."""
    w, active, unit = mix
    acc = None
    for k in (range(len(kinds)) if active is None else active[e]):
        if kinds[k] == "none":
            continue
        if kinds[k] not in ops:
            raise ValueError(f"weights select {kinds[k]} on edge {e}, which this network does not hold")
        y = ops[kinds[k]](x)
        y = y if unit else y * w[e, k]
        acc = y if acc is None else acc + y
    return acc


class SearchCell(nn.Module):
    def __init__(self, space, cell_type, c, inputs, keep, pool_bn, k=1):
        """`inputs`: (channels, at twice the resolution) of each cell input, oldest first."""
        super().__init__()
        spec = space["cell"]
        self.cell_type, self.nodes, self.concat = cell_type, spec["nodes"], spec["concat"]
        # DARTS cells always preprocess their inputs; NAS-Bench-201 cells never do.
        self.n_pre = len(inputs) if space["network"]["kind"] == "darts" else 0
        for i, (c_in, up) in enumerate(inputs[:self.n_pre]):
            pre = FactorizedReduce(c_in, c, False) if up else relu_conv_bn(c_in, c, 1, 1, 0, False)
            setattr(self, f"preprocess{i}", pre)
        self.edges = nn.ModuleDict()
        self.strides = []
        for (to, frm), kept in zip(cell_edges(spec), keep):
            stride = 2 if cell_type == "reduce" and frm < spec["inputs"] else 1
            self.strides.append(stride)
            self.edges[f"{to}_{frm}"] = mixed_ops(space["ops"], kept, c // k, stride, pool_bn)
        self.kinds, self.k, self.inputs = space["ops"], k, spec["inputs"]

    def forward(self, inputs, mix, betas=None):
        """`betas`: raw edge betas `[edges]` (PC-DARTS edge normalisation) or None."""
        ew = None if betas is None else edge_weights(betas, self.inputs, self.nodes)
        states = [getattr(self, f"preprocess{i}")(x) for i, x in enumerate(inputs)] if self.n_pre else list(inputs)
        e = 0
        edges = list(self.edges.values())  # insertion order = alpha-row order
        for _ in range(self.nodes):
            node = None
            for frm, s in enumerate(states):
                if self.k > 1:
                    y = partial_forward(edges[e + frm], self.kinds, s, mix, e + frm, self.k, self.strides[e + frm])
                else:
                    y = mixed_forward(edges[e + frm], self.kinds, s, mix, e + frm)
                if y is not None and ew is not None:
                    y = y * ew[e + frm]
                if y is not None:
                    node = y if node is None else node + y
            if node is None:  # nothing contributes: zero at the edges' resolution
                node = zeros_at(states[0], self.strides[e])
            e += len(states)
            states.append(node)
        if len(self.concat) == 1:
            return states[self.concat[0]]
        return torch.cat([states[i] for i in self.concat], dim=1)


class Supernet(nn.Module):
    """Stem, cells (NB201: with residual blocks), [NB201: BN+ReLU], global pool, classifier.

    `genotype`: build only its (edge, op) modules, with the supernet's names (a subnet).
    """

    def __init__(self, space, input_chw, classes, genotype=None, k=1):
        super().__init__()
        self.space, self.kind = space, space["network"]["kind"]
        n_ops, n_edges = len(space["ops"]), len(cell_edges(space["cell"]))

        def keep(t):
            if genotype is None:
                return [list(range(n_ops))] * n_edges
            if t not in genotype:
                raise SystemExit(f"the genotype has no {t} cell, which space '{space['name']}' needs")
            return [[] if k is None else [k] for k in edge_choice(genotype[t], space)]

        net, c_img = space["network"], input_chw[0]
        pool_bn = self.kind == "darts"
        self.cells = nn.ModuleList()
        if self.kind == "darts":
            c_stem = net["stem_multiplier"] * net["channels"]
            self.stem = nn.Sequential(conv(c_img, c_stem, 3, 1, 1), bn(c_stem, True))
            c, s0, s1 = net["channels"], (c_stem, False), (c_stem, False)
            for i in range(net["layers"]):
                red = i in net["reduction_layers"]
                c = c * 2 if red else c
                t = "reduce" if red else "normal"
                self.cells.append(SearchCell(space, t, c, [s0, s1], keep(t), pool_bn, k))
                s0, s1 = (s1[0], red), (c * len(space["cell"]["concat"]), False)
            c_last, self.lastact = s1[0], None
        else:
            c0 = net["channels"]
            self.stem = nn.Sequential(conv(c_img, c0, 3, 1, 1), bn(c0, True))
            c_prev = c0
            for stage in range(3):
                c = c0 << stage
                if stage > 0:
                    self.cells.append(ResBlock(c_prev, c))
                for _ in range(net["cells_per_stage"]):
                    self.cells.append(SearchCell(space, "normal", c, [(c, False)], keep("normal"), pool_bn, k))
                c_prev = c
            c_last, self.lastact = c_prev, nn.Sequential(bn(c_prev, True), nn.ReLU())
        self.classifier = nn.Linear(c_last, classes)

    def forward(self, x, mix, betas=None):
        """`mix`: {"normal": (w, active, unit), "reduce": ...} as built by dense()/sparse();
        `betas`: {"normal": raw betas [edges], ...} for PC-DARTS edge normalisation."""
        betas = betas or {}
        x = self.stem(x)
        if self.kind == "darts":
            s0 = s1 = x
            for cell in self.cells:
                s0, s1 = s1, cell([s0, s1], mix[cell.cell_type], betas.get(cell.cell_type))
            x = s1
        else:
            for block in self.cells:
                x = block([x], mix["normal"], betas.get("normal")) if isinstance(block, SearchCell) else block(x)
            x = self.lastact(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def cell_types(space):
    return ["normal", "reduce"] if space["network"]["kind"] == "darts" else ["normal"]


def counts(model):
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    bufs = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    return params, bufs


def load_strict(model, path, allow_extra=False):
    """Strict load, except the num_batches_tracked buffers that tch does not have. A subnet
    (`allow_extra`) may read a supernet's file: like tch `VarStore::load`, every name it holds
    must be there, the rest is ignored."""
    from safetensors.torch import load_file
    state = load_file(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or (unexpected and not allow_extra):
        raise SystemExit(f"{path}: missing {missing[:10]} ({len(missing)}), unexpected {unexpected[:10]} ({len(unexpected)})")


# ---------------------------------------------------------------------------------------------
# Commands


def build(args, input_chw):
    space = load_space(args.space, args.layers, args.channels)
    geno = load_genotype(args.genotype) if args.genotype else None
    if args.partial_channels > 1 and geno is not None:
        sys.exit("--partial-channels applies to the supernet, not to a genotype's network")
    return space, geno, Supernet(space, input_chw, args.classes, geno, args.partial_channels)


def cmd_count(args):
    _, _, model = build(args, parse_input(args.input or "3x32x32"))
    params, bufs = counts(model)
    print(json.dumps({"parameters": params, "buffers": bufs}))


def cmd_logits(args):
    from safetensors.torch import load_file, save_file
    io = load_file(args.io)
    x = io["x"].float()
    space, geno, model = build(args, parse_input(args.input) if args.input else list(x.shape[1:]))
    load_strict(model, args.weights, allow_extra=geno is not None)
    model.train(args.train)
    mix = {}
    for t in cell_types(space):
        if geno is None:
            mix[t] = dense(io[f"alpha_{t}"].float())
        elif f"alpha_{t}" in io:
            mix[t] = sparse(io[f"alpha_{t}"].float())
        else:  # a genotype's one-hot weights: nothing is multiplied (Rust `is_unit`)
            mix[t] = sparse(one_hot(edge_choice(geno[t], space), len(space["ops"])), unit=True)
    betas = {t: io[f"beta_{t}"].float() for t in cell_types(space) if f"beta_{t}" in io}
    out = {}
    with torch.no_grad():
        out["logits"] = model(x, mix, betas)
        if args.float64:  # the exact answer, and this float32 code's own error in both layouts
            cl = torch.channels_last
            out["logits_cl"] = model.to(memory_format=cl)(x.to(memory_format=cl), mix, betas)
            model.double()
            out["logits64"] = model(x.double(), {t: (w.double(), *rest) for t, (w, *rest) in mix.items()},
                                    {t: b.double() for t, b in betas.items()})
    save_file({k: v.contiguous() for k, v in out.items()}, args.out)


def weights_of(model):
    return [p for p in model.parameters() if p.requires_grad]


def hessian_vector(loss_fn, ws, al, v):
    """(d/d alpha) <grad_w L, v> by central differences at w +- R v, R = 0.01/||v|| (DARTS
    eq. 8): (g+ - g-) / (2R), not the (g+ - g-) / 2 * R of some ports. Restores w exactly."""
    r = 0.01 / torch.cat([d.flatten() for d in v]).norm()
    saved = [w.detach().clone() for w in ws]
    grads = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for w, s, d in zip(ws, saved, v):
                w.copy_(s + sign * r * d)
        grads.append(torch.autograd.grad(loss_fn(), al))
    with torch.no_grad():
        for w, s in zip(ws, saved):
            w.copy_(s)
    return [(gp - gn) / (2 * r) for gp, gn in zip(*grads)]


def unrolled_alpha_grads(loss_fn, ws, al, w_opt, lr, momentum, wd):
    """Second-order DARTS: dalpha L_val(w', alpha) - lr * HVP, w' = w - lr (m*buf + g + wd*w)."""
    g = torch.autograd.grad(loss_fn("train"), ws)
    saved = [w.detach().clone() for w in ws]
    with torch.no_grad():  # the virtual step, with the weight optimizer's momentum buffer
        for w, gi in zip(ws, g):
            buf = w_opt.state.get(w, {}).get("momentum_buffer")
            w.sub_(lr * ((momentum * buf if buf is not None else 0.0) + gi + wd * w))
    out = torch.autograd.grad(loss_fn("val"), al + ws)
    dalpha, dw = out[:len(al)], out[len(al):]
    with torch.no_grad():
        for w, s in zip(ws, saved):
            w.copy_(s)
    hv = hessian_vector(lambda: loss_fn("train"), ws, al, dw)
    return [da - lr * h for da, h in zip(dalpha, hv)]


def darts_step(model, alphas, betas, w_opt, a_opt, batches, second_order, lr=0.025, momentum=0.9, wd=3e-4,
               amp=None, scaler=None):
    """One DARTS search step: alpha step on the validation batch, then the weight step on the
    training batch (clip 5). Alpha gradients are taken w.r.t. the alphas only, so the alpha
    step does not also compute weight gradients that would be thrown away. `betas` (PC-DARTS
    edge normalisation, possibly empty) are trained with the alphas. `amp` (device type,
    dtype): the weight step's forward under torch.autocast, float16 with `scaler` (a
    GradScaler); the alpha step stays float32."""
    ws, al = weights_of(model), list(alphas.values()) + list(betas.values())

    def loss_fn(which, cast=None):
        x, y = batches[which]
        with torch.autocast(cast[0], dtype=cast[1], enabled=cast is not None) if cast else contextlib.nullcontext():
            logits = model(x, {t: dense(F.softmax(a, dim=-1)) for t, a in alphas.items()}, betas)
        return F.cross_entropy(logits.float(), y)

    if second_order:
        grads = unrolled_alpha_grads(loss_fn, ws, al, w_opt, lr, momentum, wd)
    else:
        grads = torch.autograd.grad(loss_fn("val"), al)
    for a, g in zip(al, grads):
        a.grad = g
    a_opt.step()
    w_opt.zero_grad()
    loss = loss_fn("train", amp)
    if scaler is not None:
        scaler.scale(loss).backward(inputs=ws)
        scaler.unscale_(w_opt)
        nn.utils.clip_grad_norm_(ws, 5.0)
        scaler.step(w_opt)
        scaler.update()
    else:
        loss.backward(inputs=ws)
        nn.utils.clip_grad_norm_(ws, 5.0)
        w_opt.step()


def cmd_bench(args):
    torch.manual_seed(0)
    # Peak RSS includes the interpreter and the torch libraries; report that floor too.
    rss_floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = args.cudnn_benchmark  # DARTS's train_search.py sets it
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    amp = (dev.type, dtype) if dtype is not None else None
    scaler = torch.amp.GradScaler(dev.type) if args.precision == "fp16" else None
    chw = parse_input(args.input)
    space = load_space(args.space, args.layers, args.channels)
    model = Supernet(space, chw, args.classes, k=args.partial_channels).to(dev)
    n_edges, n_ops = len(cell_edges(space["cell"])), len(space["ops"])
    alphas = {t: (1e-3 * torch.randn(n_edges, n_ops, device=dev)).requires_grad_() for t in cell_types(space)}
    betas = ({t: (1e-3 * torch.randn(n_edges, device=dev)).requires_grad_() for t in cell_types(space)}
             if args.partial_channels > 1 else {})

    def batch():
        return (torch.randn(args.batch, *chw, device=dev), torch.randint(args.classes, (args.batch,), device=dev))

    batches = {"train": batch(), "val": batch()}
    w_opt = torch.optim.SGD(weights_of(model), lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(list(alphas.values()) + list(betas.values()), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)

    def step():
        if args.mode == "forward":
            with torch.no_grad():
                model(batches["train"][0], {t: dense(F.softmax(a, dim=-1)) for t, a in alphas.items()}, betas)
        else:
            darts_step(model, alphas, betas, w_opt, a_opt, batches, args.mode == "second-order", amp=amp,
                       scaler=scaler)

    model.train(args.mode != "forward")
    times = []
    for i in range(args.steps + 1):  # the first run warms up allocators and is not timed
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i > 0:
            times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    params, _ = counts(model)
    print(json.dumps({"mode": args.mode, "device": str(dev), "batch": args.batch, "threads": args.threads,
                      "precision": args.precision, "cudnn_benchmark": args.cudnn_benchmark,
                      "peak_reserved_bytes": torch.cuda.max_memory_reserved() if dev.type == "cuda" else None,
                      "steps": args.steps, "parameters": params, "median_s": statistics.median(times),
                      "times_s": times, "peak_memory_bytes": peak, "rss_before_model_bytes": rss_floor}))


def uniform_genotype(space, rng):
    """Uniform architecture under the space's rule (as src/sample/sampler.rs draws them)."""
    cell, ops = space["cell"], space["ops"]
    geno = {}
    for t in cell_types(space):
        nodes = []
        for i in range(cell["nodes"]):
            n_in = cell["inputs"] + i
            if cell["derive"]["rule"] == "top_k":
                froms = sorted(rng.sample(range(n_in), min(cell["derive"]["keep"], n_in)))
                nodes.append([{"op": rng.choice([o for o in ops if o != "none"]), "from": f} for f in froms])
            else:
                nodes.append([{"op": rng.choice(ops), "from": f} for f in range(n_in)])
        geno[t] = {"nodes": nodes, "concat": cell["concat"]}
    return geno


def score_subnet(model, space, geno, train_batches, val_batches):
    """Inherited-weight score with BN recalibration (reset, momentum=None cumulative average
    over the training batches, eval with it), the supernet's statistics restored after."""
    mix = {t: sparse(one_hot(edge_choice(geno[t], space), len(space["ops"])), unit=True) for t in cell_types(space)}
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        model.train()
        for x, _ in train_batches:
            model(x, mix)
        model.eval()
        loss, correct, n = 0.0, 0, 0
        for x, y in val_batches:
            logits = model(x, mix)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            n += len(y)
    for m, (mean, var, mom) in zip(bns, saved):
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.momentum = mom
    return loss / n, correct / n


def cmd_score(args):
    """Sub-networks scored per minute, as `cargo bench --bench step -- ... score` measures."""
    import random
    if args.partial_channels > 1:
        sys.exit("score: sub-networks cannot inherit the weights of a partial-channel supernet")
    torch.manual_seed(0)
    rss_floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    chw = parse_input(args.input)
    space = load_space(args.space, args.layers, args.channels)
    model = Supernet(space, chw, args.classes)
    if args.io:  # golden values: given weights and data, one JSON line of scores
        from safetensors.torch import load_file
        load_strict(model, args.weights)
        io = load_file(args.io)
        train = [(x, None) for x in io["train_x"].float()]
        val = [(io["val_x"][i:i + 256].float(), io["val_y"][i:i + 256].long()) for i in range(0, len(io["val_y"]), 256)]
        genos = [json.loads(l) for l in Path(args.genotypes).read_text().splitlines() if l.strip()]
        print(json.dumps({"scores": [score_subnet(model, space, g, train, val) for g in genos]}))
        return
    train = [(torch.randn(args.batch, *chw), torch.randint(args.classes, (args.batch,)))
             for _ in range(args.recalibrate)]
    val = [(torch.randn(min(256, args.val - i), *chw), torch.randint(args.classes, (min(256, args.val - i),)))
           for i in range(0, args.val, 256)]
    if args.genotypes:
        genos = [json.loads(l) for l in Path(args.genotypes).read_text().splitlines() if l.strip()]
    else:
        rng = random.Random(0)
        genos = [uniform_genotype(space, rng) for _ in range(args.archs)]
    times = []
    for i, g in enumerate([genos[0]] + genos):  # the first one warms up and is not timed
        t0 = time.perf_counter()
        score_subnet(model, space, g, train, val)
        if i > 0:
            times.append(time.perf_counter() - t0)
    print(json.dumps({"mode": "score", "device": "cpu", "batch": args.batch, "threads": args.threads,
                      "steps": len(times), "val_images": args.val, "recalibration_batches": args.recalibrate,
                      "median_s": statistics.median(times), "archs_per_minute": 60 * len(times) / sum(times),
                      "times_s": times, "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "rss_before_model_bytes": rss_floor}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, input_default=None):
        p.add_argument("--space", required=True)
        p.add_argument("--input", default=input_default, help="CxHxW, e.g. 3x32x32")
        p.add_argument("--classes", type=int, default=10)
        p.add_argument("--layers", type=int)
        p.add_argument("--channels", type=int)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--partial-channels", type=int, default=1,
                       help="PC-DARTS K: ops see C/K channels, edges normalised by betas (count, logits, bench)")
        return p

    common(sub.add_parser("count", help="parameter and BN-buffer counts as JSON")) \
        .add_argument("--genotype", help="JSON file/string, NB201 string or DARTS text")
    p = common(sub.add_parser("logits", help="logits for given weights, images and mixing weights"))
    p.add_argument("--genotype")
    p.add_argument("--weights", required=True)
    p.add_argument("--io", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--train", action="store_true", help="batch statistics instead of running ones")
    p.add_argument("--float64", action="store_true",
                   help="also logits64 (float64) and logits_cl (float32 channels-last)")
    p = common(sub.add_parser("bench", help="median seconds per forward or search step"), "3x32x32")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--mode", choices=["forward", "first-order", "second-order"], default="forward")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="the weight step's forward under torch.autocast (fp16 with GradScaler)")
    p.add_argument("--cudnn-benchmark", type=int, choices=[0, 1], default=1,
                   help="CUDA: torch.backends.cudnn.benchmark (DARTS sets it)")
    p = common(sub.add_parser("score", help="sub-networks scored per minute (inherited weights, BN recalibration)"),
               "1x28x28")
    p.add_argument("--batch", type=int, default=64, help="training batch of the recalibration")
    p.add_argument("--recalibrate", type=int, default=10, help="recalibration batches (K)")
    p.add_argument("--val", type=int, default=1280, help="validation images, evaluated in batches of 256")
    p.add_argument("--archs", type=int, default=10)
    p.add_argument("--genotypes", help="JSON lines of genotypes to score (as the Rust bench writes them)")
    p.add_argument("--weights", help="supernet weights (safetensors), with --io")
    p.add_argument("--io", help="safetensors with train_x [K,B,C,H,W], val_x, val_y: print [loss, accuracy] per genotype")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    {"count": cmd_count, "logits": cmd_logits, "bench": cmd_bench, "score": cmd_score}[args.cmd](args)


if __name__ == "__main__":
    main()
