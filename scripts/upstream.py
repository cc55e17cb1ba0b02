#!/usr/bin/env python3
"""Parity driver: `supernet`'s networks and search steps run on the UPSTREAM implementations.

The Rust integration tests (tests/integration/upstream.rs) save a network's weights under
their Rust names (`VarStore::save`), its inputs and mixing weights, and call

    .venv/bin/python scripts/upstream.py SPEC.json

This script builds the published modules from the installed packages (their code is never
copied into this repository; `scripts/setup` installs them):

  xautodl 1.0.0 (AutoDL-Projects, Dong et al.; the GDAS, SETN and NAS-Bench-201 code)
    xautodl.models.cell_searchs: NASNetworkDARTS, NASNetworkGDAS (DARTS space),
      TinyNetworkDarts, TinyNetworkGDAS, TinyNetworkSETN, TinyNetworkRANDOM (NAS-Bench-201)
    xautodl.models.cell_infers.TinyNetwork (NAS-Bench-201 stand-alone network)
    xautodl.nas_infer_model.DXYs.CifarNet with genotypes.Networks['DARTS_V2'] (DARTS's
      evaluation network NetworkCIFAR, "copied and modified from quark0/darts")
  nni 3.0 (Microsoft NNI; installed with its import-time dependencies into .venv/upstream,
    see scripts/setup): nni.nas.hub.pytorch.nasnet.DARTS, the DARTS space's evaluation network

copies the Rust weights into them through the explicit name maps below (every Rust tensor
is mapped, every upstream tensor is filled; the only upstream names left out are PyTorch's
`num_batches_tracked` buffers, which tch does not have and which no forward pass reads with
the default BN momentum, and xautodl's `arch_*parameters`, set from the given alphas), and
writes the upstream results back under the Rust names.

Tasks (SPEC["task"]):
  logits  forward passes in eval and/or train mode on SPEC["io"]'s `x` with the given mixing
          weights (raw alphas `alpha_<cell>`, Rust column order) or fixed GDAS Gumbel noise
          (`gumbel_<cell>`): `logits_<mode>`, `aux_<mode>` (evaluation networks), and for GDAS
          the ops the upstream sample chose (`index_<cell>`) and the straight-through alpha
          gradient of the train-mode cross-entropy (`grad_alpha_<cell>_train`).
  step    one search step by the published update rules (see `step_*` below), once in float32
          in float32 channels-last and in float64, each from the same start; every weight, BN
          buffer, alpha, SGD momentum buffer and Adam moment after the step, under `f32.` /
          `f32cl.` / `f64.` + Rust name.

DARTS-space search networks: xautodl's NASNetworkDARTS/NASNetworkGDAS differ from DARTS's own
`model_search.Network` (quark0/darts, cnn/model_search.py and cnn/operations.py) in three
places, which `to_darts_model_search` changes back before the weights are loaded (the Rust
supernet follows DARTS there; README "Differences from upstream"):
  1. DARTS's MixedOp follows every pooling op with `nn.BatchNorm2d(C, affine=False)`;
     xautodl's POOLING has no BN.
  2. DARTS's Network pools the last cell output directly; xautodl's adds `lastact`
     (BN + ReLU) first.
  3. DARTS's convolutions have no bias; xautodl's cell_operations use `bias=not affine`, so
     its affine-free search cells have one before every BN.
Everything else (cell wiring, edge order, preprocessing, FactorizedReduce, the ops, strides,
the stem, the classifier, the channel and reduction layout, softmax and Gumbel sampling) is
xautodl's code as installed.
"""
import contextlib
import copy
import io
import json
import math
import re
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
# nni and its import-time dependencies live apart from .venv's site-packages (scripts/setup):
# installed with --no-deps so that nothing can replace the torch wheel libtorch comes from.
NNI_DIR = ROOT / ".venv" / "upstream"

# The DARTS space's op names in xautodl (cell_operations.OPS): DARTS's sep_conv is xautodl's
# DualSepConv ("dua_sepc", two SepConv halves `op_a`, `op_b`), DARTS's dil_conv is xautodl's
# SepConv with dilation 2 ("dil_sepc"); the other names are the same.
XAUTODL_DARTS_OP = {
    "sep_conv_3x3": "dua_sepc_3x3",
    "sep_conv_5x5": "dua_sepc_5x5",
    "dil_conv_3x3": "dil_sepc_3x3",
    "dil_conv_5x5": "dil_sepc_5x5",
}


def fail(msg):
    sys.exit(f"upstream.py: {msg}")


# ---------------------------------------------------------------------------------------------
# Name maps: Rust name -> upstream name. Each is a list of (pattern, rewrite) rules tried in
# order; a Rust name no rule matches is an error, so nothing is silently left out.


def rule(pattern, rewrite):
    return (re.compile(pattern), rewrite)


def apply_rules(rules, name):
    for pattern, rewrite in rules:
        m = pattern.fullmatch(name)
        if m:
            return rewrite(m) if callable(rewrite) else m.expand(rewrite)
    raise KeyError(f"no name-map rule for Rust tensor {name!r}")


SAME = r"\g<0>"


def nb201_search_rules(ops):
    """Rust NAS-Bench-201 supernet -> xautodl TinyNetwork{Darts,GDAS,SETN,RANDOM}.

    Edges: Rust `cells.<i>.edges.<to>_<from>.<op name>.op.<k>` -> xautodl
    `cells.<i>.edges.<to><-<from>.<op index>.op.<k>` (ModuleList in search_space order,
    which is the Rust column order). Stem, residual blocks, lastact, classifier: same names.
    """
    return [
        rule(r"cells\.(\d+)\.edges\.(\d+)_(\d+)\.(\w+)\.(op\.\d+\.\w+)",
             lambda m: f"cells.{m[1]}.edges.{m[2]}<-{m[3]}.{ops.index(m[4])}.{m[5]}"),
        rule(r"(stem\.[01]|lastact\.0|classifier|cells\.\d+\.conv_[ab]\.op\.[12]|cells\.\d+\.downsample\.1)\.\w+",
             SAME),
    ]


def nb201_infer_rules(genotype):
    """Rust stand-alone NAS-Bench-201 network -> xautodl cell_infers.TinyNetwork.

    Edges: `cells.<i>.edges.<to>_<from>.<op>.op.<k>` -> `cells.<i>.layers.<L>.op.<k>`, L the
    position of (to, from) in the genotype read node by node (InferCell's layer order).
    """
    layer = {}
    for i, node in enumerate(genotype["normal"]["nodes"]):
        for g in node:
            layer[(i + 1, g["from"])] = len(layer)
    return [
        rule(r"cells\.(\d+)\.edges\.(\d+)_(\d+)\.\w+\.(op\.\d+\.\w+)",
             lambda m: f"cells.{m[1]}.layers.{layer[(int(m[2]), int(m[3]))]}.{m[4]}"),
        rule(r"(stem\.[01]|lastact\.0|classifier|cells\.\d+\.conv_[ab]\.op\.[12]|cells\.\d+\.downsample\.1)\.\w+",
             SAME),
    ]


def darts_op_rest(op, rest, kind):
    """The part of an op's tensor name after the op, DARTS-ops flavour `kind`:
    'xautodl-search' (xautodl DualSepConv/SepConv, plus DARTS's pool BN as `1`),
    'dxys' (DARTS operations.py as copied into xautodl.nas_infer_model),
    'nni' (nni nasnet.py: the op is the nn.Sequential itself)."""
    if op.startswith("skip_connect"):  # FactorizedReduce at stride 2
        m = re.fullmatch(r"conv_([12])\.weight", rest)
        if m and kind != "nni":
            return f"convs.{int(m[1]) - 1}.weight"
        return rest  # bn.* (and nni's conv_1/conv_2)
    if op.endswith("pool_3x3"):
        m = re.fullmatch(r"bn\.(\w+)", rest)
        if m and kind == "xautodl-search":
            return f"1.{m[1]}"
        raise KeyError(f"{op}.{rest}")
    m = re.fullmatch(r"op\.(\d+)\.(\w+)", rest)
    if not m:
        raise KeyError(f"{op}.{rest}")
    k, p = int(m[1]), m[2]
    if kind == "xautodl-search" and op.startswith("sep_conv"):
        # (ReLU, dw, pw, BN) twice as op_a.op.[0-3], op_b.op.[0-3]
        return f"op_a.op.{k}.{p}" if k < 4 else f"op_b.op.{k - 4}.{p}"
    if kind == "nni":
        return f"{k}.{p}"
    return rest


def nasnet_search_rules(ops):
    """Rust DARTS supernet -> xautodl NASNetwork{DARTS,GDAS} after `to_darts_model_search`.

    Edges: `cells.<i>.edges.<to>_<from>.<op>.<rest>` -> `cells.<i>.edges.<to-2><-<from>._ops.
    <index of op in xautodl's 'darts' space>.<rest>` (`darts_op_rest`). Preprocessing:
    ReLUConvBN `op.<k>` the same; FactorizedReduce `conv_1`/`conv_2` -> `convs.0`/`convs.1`.
    """
    from xautodl.models.cell_operations import SearchSpaceNames
    xops = SearchSpaceNames["darts"]

    def edge(m):
        op = m[4]
        idx = xops.index(XAUTODL_DARTS_OP.get(op, op))
        return f"cells.{m[1]}.edges.{int(m[2]) - 2}<-{m[3]}._ops.{idx}.{darts_op_rest(op, m[5], 'xautodl-search')}"

    return [
        rule(r"cells\.(\d+)\.edges\.(\d+)_(\d+)\.(\w+?)\.((?:op|bn|conv_[12])\..+)", edge),
        rule(r"(cells\.\d+\.preprocess0)\.conv_([12])\.weight", lambda m: f"{m[1]}.convs.{int(m[2]) - 1}.weight"),
        rule(r"cells\.\d+\.preprocess[01]\.(op\.[12]|bn)\.\w+", SAME),
        rule(r"(stem\.[01]|classifier)\.\w+", SAME),
    ]


def flat_layers(cell):
    """(to, from) -> position in a DARTS genotype cell read node by node."""
    pos = {}
    for i, node in enumerate(cell["nodes"]):
        for g in node:
            pos[(i + 2, g["from"])] = len(pos)
    return pos


def dxys_rules(genotype, reductions):
    """Rust stand-alone DARTS network -> xautodl.nas_infer_model.DXYs NetworkCIFAR.

    Stem `0`/`1` -> `conv`/`bn` (CifarHEAD); edges -> `cells.<i>._ops.<L>` (InferCell's op
    list: the genotype read node by node); FactorizedReduce `conv_1`/`conv_2` -> `convs.0/1`;
    auxiliary head and classifier: same names.
    """
    pos = {t: flat_layers(genotype[t]) for t in ("normal", "reduce")}

    def edge(m):
        t = "reduce" if int(m[1]) in reductions else "normal"
        return f"cells.{m[1]}._ops.{pos[t][(int(m[2]), int(m[3]))]}.{darts_op_rest(m[4], m[5], 'dxys')}"

    return [
        rule(r"stem\.0\.weight", "stem.conv.weight"),
        rule(r"stem\.1\.(\w+)", r"stem.bn.\1"),
        rule(r"cells\.(\d+)\.edges\.(\d+)_(\d+)\.(\w+?)\.((?:op|bn|conv_[12])\..+)", edge),
        rule(r"(cells\.\d+\.preprocess0)\.conv_([12])\.weight", lambda m: f"{m[1]}.convs.{int(m[2]) - 1}.weight"),
        rule(r"cells\.\d+\.preprocess[01]\.(op\.[12]|bn)\.\w+", SAME),
        rule(r"(auxiliary_head\.(features\.[2356]|classifier)|classifier)\.\w+", SAME),
    ]


def nni_rules(genotype, layers, wrapped):
    """Rust stand-alone DARTS network -> nni DARTS (frozen NDS model).

    Cell i -> `stages.<s>.<b>` (NDS's three stages of (i+1)*L//3 - i*L//3 cells); preprocessN
    -> `preprocessor.preN`, ReLUConvBN `op.<k>` -> `<k>` (nni's ReLUConvBN is the Sequential);
    edge (to, from) -> `ops.<to-2>.<j>`, j its position among node `to`'s two inputs in the
    genotype, op `op.<k>` -> `<k>`; with drop-path each non-identity op is wrapped as
    `Sequential(op, DropPath)`, so its names gain a `0.` (`wrapped`).
    """
    per_stage = [(i + 1) * layers // 3 - i * layers // 3 for i in range(3)]
    where = []
    for s, n in enumerate(per_stage):
        where += [(s, b) for b in range(n)]
    red = {sum(per_stage[:1]), sum(per_stage[:2])}
    slot = {}
    for t in ("normal", "reduce"):
        for i, node in enumerate(genotype[t]["nodes"]):
            for j, g in enumerate(node):
                slot[(t, i + 2, g["from"])] = j

    def cell(i):
        s, b = where[int(i)]
        return f"stages.{s}.{b}"

    def edge(m):
        t = "reduce" if int(m[1]) in red else "normal"
        to, frm, op = int(m[2]), int(m[3]), m[4]
        rest = darts_op_rest(op, m[5], "nni")
        return f"{cell(m[1])}.ops.{to - 2}.{slot[(t, to, frm)]}.{'0.' if wrapped else ''}{rest}"

    return [
        rule(r"cells\.(\d+)\.edges\.(\d+)_(\d+)\.(\w+?)\.((?:op|bn|conv_[12])\..+)", edge),
        rule(r"cells\.(\d+)\.preprocess([01])\.op\.([12])\.(\w+)",
             lambda m: f"{cell(m[1])}.preprocessor.pre{m[2]}.{m[3]}.{m[4]}"),
        rule(r"cells\.(\d+)\.preprocess([01])\.((?:conv_[12]|bn)\.\w+)",
             lambda m: f"{cell(m[1])}.preprocessor.pre{m[2]}.{m[3]}"),
        rule(r"(stem\.[01]|auxiliary_head\.(features\.[2356]|classifier)|classifier)\.\w+", SAME),
    ]


def load_mapped(model, rust_state, rules):
    """Copy `rust_state` into `model` by the name map; every Rust tensor must map to a distinct
    upstream tensor of the same shape, and every upstream tensor except `num_batches_tracked`
    must be filled. Returns {upstream name: Rust name}."""
    mapped, back = {}, {}
    for name, t in rust_state.items():
        up = apply_rules(rules, name)
        if up in back:
            fail(f"name map sends both {back[up]!r} and {name!r} to {up!r}")
        back[up] = name
        mapped[up] = t
    target = model.state_dict()
    unknown = sorted(set(mapped) - set(target))
    # The alphas (xautodl's arch_*parameters) are not network weights: set_alphas fills them.
    missing = sorted(k for k in set(target) - set(mapped)
                     if not k.endswith("num_batches_tracked") and not k.startswith("arch_"))
    if unknown or missing:
        fail(f"name map does not cover the model: {len(unknown)} mapped names not in the upstream "
             f"model {unknown[:8]}, {len(missing)} upstream tensors not filled {missing[:8]}")
    for up, t in mapped.items():
        if tuple(target[up].shape) != tuple(t.shape):
            fail(f"{back[up]} -> {up}: shape {tuple(t.shape)} vs upstream {tuple(target[up].shape)}")
    model.load_state_dict(mapped, strict=False)
    return back


# ---------------------------------------------------------------------------------------------
# Building the upstream networks


@contextlib.contextmanager
def quiet():
    """Some upstream constructors print (DXYs InferCell prints its channels)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def to_darts_model_search(net):
    """Undo xautodl's three deviations from DARTS's model_search.Network (module docstring)."""
    for cell in net.cells:
        c = cell.preprocess1.op[1].out_channels
        for mixed in cell.edges.values():
            for i, name in enumerate(cell.op_names):
                if "pool" in name:  # 1. model_search.MixedOp: Sequential(pool, BN(C, affine=False))
                    mixed._ops[i] = nn.Sequential(mixed._ops[i], nn.BatchNorm2d(c, affine=False))
        for m in cell.modules():  # 3. operations.py: Conv2d(..., bias=False)
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias = None
    net.lastact = nn.Identity()  # 2. Network.forward: global_pooling(s1)
    return net


def build(spec):
    """(model, name rules, column permutation Rust -> upstream or None)."""
    kind, C, N, classes = spec["net"], spec["C"], spec["N"], spec["classes"]
    if kind == "tiny-infer":
        from xautodl.models.cell_infers import TinyNetwork
        from xautodl.models.cell_searchs import CellStructure
        arch = CellStructure.str2structure(spec["arch"])
        net = TinyNetwork(C, N, arch, classes)
        return net, nb201_infer_rules(spec["genotype"]), None
    if kind.startswith("tiny-"):
        from xautodl.models.cell_operations import SearchSpaceNames
        from xautodl.models.cell_searchs import (TinyNetworkDarts, TinyNetworkGDAS, TinyNetworkRANDOM,
                                                 TinyNetworkSETN)
        ops = SearchSpaceNames["nas-bench-201"]
        if ops != spec["ops"]:
            fail(f"NAS-Bench-201 op order {ops} differs from the Rust space's {spec['ops']}")
        cls = {"tiny-darts": TinyNetworkDarts, "tiny-gdas": TinyNetworkGDAS, "tiny-setn": TinyNetworkSETN,
               "tiny-random": TinyNetworkRANDOM}[kind]
        # The search scripts: affine=False, track_running_stats=bool(--track_running_stats);
        # supernet's BN always tracks running statistics.
        net = cls(C, N, 4, classes, ops, False, True)
        return net, nb201_search_rules(ops), None
    if kind in ("nasnet-darts", "nasnet-gdas"):
        from xautodl.models.cell_operations import SearchSpaceNames
        from xautodl.models.cell_searchs import NASNetworkDARTS, NASNetworkGDAS
        xops = SearchSpaceNames["darts"]
        ours = {v: k for k, v in XAUTODL_DARTS_OP.items()}
        perm = [spec["ops"].index(ours.get(o, o)) for o in xops]  # upstream column j = our perm[j]
        cls = NASNetworkDARTS if kind == "nasnet-darts" else NASNetworkGDAS
        # configs/search-archs/*-NASNet-CIFAR.config: steps 4, multiplier 4, stem_multiplier 3;
        # the search scripts: affine False, track_running_stats from the command line.
        net = to_darts_model_search(cls(C, N, 4, 4, 3, classes, xops, False, True))
        return net, nasnet_search_rules(spec["ops"]), perm
    if kind == "dxys-cifar":
        from xautodl.nas_infer_model.DXYs import CifarNet
        from xautodl.nas_infer_model.DXYs.genotypes import Networks
        geno = Networks[spec["upstream_genotype"]]
        check_darts_genotype(spec["genotype"], geno)
        with quiet():
            net = CifarNet(C, N, 3, True, geno, classes)
        net.drop_path_prob = spec.get("drop_path", 0.0) or -1
        return net, dxys_rules(spec["genotype"], {N, 2 * N + 1}), None
    if kind == "nni-darts":
        sys.path.insert(0, str(NNI_DIR))
        import warnings
        warnings.filterwarnings("ignore")
        from nni.nas.hub.pytorch.nasnet import DARTS
        arch = nni_arch(spec["genotype"])
        published = nni_published_arch(DARTS, spec["upstream_genotype"])
        if arch != published:
            fail(f"the Rust genotype as nni's arch differs from nni's '{spec['upstream_genotype']}':\n{arch}\n{published}")
        layers = 3 * N + 2
        dp = spec.get("drop_path", 0.0)
        net = DARTS.frozen_factory(arch)(width=C, num_cells=layers, dataset="cifar", auxiliary_loss=True,
                                          drop_path_prob=dp)
        return net, nni_rules(spec["genotype"], layers, dp > 0), None
    fail(f"unknown net {kind!r}")


def check_darts_genotype(ours, theirs):
    """The Rust genotype (JSON) must be the upstream's published one, edge for edge."""
    for t in ("normal", "reduce"):
        mine = [(g["op"], g["from"]) for node in ours[t]["nodes"] for g in node]
        up = [tuple(e) for node in getattr(theirs, t) for e in node]
        if mine != up or list(ours[t]["concat"]) != list(getattr(theirs, t + "_concat")):
            fail(f"{t} cell differs from the upstream genotype: {mine} vs {up}")


def nni_arch(genotype):
    arch = {}
    for t in ("normal", "reduce"):
        for i, node in enumerate(genotype[t]["nodes"]):
            for j, g in enumerate(node):
                arch[f"{t}/op_{i + 2}_{j}"] = g["op"]
                arch[f"{t}/input_{i + 2}_{j}"] = [g["from"]]
    return arch


def nni_published_arch(DARTS, name):
    """The arch dict nni's DARTS.load_searched_model(name) builds its model from."""
    seen = {}
    original = DARTS.frozen_factory.__func__

    def capture(cls, arch):
        seen.update(arch)
        return original(cls, arch)

    DARTS.frozen_factory = classmethod(capture)
    try:
        DARTS.load_searched_model(name)
    finally:
        DARTS.frozen_factory = classmethod(original)
    return seen


# ---------------------------------------------------------------------------------------------
# Fixed GDAS noise. xautodl's GDAS forward draws `gumbels = -torch.empty_like(alpha)
# .exponential_().log()` (once per cell type, normal first). Inside `fixed_gumbel`, each such
# draw is replaced by exp(-g) for the next given Gumbel tensor g, so the upstream forward runs
# unchanged on the Rust sample's noise (to within one rounding of exp/log).


@contextlib.contextmanager
def fixed_gumbel(gumbels):
    queue = list(gumbels)
    original = torch.Tensor.exponential_

    def exponential_(self, *args, **kwargs):
        if not queue:
            fail("the upstream forward drew more Gumbel noise than was given")
        g = queue.pop(0)
        with torch.no_grad():
            return self.copy_(torch.exp(-g.to(self.dtype)))

    torch.Tensor.exponential_ = exponential_
    try:
        yield
    finally:
        torch.Tensor.exponential_ = original
    if queue:
        fail(f"{len(queue)} Gumbel tensors were not drawn")


@contextlib.contextmanager
def capture_gdas_index(found):
    """Record the op index each cell type's sample chose (first cell call of each kind)."""
    from xautodl.models.cell_searchs.search_cells import NAS201SearchCell, NASNetSearchCell
    originals = (NASNetSearchCell.forward_gdas, NAS201SearchCell.forward_gdas)

    def nasnet(self, s0, s1, w, index):
        found.setdefault("reduce" if self.reduction else "normal", index.view(-1).clone())
        return originals[0](self, s0, s1, w, index)

    def nb201(self, x, w, index):
        found.setdefault("normal", index.view(-1).clone())
        return originals[1](self, x, w, index)

    NASNetSearchCell.forward_gdas, NAS201SearchCell.forward_gdas = nasnet, nb201
    try:
        yield
    finally:
        NASNetSearchCell.forward_gdas, NAS201SearchCell.forward_gdas = originals


# ---------------------------------------------------------------------------------------------
# Alphas


def cell_types(spec):
    return ["normal", "reduce"] if spec["net"].startswith("nasnet") else ["normal"]


def alpha_params(net, spec):
    if spec["net"].startswith("nasnet"):
        return {"normal": net.arch_normal_parameters, "reduce": net.arch_reduce_parameters}
    return {"normal": net.arch_parameters}


def cols(t, perm):
    """Rust column order -> upstream column order (last axis)."""
    return t if perm is None else t[..., perm]


def uncols(t, perm):
    if perm is None:
        return t
    out = torch.empty_like(t)
    out[..., perm] = t
    return out


def set_alphas(net, spec, io_, perm):
    with torch.no_grad():
        for t, p in alpha_params(net, spec).items():
            p.copy_(cols(io_[f"alpha_{t}"], perm).to(p.dtype))


def outputs(kind, out):
    """(main logits, auxiliary logits or None) from an upstream forward's return value:
    xautodl networks return (features, logits), DXYs in training (features, [logits, aux]);
    nni returns logits, in training with the auxiliary head (logits, aux)."""
    if kind == "nni-darts":
        return (out[0], out[1]) if isinstance(out, tuple) else (out, None)
    logits = out[1]
    return (logits[0], logits[1]) if isinstance(logits, list) else (logits, None)


# ---------------------------------------------------------------------------------------------
# Task: logits


def task_logits(spec):
    """Forward passes in SPEC["modes"] order (eval before train: a train pass moves the BN
    statistics). With SPEC["float64"], the train pass again on float32 in channels-last
    layout (`logitscl_train`, ...) and on a float64 copy of the network and inputs
    (`logits64_train`, `aux64_train`, `grad_alpha_<cell>64_train`): how far float32 rounding alone
    moves upstream's own results."""
    io_ = load_file(spec["io"])
    out = {}
    runs = [(torch.float32, "", torch.contiguous_format)]
    if spec.get("float64"):
        runs += [(torch.float32, "cl", torch.channels_last), (torch.float64, "64", torch.contiguous_format)]
    for dtype, tag, layout in runs:
        net, rules, perm = build(spec)
        net = net.to(dtype)
        load_mapped(net, {k: v.to(dtype) for k, v in load_file(spec["weights"]).items()}, rules)
        out.update(logits_passes(spec, net.to(memory_format=layout), perm, io_, dtype, tag, layout))
    save_file(out, spec["out"])


def logits_passes(spec, net, perm, io_, dtype, tag, layout):
    kind = spec["net"]
    x = io_["x"].to(dtype).contiguous(memory_format=layout)
    if "alpha_normal" in io_ and kind != "tiny-random":  # RANDOM-NAS has no alphas
        set_alphas(net, spec, io_, perm)
    if kind == "tiny-setn":
        mode = spec["setn_mode"]
        if mode == "dynamic":
            from xautodl.models.cell_searchs import CellStructure
            net.set_cal_mode("dynamic", CellStructure.str2structure(spec["arch"]))
        else:
            net.set_cal_mode(mode)
    if kind == "tiny-random":
        from xautodl.models.cell_searchs import CellStructure
        net.arch_cache = CellStructure.str2structure(spec["arch"])
    if kind in ("tiny-gdas", "nasnet-gdas"):
        net.set_tau(spec["tau"])
    out = {"parameters": torch.tensor([sum(p.numel() for n, p in net.named_parameters() if "arch" not in n)])}
    # The other passes are only needed where float32 noise is measured (training mode).
    for mode in [m for m in spec["modes"] if not tag or m == "train"]:
        train = mode == "train"
        net.train(train)
        if kind in ("dxys-cifar", "nni-darts") and train and spec.get("drop_path", 0.0) > 0:
            torch.manual_seed(spec["seed"])  # the Rust test seeds libtorch's generator the same
        found = {}
        gumbels = [cols(io_[f"gumbel_{t}"], perm) for t in cell_types(spec)] if "gdas" in kind else []
        grad = "gdas" in kind and train
        with fixed_gumbel(gumbels), capture_gdas_index(found), torch.set_grad_enabled(grad):
            main, aux = outputs(kind, net(x))
        out[f"logits{tag}_{mode}"] = main.detach().contiguous()
        if aux is not None:
            out[f"aux{tag}_{mode}"] = aux.detach().contiguous()
        if "gdas" in kind:
            for t, idx in found.items():
                out[f"index{tag}_{t}"] = torch.tensor([perm[i] if perm else i for i in idx.tolist()])
        if grad:
            F.cross_entropy(main, io_["y"].long()).backward()
            for t, p in alpha_params(net, spec).items():
                out[f"grad_alpha_{t}{tag}_train"] = uncols(p.grad, perm).contiguous()
                p.grad = None
    return out


# ---------------------------------------------------------------------------------------------
# Task: one search step by the published update rules, on the upstream modules.


def weights_of(net):
    return [p for n, p in net.named_parameters() if "arch" not in n]


def step_first_order(net, ctx):
    """DARTS cnn/train_search.py train() with architect.step(unrolled=False):
    Architect._backward_step: Adam step on the alphas from loss_val.backward(); then
    optimizer.zero_grad(); loss.backward(); clip_grad_norm(model.parameters(), grad_clip);
    optimizer.step(). DARTS's model.parameters() holds the weights only (its alphas are plain
    Variables), so the clipping norm is over the weights."""
    ctx.a_opt.zero_grad()
    ctx.loss(net, "val").backward()
    ctx.a_opt.step()
    weight_step(net, ctx, ctx.weights)


def weight_step(net, ctx, clip_params):
    ctx.w_opt.zero_grad()
    loss = ctx.loss(net, "train")
    loss.backward()
    ctx.record_norms(clip_params)
    nn.utils.clip_grad_norm_(clip_params, ctx.hp["grad_clip"])
    ctx.w_opt.step()
    ctx.out["loss_train"] = loss.detach()


def step_second_order(net, ctx):
    """DARTS cnn/architect.py, Architect.step(unrolled=True):
    _compute_unrolled_model: w' = w - eta * (momentum * buf + dL_train/dw + wd * w) on a copy
    of the model; loss_val at w' backpropagated to dalpha and dw'; _hessian_vector_product:
    R = 0.01 / ||dw'||, w +- R dw', (dalpha L_train(w+) - dalpha L_train(w-)) / (2R), and
    w restored by adding R back; dalpha - eta * hessian into alpha.grad; Adam step. Then the
    weight step of train_search.py as in first order."""
    hp, ws = ctx.hp, ctx.weights
    ctx.a_opt.zero_grad()
    loss = ctx.loss(net, "train")
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts])  # architect.py's _concat
    theta = flat(w.detach() for w in ws)
    try:
        moment = flat(ctx.w_opt.state[w]["momentum_buffer"] for w in ws) * hp["momentum"]
    except KeyError:
        moment = torch.zeros_like(theta)
    dtheta = flat(torch.autograd.grad(loss, ws)) + hp["weight_decay"] * theta
    unrolled = copy.deepcopy(net)
    offset = 0
    with torch.no_grad():
        for w in weights_of(unrolled):
            n = w.numel()
            w.copy_((theta - hp["lr"] * (moment + dtheta))[offset:offset + n].view(w.shape))
            offset += n
    unrolled.zero_grad()
    ctx.loss(unrolled, "val").backward()
    dalpha = [a.grad for a in ctx.alphas_of(unrolled)]
    vector = [w.grad.detach() for w in weights_of(unrolled)]
    R = 1e-2 / flat(vector).norm()
    with torch.no_grad():
        for p, v in zip(ws, vector):
            p.add_(v, alpha=R)
    grads_p = torch.autograd.grad(ctx.loss(net, "train"), ctx.alphas)
    with torch.no_grad():
        for p, v in zip(ws, vector):
            p.sub_(v, alpha=2 * R)
    grads_n = torch.autograd.grad(ctx.loss(net, "train"), ctx.alphas)
    with torch.no_grad():
        for p, v in zip(ws, vector):
            p.add_(v, alpha=R)
    for a, g, gp, gn in zip(ctx.alphas, dalpha, grads_p, grads_n):
        a.grad = g - hp["lr"] * (gp - gn).div_(2 * R)
    ctx.a_opt.step()
    weight_step(net, ctx, ctx.weights)


def step_gdas(net, ctx):
    """xautodl exps/NAS-Bench-201-algos/GDAS.py (and exps/algos/GDAS.py) search_func: weights
    first (w_optimizer.zero_grad(); base_loss.backward(); clip_grad_norm_(network.parameters(),
    5); w_optimizer.step()), then the alphas (a_optimizer.zero_grad(); arch_loss.backward();
    a_optimizer.step()); each forward draws its own Gumbel sample (here the two fixed ones).
    network.parameters() includes the alphas: the clipping norm covers their gradient too
    (`clip_norm_all`); `clip_norm_weights` is the weights' alone."""
    params = list(net.parameters())
    chosen = [{}, {}]
    with fixed_gumbel(ctx.gumbels[0]), capture_gdas_index(chosen[0]):
        weight_step(net, ctx, params)
    ctx.a_opt.zero_grad()
    with fixed_gumbel(ctx.gumbels[1]), capture_gdas_index(chosen[1]):
        loss = ctx.loss(net, "val")
    for k, found in enumerate(chosen):
        for t, idx in found.items():
            ctx.out[f"index{k}_{t}"] = torch.tensor([ctx.perm[i] if ctx.perm else i for i in idx.tolist()])
    loss.backward()
    ctx.a_opt.step()


def step_spos(net, ctx):
    """xautodl exps/algos/RANDOM-NAS.py search_func (weight-sharing random search, the SPOS
    training rule on NAS-Bench-201): network.random_genotype(True) (here the Rust path as
    arch_cache); w_optimizer.zero_grad(); loss.backward(); clip_grad_norm_(network.parameters(),
    5); w_optimizer.step(). Operations off the path get no gradient, and torch's SGD skips them
    (no momentum, no weight decay)."""
    from xautodl.models.cell_searchs import CellStructure
    net.arch_cache = CellStructure.str2structure(ctx.spec["arch"])
    weight_step(net, ctx, list(net.parameters()))


STEPS = {"first-order": step_first_order, "second-order": step_second_order, "gdas": step_gdas,
         "spos": step_spos}


class StepContext:
    pass


def task_step(spec):
    state = load_file(spec["state"])
    io_ = load_file(spec["io"])
    hp = spec["hp"]
    out = {}
    # float32 as published, float32 in channels-last memory layout (the kernels the Rust side
    # runs on the CPU), float64: the test measures float32 noise as the larger deviation of
    # the two float32 runs from the float64 one.
    for dtype, tag, layout in ((torch.float32, "f32", torch.contiguous_format),
                               (torch.float32, "f32cl", torch.channels_last),
                               (torch.float64, "f64", torch.contiguous_format)):
        net, rules, perm = build(spec)
        net = net.to(dtype)
        rust_weights = {k[len("w."):]: v.to(dtype) for k, v in state.items() if k.startswith("w.")}
        back = load_mapped(net, rust_weights, rules)
        if spec["net"] != "tiny-random":
            set_alphas(net, spec, state, perm)
        net = net.to(memory_format=layout)
        net.train()
        ctx = StepContext()
        ctx.spec, ctx.hp, ctx.out, ctx.perm = spec, hp, {}, perm
        ctx.weights = weights_of(net)
        name_of = {id(p): back[n] for n, p in net.named_parameters() if n in back}
        ctx.w_opt = torch.optim.SGD(ctx.weights, lr=hp["lr"], momentum=hp["momentum"],
                                    weight_decay=hp["weight_decay"], nesterov=hp["nesterov"])
        for w in ctx.weights:
            ctx.w_opt.state[w]["momentum_buffer"] = state[f"sgd.{name_of[id(w)]}"].to(dtype).clone()
        has_alphas = spec["net"] != "tiny-random"  # RANDOM-NAS has no architecture parameters
        ctx.alphas_of = lambda m: list(alpha_params(m, spec).values()) if has_alphas else []
        ctx.alphas = ctx.alphas_of(net)
        if ctx.alphas:
            ctx.a_opt = torch.optim.Adam(ctx.alphas, lr=hp["arch_lr"], betas=tuple(hp["arch_betas"]),
                                         weight_decay=hp["arch_weight_decay"])
            for t, a in alpha_params(net, spec).items():
                ctx.a_opt.state[a] = {
                    "step": torch.tensor(float(hp["adam_step"])),
                    "exp_avg": cols(state[f"adam.m.{t}"], perm).to(dtype).clone(),
                    "exp_avg_sq": cols(state[f"adam.v.{t}"], perm).to(dtype).clone(),
                }
        if "gdas" in spec["net"]:
            net.set_tau(hp["tau"])
            ctx.gumbels = [[cols(io_[f"gumbel{i}_{t}"], perm).to(dtype) for t in cell_types(spec)] for i in (0, 1)]

        def loss(model, which, ctx=ctx):
            x, y = io_[f"x_{which}"].to(dtype).contiguous(memory_format=layout), io_[f"y_{which}"].long()
            logits, _ = outputs(spec["net"], model(x))
            return F.cross_entropy(logits, y)

        def record_norms(params, ctx=ctx):
            def norm(ps):
                gs = [p.grad.detach().double().norm() for p in ps if p.grad is not None]
                return torch.stack(gs).norm() if gs else torch.zeros((), dtype=torch.float64)
            ctx.out["clip_norm_all"] = norm(params)
            ctx.out["clip_norm_weights"] = norm(ctx.weights)

        ctx.loss, ctx.record_norms = loss, record_norms
        STEPS[spec["algo"]](net, ctx)

        for up, t in net.state_dict().items():
            if up in back:
                out[f"{tag}.w.{back[up]}"] = t.detach().clone()
        for w in ctx.weights:
            buf = ctx.w_opt.state[w].get("momentum_buffer")
            out[f"{tag}.sgd.{name_of[id(w)]}"] = buf.detach().clone()
        if ctx.alphas:
            for t, a in alpha_params(net, spec).items():
                out[f"{tag}.alpha.{t}"] = uncols(a.detach(), perm).clone()
                s = ctx.a_opt.state[a]
                out[f"{tag}.adam.m.{t}"] = uncols(s["exp_avg"], perm).clone()
                out[f"{tag}.adam.v.{t}"] = uncols(s["exp_avg_sq"], perm).clone()
                out[f"{tag}.adam.step"] = s["step"].detach().clone().reshape(1)
        for k, v in ctx.out.items():
            out[f"{tag}.{k}"] = v.detach().reshape(-1).clone()
    save_file({k: v.contiguous() for k, v in out.items()}, spec["out"])


def main():
    if len(sys.argv) != 2:
        fail("usage: upstream.py SPEC.json (written by tests/integration/upstream.rs)")
    spec = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(spec.get("threads", 1))
    {"logits": task_logits, "step": task_step}[spec["task"]](spec)


if __name__ == "__main__":
    main()
