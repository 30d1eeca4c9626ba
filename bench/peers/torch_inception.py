"""PyTorch twin of BnDist's bn-inception (issue 12): the BN-Inception of Ioffe & Szegedy, "Batch
Normalization" (2015), scaled down to 28x28 / 32x32 inputs, with torchvision GoogLeNet's names.

Every convolution is a BasicConv2d: conv (no bias) -> bn -> ReLU, named <name>.conv.weight and
<name>.bn.{weight,bias,running_mean,running_var,num_batches_tracked} (eps 1e-5, momentum 0.1).

  conv1        BasicConv2d(Cin -> 32, 3x3, pad 1)
  inception3a  module     a=16 b_red=16 b=24 c_red=16 c=24 d=8    -> 72 channels
  inception3b  module     24, 24, 32, 24, 32, 16                  -> 104
  inception3c  reduction  b_red=32 b=40 c_red=32 c=40             -> 40+40+104 = 184, spatial /2
  inception4a  module     64, 32, 48, 32, 48, 32                  -> 192
  inception4b  reduction  48, 64, 48, 64                          -> 64+64+192 = 320, spatial /2
  inception5a  module     96, 64, 96, 64, 96, 64, max pool        -> 352
  AdaptiveAvgPool2d(1) -> flatten -> fc (352 -> classes, bias)

Module (branches concatenated along channels in this order):
  branch1 = BasicConv2d 1x1 (a)
  branch2 = Sequential(BasicConv2d 1x1 (b_red), BasicConv2d 3x3 pad 1 (b))
  branch3 = Sequential(BasicConv2d 1x1 (c_red), BasicConv2d 3x3 pad 1 (c), BasicConv2d 3x3 pad 1 (c))
  branch4 = Sequential(pool 3x3 stride 1 pad 1, BasicConv2d 1x1 (d))   -> branch4.1.conv.weight
  where the pool is AvgPool2d (count_include_pad=True, PyTorch's default) except in inception5a,
  which takes MaxPool2d.
Reduction (stride 2):
  branch1 = Sequential(BasicConv2d 1x1 (b_red), BasicConv2d 3x3 stride 2 pad 1 (b))
  branch2 = Sequential(BasicConv2d 1x1 (c_red), BasicConv2d 3x3 pad 1 (c), BasicConv2d 3x3 stride 2 pad 1 (c))
  branch3 = MaxPool2d(3, stride 2, pad 1), the input passed through (no parameters)

28x28 inputs: 28 -> 14 after inception3c -> 7 after inception4b. Initialization is PyTorch's
layer default; load a BnDist checkpoint to start from BnDist's own (torch_models.load_into).
"""
import torch
import torch.nn as nn

# name: ("module", a, b_red, b, c_red, c, d, pool) or ("reduction", b_red, b, c_red, c)
STAGES = (
    ("inception3a", ("module", 16, 16, 24, 16, 24, 8, "avg")),
    ("inception3b", ("module", 24, 24, 32, 24, 32, 16, "avg")),
    ("inception3c", ("reduction", 32, 40, 32, 40)),
    ("inception4a", ("module", 64, 32, 48, 32, 48, 32, "avg")),
    ("inception4b", ("reduction", 48, 64, 48, 64)),
    ("inception5a", ("module", 96, 64, 96, 64, 96, 64, "max")),
)
STEM_WIDTH = 32


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)  # eps 1e-5 as BnDist (torchvision's GoogLeNet uses 1e-3)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class InceptionModule(nn.Module):
    def __init__(self, cin, a, b_red, b, c_red, c, d, pool):
        super().__init__()
        self.branch1 = BasicConv2d(cin, a, 1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, b_red, 1), BasicConv2d(b_red, b, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c_red, 1), BasicConv2d(c_red, c, 3, padding=1),
                                     BasicConv2d(c, c, 3, padding=1))
        if pool == "avg":
            pooling = nn.AvgPool2d(3, stride=1, padding=1)  # count_include_pad=True: the border averages zeros
        elif pool == "max":
            pooling = nn.MaxPool2d(3, stride=1, padding=1)
        else:
            raise ValueError(f"pool {pool!r}: expected avg or max")
        self.branch4 = nn.Sequential(pooling, BasicConv2d(cin, d, 1))
        self.out_channels = a + b + c + d

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class ReductionModule(nn.Module):
    def __init__(self, cin, b_red, b, c_red, c):
        super().__init__()
        self.branch1 = nn.Sequential(BasicConv2d(cin, b_red, 1), BasicConv2d(b_red, b, 3, stride=2, padding=1))
        self.branch2 = nn.Sequential(BasicConv2d(cin, c_red, 1), BasicConv2d(c_red, c, 3, padding=1),
                                     BasicConv2d(c, c, 3, stride=2, padding=1))
        self.branch3 = nn.MaxPool2d(3, stride=2, padding=1)
        self.out_channels = b + c + cin

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class BNInception(nn.Module):
    def __init__(self, in_channels=1, classes=10):
        super().__init__()
        self.conv1 = BasicConv2d(in_channels, STEM_WIDTH, 3, padding=1)
        cin = STEM_WIDTH
        for name, (kind, *widths) in STAGES:
            stage = InceptionModule(cin, *widths) if kind == "module" else ReductionModule(cin, *widths)
            setattr(self, name, stage)
            cin = stage.out_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.conv1(x)
        for name, _ in STAGES:
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build(in_channels=1, classes=10):
    return BNInception(in_channels, classes)
