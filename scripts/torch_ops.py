"""The candidate operations of the cell spaces in plain PyTorch, with the tensor names the Rust
networks use (chains are nn.Sequential under `op`, so names read `op.1.weight`). Shared by
scripts/reference.py (search networks) and scripts/rebuild_model.py (exported networks).
Written from the DARTS and NAS-Bench-201 papers' conventions (/work/shared/DESIGN.md, section 5).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
       "dil_conv_3x3", "dil_conv_5x5", "nor_conv_1x1", "nor_conv_3x3")


def bn(c, affine):
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1, affine=affine)


def conv(c_in, c_out, k, stride=1, padding=0, dilation=1, groups=1, bias=False):
    return nn.Conv2d(c_in, c_out, k, stride, padding, dilation, groups, bias=bias)


class Op(nn.Module):
    """A module whose only child is the sequence `op` (DARTS ReLUConvBN / SepConv / DilConv)."""

    def __init__(self, *layers):
        super().__init__()
        self.op = nn.Sequential(*layers)

    def forward(self, x):
        return self.op(x)


def relu_conv_bn(c_in, c_out, k, stride, padding, affine, bias=False):
    return Op(nn.ReLU(), conv(c_in, c_out, k, stride, padding, bias=bias), bn(c_out, affine))


class FactorizedReduce(nn.Module):
    """ReLU, then two stride-2 1x1 convs (the second shifted by one pixel), concatenated, BN."""

    def __init__(self, c_in, c_out, affine):
        super().__init__()
        self.conv_1 = conv(c_in, c_out // 2, 1, stride=2)
        self.conv_2 = conv(c_in, c_out // 2, 1, stride=2)
        self.bn = bn(c_out, affine)

    def forward(self, x):
        x = F.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class Pool(nn.Module):
    """3x3 pooling, padding 1 (average excludes the padding), optionally followed by an
    affine-free BN (DARTS search networks)."""

    def __init__(self, is_max, c, stride, with_bn):
        super().__init__()
        self.is_max, self.stride = is_max, stride
        self.bn = bn(c, False) if with_bn else None

    def forward(self, x):
        if self.is_max:
            y = F.max_pool2d(x, 3, self.stride, 1)
        else:
            y = F.avg_pool2d(x, 3, self.stride, 1, count_include_pad=False)
        return y if self.bn is None else self.bn(y)


class ResBlock(nn.Module):
    """NAS-Bench-201 residual reduction between stages: conv_b(conv_a(x)) +
    conv1x1(avgpool2x2(x)), affine BN."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv_a = relu_conv_bn(c_in, c_out, 3, 2, 1, True)
        self.conv_b = relu_conv_bn(c_out, c_out, 3, 1, 1, True)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), conv(c_in, c_out, 1))

    def forward(self, x):
        return self.conv_b(self.conv_a(x)) + self.downsample(x)


def make_op(kind, c, stride, affine, pool_bn):
    """One operation on `c` channels; None for `none` (it holds nothing and adds nothing).
    Raises ValueError for a name not in OPS."""
    if kind == "none":
        return None
    if kind in ("max_pool_3x3", "avg_pool_3x3"):
        return Pool(kind == "max_pool_3x3", c, stride, pool_bn)
    if kind == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    if kind in ("sep_conv_3x3", "sep_conv_5x5"):
        k = int(kind[-1])
        return Op(nn.ReLU(), conv(c, c, k, stride, k // 2, groups=c), conv(c, c, 1), bn(c, affine),
                  nn.ReLU(), conv(c, c, k, 1, k // 2, groups=c), conv(c, c, 1), bn(c, affine))
    if kind in ("dil_conv_3x3", "dil_conv_5x5"):
        k = int(kind[-1])
        return Op(nn.ReLU(), conv(c, c, k, stride, 2 * (k // 2), dilation=2, groups=c), conv(c, c, 1),
                  bn(c, affine))
    if kind in ("nor_conv_1x1", "nor_conv_3x3"):
        k = int(kind[-1])
        # NAS-Bench-201's ReLUConvBN: Conv2d(..., bias=not affine).
        return relu_conv_bn(c, c, k, stride, k // 2, affine, bias=not affine)
    raise ValueError(f"unknown operation '{kind}'")
