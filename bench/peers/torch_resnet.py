"""PyTorch twins of BnDist's resnet20 and resnet56 (issue 12): the CIFAR ResNets of He et al.,
"Deep Residual Learning for Image Recognition" (2016), section 4.2, with torchvision's names.

  conv1 (Cin->16, 3x3, pad 1, no bias) -> bn1 -> ReLU
  layer1, layer2, layer3: n BasicBlocks each of width 16, 32, 64 (n = 3: resnet20, 9: resnet56)
  AdaptiveAvgPool2d(1) -> flatten -> fc (64->classes, bias)

Block i of layer j is layer{j}.{i}:
  out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))
conv1 is 3x3 with the block's stride, conv2 3x3 stride 1, both pad 1 and without bias. The
first block of layer2 and of layer3 has stride 2 and a projection shortcut, `downsample` =
Sequential(Conv2d 1x1 stride 2 no bias, BatchNorm2d) (the paper's option B; its CIFAR runs used
option A, zero-padded identity, which has no parameters); every other shortcut is the identity.
6n + 2 layers with weights: 20 for n = 3, 56 for n = 9. BatchNorm eps 1e-5, momentum 0.1.

Initialization as torchvision's ResNet (the paper's [13], He et al. 2015): convolutions from
kaiming_normal_(mode="fan_out", nonlinearity="relu"), BN gamma 1 and beta 0, fc PyTorch's default.
Load a BnDist checkpoint to start from BnDist's own (torch_models.load_into).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

DEPTHS = {"resnet20": 3, "resnet56": 9}  # blocks per layer: depth = 6n + 2
WIDTHS = (16, 32, 64)


def _conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    def __init__(self, blocks_per_layer, in_channels=1, classes=10):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(WIDTHS[0])
        cin = WIDTHS[0]
        for j, width in enumerate(WIDTHS, start=1):
            blocks = []
            for i in range(blocks_per_layer):
                stride = 2 if (i == 0 and j > 1) else 1
                blocks.append(BasicBlock(cin, width, stride))
                cin = width
            setattr(self, f"layer{j}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(WIDTHS[-1], classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build(architecture, in_channels=1, classes=10):
    if architecture not in DEPTHS:
        raise ValueError(f"unknown ResNet {architecture!r} (expected {', '.join(DEPTHS)})")
    return CifarResNet(DEPTHS[architecture], in_channels, classes)
