#!/usr/bin/env python3
"""Rebuild a model exported by `supernet train` / `supernet extract` in plain PyTorch.

  python scripts/rebuild_model.py MODEL_DIR [--device cpu|cuda] [--rtol 1e-5] [--quiet]
                                   [--onnx OUT.onnx] [--torchscript OUT.pt]

Driven only by the export directory: MODEL_DIR/model.json says what the network is (a cell
network: genotype, resolved cell space, op style, auxiliary head; a chain network: the chain
space and the choice per searchable layer; both: the input shape), MODEL_DIR/model.safetensors
holds its tensors, MODEL_DIR/model.probe.safetensors a few images with the logits `supernet`
computed for them in eval mode. The script builds the network independently of the Rust code
(same tensor names, as PyTorch's nn.Sequential / ModuleDict would give them), loads the
weights, and checks

  * that the network's state_dict names are exactly the file's tensor names (PyTorch's BN
    `num_batches_tracked` buffers, which libtorch's VarStore lacks, excepted) and its shapes,
  * the trainable parameter count, with and without the auxiliary head,
  * max |rebuilt - supernet| <= rtol * max(1, max |supernet|) on the probe logits.

Deployment formats, written only when those checks pass, from the rebuilt network in eval mode
(on the CPU, batch size left free), and each checked against the probe logits the same way:

  * --onnx OUT.onnx: ONNX (input `images`, output `logits`), run in onnxruntime;
  * --torchscript OUT.pt: TorchScript (traced), loaded back with torch.jit.load.

Exit status: 0 all checks pass; 1 a check fails (what differs is printed); 2 the export cannot
be read (missing file, bad format: the message names the file).
"""
import argparse
import json
import sys
import tomllib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_ops
from torch_ops import FactorizedReduce, ResBlock, bn, conv, relu_conv_bn

FORMAT, FORMAT_VERSION = "supernet-model", 1
AUX_PREFIX = "auxiliary_head."
KNOWN_OPS = set(torch_ops.OPS)


class BadExport(Exception):
    """The export cannot be read or does not describe a network (exit 2)."""


# ---------------------------------------------------------------------------------------------
# Layers


def make_op(kind, c, stride, affine, pool_bn):
    try:
        return torch_ops.make_op(kind, c, stride, affine, pool_bn)
    except ValueError as e:
        raise BadExport(str(e)) from None


# ---------------------------------------------------------------------------------------------
# Cells and networks


class Cell(nn.Module):
    """A discrete cell: (DARTS) preprocessed inputs, nodes as sums of their genotype edges,
    output the concatenation of `concat` states (the state itself if there is one)."""

    def __init__(self, cell_space, cell_geno, c, inputs, reduction, affine, pool_bn, preprocess):
        """`inputs`: per cell input (oldest first), its channels and whether it is at twice the
        resolution of the cell input (it comes from before a reduction cell)."""
        super().__init__()
        n_in = cell_space["inputs"]
        self.concat = list(cell_space["concat"])
        self.preprocess = preprocess
        if preprocess:
            for i, (c_in, up) in enumerate(inputs):
                pre = FactorizedReduce(c_in, c, affine) if up else relu_conv_bn(c_in, c, 1, 1, 0, affine)
                setattr(self, f"preprocess{i}", pre)
        self.edges = nn.ModuleDict()
        # Per node: (edge key, source state, op, stride), by source state as the Rust cell sums.
        self.plan = []
        for i, node in enumerate(cell_geno["nodes"]):
            to = n_in + i
            node_plan = []
            for g in sorted(node, key=lambda g: g["from"]):
                frm, kind = g["from"], g["op"]
                stride = 2 if reduction and frm < n_in else 1
                key = f"{to}_{frm}"
                op = make_op(kind, c, stride, affine, pool_bn)
                if op is not None:
                    self.edges[key] = nn.ModuleDict({kind: op})
                node_plan.append((key, frm, kind, stride))
            self.plan.append(node_plan)
        # A node without contributions is zero at its edges' resolution (that of edge from 0).
        self.zero_stride = 2 if reduction else 1

    def forward(self, inputs):
        if self.preprocess:
            states = [getattr(self, f"preprocess{i}")(x) for i, x in enumerate(inputs)]
        else:
            states = list(inputs)
        for node_plan in self.plan:
            node = None
            for key, frm, kind, _ in node_plan:
                if kind == "none":
                    continue
                y = self.edges[key][kind](states[frm])
                node = y if node is None else node + y
            if node is None:
                s = self.zero_stride
                node = torch.zeros_like(states[0][:, :, ::s, ::s])
            states.append(node)
        if len(self.concat) == 1:
            return states[self.concat[0]]
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS AuxiliaryHeadCIFAR, its second conv spanning the whole pooled map."""

    def __init__(self, c, hw, classes):
        super().__init__()
        if hw[0] != hw[1] or hw[0] < 5:
            raise BadExport(f"an auxiliary head needs a square map of at least 5x5, got {hw[0]}x{hw[1]}")
        pooled = (hw[0] - 5) // 3 + 1
        self.features = nn.Sequential(
            nn.ReLU(), nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            conv(c, 128, 1), bn(128, True), nn.ReLU(),
            conv(128, 768, pooled), bn(768, True), nn.ReLU())
        self.classifier = nn.Linear(768, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class Network(nn.Module):
    """The exported network. Eval logits only: the auxiliary head (training only) is built so
    its tensors load, but forward() does not run it."""

    def __init__(self, space, genotype, input_shape, style, auxiliary):
        super().__init__()
        net, cell_space = space["network"], space["cell"]
        self.kind = net["kind"]
        affine = style == "standalone"
        pool_bn = style == "inherited" and self.kind == "darts"
        c_img, h, w, classes = (input_shape[k] for k in ("channels", "height", "width", "classes"))
        self.cells = nn.ModuleList()
        if self.kind == "darts":
            layers, c = net["layers"], net["channels"]
            reductions = net.get("reduction_layers", [layers // 3, 2 * layers // 3])
            c_stem = net["stem_multiplier"] * c
            self.stem = nn.Sequential(conv(c_img, c_stem, 3, 1, 1), bn(c_stem, True))
            aux_after = max(reductions) if auxiliary and reductions else None
            if auxiliary and aux_after is None:
                raise BadExport("'auxiliary' is true but the network has no reduction cell")
            s0, s1 = (c_stem, False), (c_stem, False)
            hw = (h, w)
            for i in range(layers):
                red = i in reductions
                if red:
                    c *= 2
                t = "reduce" if red else "normal"
                self.cells.append(Cell(cell_space, genotype[t], c, [s0, s1], red, affine, pool_bn, True))
                s0, s1 = (s1[0], red), (c * len(cell_space["concat"]), False)
                if red:
                    hw = (hw[0] // 2, hw[1] // 2)
                if i == aux_after:
                    self.auxiliary_head = AuxiliaryHead(s1[0], hw, classes)
            c_last, self.lastact = s1[0], None
        elif self.kind == "nb201":
            if auxiliary:
                raise BadExport("'auxiliary' is true, but NAS-Bench-201 networks have no auxiliary head")
            c0 = net["channels"]
            self.stem = nn.Sequential(conv(c_img, c0, 3, 1, 1), bn(c0, True))
            c_prev = c0
            for stage in range(3):
                c = c0 << stage
                if stage > 0:
                    self.cells.append(ResBlock(c_prev, c))
                for _ in range(net["cells_per_stage"]):
                    self.cells.append(Cell(cell_space, genotype["normal"], c, [(c, False)], False, affine,
                                           pool_bn, False))
                c_prev = c
            c_last = c_prev
            self.lastact = nn.Sequential(bn(c_last, True), nn.ReLU())
        else:
            raise BadExport(f"unknown network kind '{self.kind}'")
        self.classifier = nn.Linear(c_last, classes)

    def forward(self, x):
        x = self.stem(x)
        if self.kind == "darts":
            s0 = s1 = x
            for cell in self.cells:
                s0, s1 = s1, cell([s0, s1])
            x = s1
        else:
            for block in self.cells:
                x = block([x]) if isinstance(block, Cell) else block(x)
            x = self.lastact(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ---------------------------------------------------------------------------------------------
# Chain networks (MobileNet-style MBConv stages), as `supernet`'s chain spaces describe them


def activation(name):
    acts = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish}
    if name not in acts:
        raise BadExport(f"unknown activation {name!r}, expected one of {sorted(acts)}")
    return acts[name]()


def make_divisible(v, divisor):
    """torchvision's _make_divisible."""
    rounded = max(divisor, (v + divisor // 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


class ConvBnAct(nn.Module):
    """`conv` (no bias), `bn` (affine), then the activation if any."""

    def __init__(self, c_in, c_out, k, stride=1, groups=1, act=None):
        super().__init__()
        self.conv = conv(c_in, c_out, k, stride, k // 2, groups=groups)
        self.bn = bn(c_out, True)
        self.act = activation(act) if act else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """MobileNetV3's SE on linear layers: mean, fc1, ReLU, fc2, hard sigmoid, rescale."""

    def __init__(self, c):
        super().__init__()
        sq = make_divisible(c // 4, 8)
        self.fc1, self.fc2 = nn.Linear(c, sq), nn.Linear(sq, c)

    def forward(self, x):
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * s[:, :, None, None]


class MbConv(nn.Module):
    """Inverted residual: `expand` (absent at expansion 1), `depthwise`, `se`, `project`;
    the input is added when stride is 1 and the channels agree."""

    def __init__(self, c_in, c_out, stride, act, se, kernel, expand):
        super().__init__()
        hidden = c_in * expand
        self.expand = ConvBnAct(c_in, hidden, 1, act=act) if expand != 1 else None
        self.depthwise = ConvBnAct(hidden, hidden, kernel, stride, groups=hidden, act=act)
        self.se = SqueezeExcite(hidden) if se else None
        self.project = ConvBnAct(hidden, c_out, 1)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return y + x if self.residual else y


def parse_choice(name):
    """(kernel, expansion) of `mbconv_k{k}_e{e}`, None for `skip`."""
    if name == "skip":
        return None
    try:
        k, e = name.removeprefix("mbconv_k").split("_e")
        if not name.startswith("mbconv_k"):
            raise ValueError
        return int(k), int(e)
    except ValueError:
        raise BadExport(f"unknown layer choice {name!r}, expected mbconv_k<kernel>_e<expansion> or skip")


class Searched(nn.Module):
    """A searchable layer holding its one chosen block under the choice's name."""

    def __init__(self, name, block):
        super().__init__()
        self.name = name
        self.add_module(name, block)

    def forward(self, x):
        return getattr(self, self.name)(x)


class ChainNetwork(nn.Module):
    """`stem`, `layers.{i}` (a fixed block directly, a searched one under its choice's name,
    nothing for skip), optional 1x1 `head`, global average, optional linear `hidden` with the
    head's activation, `classifier`."""

    def __init__(self, space, architecture, input_shape):
        super().__init__()
        try:
            net, stem, head = space["network"], space["network"]["stem"], space["network"]["head"]
            kernels, expansions = space["kernels"], space["expansions"]
            stages = net["stages"]
        except (KeyError, TypeError) as e:
            raise BadExport(f"the chain space lacks {e}")
        choices = [f"mbconv_k{k}_e{e}" for k in kernels for e in expansions]
        searchable = [st for st in stages if "fixed" not in st]
        if len(architecture) != sum(st["layers"] for st in searchable):
            raise BadExport(f"architecture has {len(architecture)} choices, the space "
                            f"{sum(st['layers'] for st in searchable)} searchable layers")
        self.stem = ConvBnAct(input_shape["channels"], stem["channels"], stem.get("kernel", 3),
                              stem.get("stride", 1), act=stem["act"])
        layers, c_in, row = [], stem["channels"], 0
        for st in stages:
            for i in range(st["layers"]):
                stride = st.get("stride", 1) if i == 0 else 1
                args = (c_in, st["channels"], stride, st["act"], st.get("se", False))
                if "fixed" in st:
                    kind = parse_choice(st["fixed"])
                    if kind is None:
                        raise BadExport("a fixed stage of 'skip'")
                    layers.append(MbConv(*args, *kind))
                else:
                    name = architecture[row]
                    row += 1
                    kind = parse_choice(name)
                    skippable = i >= st["layers"] - st.get("skippable", 0)
                    if kind is None:
                        if not skippable or stride != 1 or c_in != st["channels"]:
                            raise BadExport(f"architecture layer {row - 1}: skip where the layer "
                                            "cannot be skipped")
                        layers.append(nn.Identity())
                    else:
                        if name not in choices:
                            raise BadExport(f"architecture layer {row - 1}: {name!r} is not one of {choices}")
                        layers.append(Searched(name, MbConv(*args, *kind)))
                c_in = st["channels"]
        self.layers = nn.ModuleList(layers)
        self.head = None
        if head.get("channels") is not None:
            self.head = ConvBnAct(c_in, head["channels"], 1, act=head["act"])
            c_in = head["channels"]
        self.hidden = None
        if head.get("hidden") is not None:
            self.hidden = nn.Linear(c_in, head["hidden"])
            self.hidden_act = activation(head["act"])
            c_in = head["hidden"]
        self.classifier = nn.Linear(c_in, input_shape["classes"])

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        if self.head is not None:
            x = self.head(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        if self.hidden is not None:
            x = self.hidden_act(self.hidden(x))
        return self.classifier(x)


# ---------------------------------------------------------------------------------------------
# Reading the export


def read_description(path):
    if not path.is_file():
        raise BadExport(f"{path}: no such file")
    try:
        desc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadExport(f"{path}: not a JSON model description: {e}")
    if not isinstance(desc, dict):
        raise BadExport(f"{path}: not a JSON object")
    if desc.get("format") != FORMAT or desc.get("format_version") != FORMAT_VERSION:
        raise BadExport(f"{path}: format {desc.get('format')!r} version {desc.get('format_version')!r}, "
                        f"expected {FORMAT!r} version {FORMAT_VERSION}")
    network = desc.get("network", "cell")
    if network not in ("cell", "chain"):
        raise BadExport(f"{path}: field 'network' is {network!r}, expected 'cell' or 'chain'")
    desc["network"] = network
    for key in ("genotype" if network == "cell" else "architecture", "space", "input", "style",
                "auxiliary", "parameters", "parameters_without_auxiliary", "tensors"):
        if key not in desc:
            raise BadExport(f"{path}: missing field '{key}'")
    if desc["style"] not in ("standalone", "inherited"):
        raise BadExport(f"{path}: field 'style' is {desc['style']!r}, expected 'standalone' or 'inherited'")
    try:
        inp = desc["input"]
        for k in ("channels", "height", "width", "classes"):
            if not isinstance(inp[k], int) or inp[k] < 1:
                raise BadExport(f"{path}: field 'input.{k}' is {inp[k]!r}, expected a positive integer")
    except (KeyError, TypeError) as e:
        raise BadExport(f"{path}: field 'input' lacks {e}")
    try:
        space = tomllib.loads(desc["space"])
    except (TypeError, tomllib.TOMLDecodeError) as e:
        raise BadExport(f"{path}: field 'space' is not TOML: {e}")
    if network == "cell":
        check_space(path, space)
        check_genotype(path, space, desc["genotype"])
    elif not (isinstance(desc["architecture"], list) and all(isinstance(c, str) for c in desc["architecture"])):
        raise BadExport(f"{path}: field 'architecture' is not a list of layer choices")
    if fnv1a(desc["space"]) != str(desc.get("space_hash", "")):
        print(f"warning: {path}: space_hash {desc.get('space_hash')!r} is not the fingerprint of the "
              f"'space' text ({fnv1a(desc['space'])})", file=sys.stderr)
    return desc, space


def fnv1a(text):
    """The space fingerprint of `SearchSpace::fingerprint`: FNV-1a 64 of the TOML text, hex."""
    h = 0xcbf29ce484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def check_space(path, space):
    try:
        ops, cell, net = space["ops"], space["cell"], space["network"]
        for k in ("inputs", "nodes", "concat"):
            cell[k]
        kind = net["kind"]
        if kind == "darts":
            for k in ("layers", "channels", "stem_multiplier"):
                net[k]
        elif kind == "nb201":
            for k in ("cells_per_stage", "channels"):
                net[k]
            if cell["inputs"] != 1:
                raise BadExport(f"{path}: NAS-Bench-201 cells have 1 input, 'space' says {cell['inputs']}")
        else:
            raise BadExport(f"{path}: field 'space': unknown network kind {kind!r}")
    except KeyError as e:
        raise BadExport(f"{path}: field 'space' lacks {e}")
    unknown = [o for o in ops if o not in KNOWN_OPS]
    if unknown:
        raise BadExport(f"{path}: field 'space': unknown operations {unknown}")


def check_genotype(path, space, geno):
    cell, types = space["cell"], (["normal", "reduce"] if space["network"]["kind"] == "darts" else ["normal"])
    for t in types:
        g = geno.get(t) if isinstance(geno, dict) else None
        if not isinstance(g, dict) or "nodes" not in g or "concat" not in g:
            raise BadExport(f"{path}: field 'genotype' has no {t} cell (nodes, concat)")
        if len(g["nodes"]) != cell["nodes"]:
            raise BadExport(f"{path}: genotype {t} cell has {len(g['nodes'])} nodes, the space {cell['nodes']}")
        if list(g["concat"]) != list(cell["concat"]):
            raise BadExport(f"{path}: genotype {t} cell concat {g['concat']} differs from the space's {cell['concat']}")
        for i, node in enumerate(g["nodes"]):
            to = cell["inputs"] + i
            froms = []
            for e in node:
                if not isinstance(e, dict) or e.get("op") not in space["ops"] or not isinstance(e.get("from"), int) \
                        or not 0 <= e["from"] < to:
                    raise BadExport(f"{path}: genotype {t} cell node {to}: bad edge {e!r}")
                froms.append(e["from"])
            if len(set(froms)) != len(froms):
                raise BadExport(f"{path}: genotype {t} cell node {to}: an input state appears twice")


def load_tensors(path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    if not path.is_file():
        raise BadExport(f"{path}: no such file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise BadExport(f"{path}: not a safetensors file: {e}")


# ---------------------------------------------------------------------------------------------
# Checks


def conv_linear_macs(model, x):
    """Multiply-adds per image of the convolutions and linear layers outside the auxiliary
    head, from the shapes of one forward pass (as `supernet` counts them)."""
    total, hooks = [0], []

    def on_conv(m, _inp, out):
        k = m.kernel_size[0] * m.kernel_size[1]
        total[0] += out.shape[2] * out.shape[3] * m.out_channels * (m.in_channels // m.groups) * k

    def on_linear(m, _inp, _out):
        total[0] += m.in_features * m.out_features

    for name, m in model.named_modules():
        if name.startswith(AUX_PREFIX):
            continue
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(on_conv))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(on_linear))
    with torch.no_grad():
        model(x[:1])
    for h in hooks:
        h.remove()
    return total[0]


def run(model_dir, device, rtol, quiet, onnx_out=None, torchscript_out=None):
    model_dir = Path(model_dir)
    json_path = model_dir / "model.json"
    weights_path = model_dir / "model.safetensors"
    probe_path = model_dir / "model.probe.safetensors"
    if not model_dir.is_dir():
        raise BadExport(f"{model_dir}: no such directory")
    desc, space = read_description(json_path)
    weights = load_tensors(weights_path)
    probe = load_tensors(probe_path)
    failures = []

    # The description's tensor list against the file.
    listed = {}
    try:
        for t in desc["tensors"]:
            listed[t["name"]] = list(t["shape"])
    except (KeyError, TypeError) as e:
        raise BadExport(f"{json_path}: field 'tensors' is not a list of {{name, shape}}: {e}")
    in_file = {k: list(v.shape) for k, v in weights.items()}
    if listed != in_file:
        only_json = sorted(set(listed) - set(in_file))
        only_file = sorted(set(in_file) - set(listed))
        shapes = sorted(k for k in set(listed) & set(in_file) if listed[k] != in_file[k])
        failures.append(f"{json_path} 'tensors' and {weights_path} differ: only in model.json {only_json[:10]}, "
                        f"only in the file {only_file[:10]}, shapes differ {shapes[:10]}")

    try:
        if desc["network"] == "chain":
            model = ChainNetwork(space, desc["architecture"], desc["input"])
        else:
            model = Network(space, desc["genotype"], desc["input"], desc["style"], bool(desc["auxiliary"]))
    except BadExport as e:
        raise BadExport(f"{json_path}: cannot build its network: {e}")

    # Names: exactly the file's (num_batches_tracked excepted), then shapes.
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in weights and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in weights if k not in expected)
    wrong_shape = sorted(f"{k}: file {list(weights[k].shape)}, rebuilt {list(expected[k].shape)}"
                         for k in weights if k in expected and weights[k].shape != expected[k].shape)
    if missing or unexpected or wrong_shape:
        failures.append(f"tensor names of the rebuilt network and {weights_path} differ:\n"
                        f"  in the rebuilt network only ({len(missing)}): {missing[:20]}\n"
                        f"  in the file only ({len(unexpected)}): {unexpected[:20]}\n"
                        f"  shapes differ ({len(wrong_shape)}): {wrong_shape[:20]}")
        report(failures)
        return 1
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert all(m.endswith("num_batches_tracked") for m in missing), missing
    assert not unexpected, unexpected

    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    params_main = sum(p.numel() for n, p in model.named_parameters()
                      if p.requires_grad and not n.startswith(AUX_PREFIX))
    if params != desc["parameters"]:
        failures.append(f"parameters: rebuilt {params}, model.json {desc['parameters']}")
    if params_main != desc["parameters_without_auxiliary"]:
        failures.append(f"parameters without the auxiliary head: rebuilt {params_main}, "
                        f"model.json {desc['parameters_without_auxiliary']}")

    # The probe.
    for k in ("images", "logits"):
        if k not in probe:
            raise BadExport(f"{probe_path}: no tensor '{k}'")
    images, logits = probe["images"].float(), probe["logits"].float()
    inp = desc["input"]
    if images.dim() != 4 or list(images.shape[1:]) != [inp["channels"], inp["height"], inp["width"]]:
        raise BadExport(f"{probe_path}: 'images' has shape {list(images.shape)}, expected "
                        f"[N, {inp['channels']}, {inp['height']}, {inp['width']}]")
    if list(logits.shape) != [images.shape[0], inp["classes"]]:
        raise BadExport(f"{probe_path}: 'logits' has shape {list(logits.shape)}, expected "
                        f"[{images.shape[0]}, {inp['classes']}]")

    dev = torch.device(device)
    if dev.type == "cuda":
        # libtorch computes in full float32; TF32 would differ by ~1e-3.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    model = model.to(dev).eval()
    with torch.no_grad():
        rebuilt = model(images.to(dev)).float().cpu()
    scale = max(1.0, logits.abs().max().item()) if logits.numel() else 1.0
    if not torch.isfinite(logits).all():
        failures.append(f"{probe_path}: supernet's logits are not finite")
        max_diff = float("nan")
    elif not torch.isfinite(rebuilt).all():
        failures.append("the rebuilt network's logits are not finite")
        max_diff = float("nan")
    else:
        diff = (rebuilt - logits).abs()
        max_diff = diff.max().item() if diff.numel() else 0.0
        if max_diff > rtol * scale:
            i, j = divmod(int(diff.argmax()), diff.shape[1])
            failures.append(f"logits differ: max |diff| {max_diff:.3e} > {rtol:g} * {scale:.4g} "
                            f"(image {i}, class {j}: supernet {logits[i, j].item():.6g}, "
                            f"rebuilt {rebuilt[i, j].item():.6g})")

    macs = conv_linear_macs(model.cpu(), images)
    if "macs_per_image" in desc and macs != desc["macs_per_image"]:
        print(f"warning: multiply-adds per image: rebuilt {macs}, model.json {desc['macs_per_image']}",
              file=sys.stderr)

    if failures:
        report(failures)
        return 1
    scale_tol = rtol * scale
    exports = [(onnx_out, export_onnx, "onnxruntime's logits", "ONNX, onnxruntime"),
               (torchscript_out, export_torchscript, "TorchScript logits", "TorchScript, torch.jit.load")]
    for out, export, what, how in exports:
        if not out:
            continue
        diff = export(model.cpu().eval(), images, logits, out)
        if not diff <= scale_tol:
            failures.append(f"{out}: {what} differ: max |diff| {diff:.3e} > {scale_tol:.3e}")
        elif not quiet:
            print(f"{out}: {how} max |diff| {diff:.3e} on the probe: OK")
    if failures:
        report(failures)
        return 1
    if not quiet:
        net = space["network"]
        print(f"{model_dir}: {net['kind']} {desc['style']}, {params} parameters "
              f"({params_main} without the auxiliary head), {len(weights)} tensors, "
              f"max |diff| {max_diff:.3e} (relative {max_diff / scale:.3e} <= {rtol:g}) on "
              f"{images.shape[0]} probe images, device {dev.type}: OK")
    return 0


def export_onnx(model, images, logits, path):
    """Write `model` as ONNX (batch dimension free), run it in onnxruntime, and return max
    |onnxruntime - supernet| on the probe images."""
    import onnx
    import onnxruntime
    import warnings
    # The TorchScript-based exporter: the torch.export-based default needs onnxscript, which
    # the .venv does not hold; its deprecation warning is noise here.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (images,), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"images": images.numpy()})
    return (torch.from_numpy(got) - logits).abs().max().item()


def export_torchscript(model, images, logits, path):
    """Write `model` traced as TorchScript, load it back with torch.jit.load, and return max
    |loaded - supernet| on the probe images."""
    with torch.no_grad():
        torch.jit.trace(model, (images,)).save(str(path))
        loaded = torch.jit.load(str(path), map_location="cpu").eval()
        got = loaded(images)
    return (got - logits).abs().max().item()


def report(failures):
    print("rebuild check FAILED:", file=sys.stderr)
    for f in failures:
        print(f"  {f}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", metavar="MODEL_DIR", help="directory holding model.json, model.safetensors "
                    "and model.probe.safetensors")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--rtol", type=float, default=1e-5,
                    help="pass when max |diff| <= rtol * max(1, max |logits|) (default 1e-5)")
    ap.add_argument("--quiet", action="store_true", help="print nothing on success")
    ap.add_argument("--onnx", metavar="OUT.onnx", help="also write the network as ONNX and check it in onnxruntime")
    ap.add_argument("--torchscript", metavar="OUT.pt", help="also write the network as TorchScript and check "
                    "it with torch.jit.load")
    args = ap.parse_args()
    try:
        try:
            dev = torch.device(args.device)
        except RuntimeError as e:
            raise BadExport(f"--device {args.device!r}: {e}")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BadExport(f"--device {args.device}: CUDA is not available")
        code = run(args.model_dir, args.device, args.rtol, args.quiet, args.onnx, args.torchscript)
    except BadExport as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
