#!/usr/bin/env python3
"""Zero-cost proxies of an exported model, computed in plain PyTorch as the papers' reference
code does, to check `supernet`'s (src/sample/proxy.rs) against.

  python scripts/proxies_reference.py MODEL_DIR BATCH_FILE

MODEL_DIR is a `supernet` model export (rebuilt with scripts/rebuild_model.py's network);
BATCH_FILE a safetensors file with `images` (NCHW float) and `labels` (int64). Prints one
JSON object: {"grad-norm": ..., "snip": ..., "synflow": ..., "naswot": ..., "jacov": ...}
(null for an undefined value).

- grad-norm, snip, synflow, jacov: Abdelfattah et al. 2021 (Zero-Cost Proxies for
  Lightweight NAS); naswot: Mellor et al. 2021 (Neural Architecture Search without Training).
- Weight-wise proxies sum over the `weight` of every Conv2d and Linear module.
- synflow runs BN in eval mode with the fresh statistics (supernet's convention; the reference
  removes BN, which differs by a factor 1 / sqrt(1 + 1e-5) per BN).
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rebuild_model  # noqa: E402


def build(model_dir):
    desc, space = rebuild_model.read_description(model_dir / "model.json")
    net = rebuild_model.Network(space, desc["genotype"], desc["input"], desc["style"], bool(desc["auxiliary"]))
    missing, unexpected = net.load_state_dict(rebuild_model.load_tensors(model_dir / "model.safetensors"),
                                              strict=False)
    assert all(m.endswith("num_batches_tracked") for m in missing) and not unexpected, (missing, unexpected)
    return net


def layer_weights(net):
    return [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def loss_grads(net, x, y):
    net.train()
    F.cross_entropy(net(x), y).backward()
    return [(w, w.grad if w.grad is not None else torch.zeros_like(w)) for w in layer_weights(net)]


def grad_norm(net, x, y):
    return sum(g.norm().item() for _, g in loss_grads(net, x, y))


def snip(net, x, y):
    return sum((w * g).abs().sum().item() for w, g in loss_grads(net, x, y))


def synflow(net, x):
    net.double()
    with torch.no_grad():
        for p in net.state_dict().values():
            if p.is_floating_point():
                p.abs_()
    net.eval()
    out = net(torch.ones((1,) + tuple(x.shape[1:]), dtype=torch.float64))
    out.sum().backward()
    return sum((w * w.grad).abs().sum().item() for w in layer_weights(net) if w.grad is not None)


def naswot(net, x):
    n = x.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64)
    relu = F.relu

    def recording_relu(t, inplace=False):
        out = relu(t, inplace=inplace)
        c = (out > 0).reshape(n, -1).double()
        kernel.add_(c @ c.t() + (1 - c) @ (1 - c).t())
        return out

    F.relu = recording_relu  # nn.ReLU modules call F.relu too
    try:
        net.train()
        with torch.no_grad():
            net(x)
    finally:
        F.relu = relu
    return torch.linalg.slogdet(kernel).logabsdet.item()


def jacov(net, x):
    net.train()
    x = x.clone().requires_grad_(True)
    y = net(x)
    y.backward(torch.ones_like(y))
    jac = x.grad.reshape(x.shape[0], -1).numpy()
    if np.abs(jac).max() < 1e-6:
        return float("nan")  # an output independent of the input: correlations of rounding noise
    v, _ = np.linalg.eig(np.corrcoef(jac))
    k = 1e-5
    return float(-np.sum(np.log(v.real + k) + 1.0 / (v.real + k)))


def main():
    from safetensors.torch import load_file
    model_dir, batch = Path(sys.argv[1]), load_file(sys.argv[2])
    x, y = batch["images"].float(), batch["labels"].long()
    out = {
        "grad-norm": grad_norm(build(model_dir), x, y),
        "snip": snip(build(model_dir), x, y),
        "synflow": synflow(build(model_dir), x),
        "naswot": naswot(build(model_dir), x),
        "jacov": jacov(build(model_dir), x),
    }
    print(json.dumps({k: None if v != v else v for k, v in out.items()}))  # NaN as null


if __name__ == "__main__":
    main()
