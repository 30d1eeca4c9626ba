#!/usr/bin/python3
"""Lists the state_dict of BnDist's PyTorch twins and checks the issue-12 networks against their
specification.

  python3 bench/peers/torch_model_names.py                       # check resnet20, resnet56, bn-inception
  python3 bench/peers/torch_model_names.py --list resnet20       # every name, shape and the counts
  python3 bench/peers/torch_model_names.py --in-channels 3 --classes 100

The check rebuilds the expected names and shapes from the written specification (issue 12, as
the docstrings of torch_resnet.py and torch_inception.py state it), independently of the model
code, and compares them with model.state_dict(): every missing, unexpected or misshapen key is
named. It also runs a forward pass on 28x28 and 32x32 inputs and checks the channels and
spatial size after each inception stage (72, 104, 184 /2, 192, 320 /2, 352). Exit status 1 on
any difference. stdlib + torch only.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

import torch_models as tm  # noqa: E402

SPEC_MODELS = ("resnet20", "resnet56", "bn-inception")


def _bn(prefix, c):
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def expected_resnet(n, cin, classes):
    names = {"conv1.weight": (16, cin, 3, 3), **_bn("bn1", 16)}
    prev = 16
    for j, width in ((1, 16), (2, 32), (3, 64)):
        for i in range(n):
            p = f"layer{j}.{i}"
            names[f"{p}.conv1.weight"] = (width, prev, 3, 3)
            names.update(_bn(f"{p}.bn1", width))
            names[f"{p}.conv2.weight"] = (width, width, 3, 3)
            names.update(_bn(f"{p}.bn2", width))
            if j > 1 and i == 0:
                names[f"{p}.downsample.0.weight"] = (width, prev, 1, 1)
                names.update(_bn(f"{p}.downsample.1", width))
            prev = width
    names.update({"fc.weight": (classes, 64), "fc.bias": (classes,)})
    return names


def _basic(prefix, cin, cout, k):
    return {f"{prefix}.conv.weight": (cout, cin, k, k), **_bn(f"{prefix}.bn", cout)}


def expected_bn_inception(cin, classes):
    names = _basic("conv1", cin, 32, 3)
    c = 32
    modules = [("inception3a", "m", (16, 16, 24, 16, 24, 8)), ("inception3b", "m", (24, 24, 32, 24, 32, 16)),
               ("inception3c", "r", (32, 40, 32, 40)), ("inception4a", "m", (64, 32, 48, 32, 48, 32)),
               ("inception4b", "r", (48, 64, 48, 64)), ("inception5a", "m", (96, 64, 96, 64, 96, 64))]
    for name, kind, w in modules:
        if kind == "m":
            a, b_red, b, c_red, cc, d = w
            names.update(_basic(f"{name}.branch1", c, a, 1))
            names.update(_basic(f"{name}.branch2.0", c, b_red, 1))
            names.update(_basic(f"{name}.branch2.1", b_red, b, 3))
            names.update(_basic(f"{name}.branch3.0", c, c_red, 1))
            names.update(_basic(f"{name}.branch3.1", c_red, cc, 3))
            names.update(_basic(f"{name}.branch3.2", cc, cc, 3))
            names.update(_basic(f"{name}.branch4.1", c, d, 1))
            c = a + b + cc + d
        else:
            b_red, b, c_red, cc = w
            names.update(_basic(f"{name}.branch1.0", c, b_red, 1))
            names.update(_basic(f"{name}.branch1.1", b_red, b, 3))
            names.update(_basic(f"{name}.branch2.0", c, c_red, 1))
            names.update(_basic(f"{name}.branch2.1", c_red, cc, 3))
            names.update(_basic(f"{name}.branch2.2", cc, cc, 3))
            c = b + cc + c
    names.update({"fc.weight": (classes, 352), "fc.bias": (classes,)})
    return names


def expected(model, cin, classes):
    if model == "bn-inception":
        return expected_bn_inception(cin, classes)
    return expected_resnet({"resnet20": 3, "resnet56": 9}[model], cin, classes)


# (channels, spatial divisor) after each inception stage
STAGE_OUTPUTS = {"inception3a": (72, 1), "inception3b": (104, 1), "inception3c": (184, 2),
                 "inception4a": (192, 2), "inception4b": (320, 4), "inception5a": (352, 4)}


def check(name, cin, classes):
    """The problems found in model `name` (an empty list when it meets the specification)."""
    model = tm.build(name, in_channels=cin, classes=classes)
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = expected(name, cin, classes)
    problems = [f"missing: {k} {s}" for k, s in want.items() if k not in state]
    problems += [f"unexpected: {k} {s}" for k, s in state.items() if k not in want]
    problems += [f"shape of {k}: {state[k]}, spec {s}" for k, s in want.items() if k in state and state[k] != s]
    for size in (28, 32):
        seen = {}
        hooks = [getattr(model, s).register_forward_hook(lambda m, i, o, s=s: seen.__setitem__(s, tuple(o.shape)))
                 for s in STAGE_OUTPUTS if hasattr(model, s)]
        model.train()
        with torch.no_grad():
            out = model(torch.randn(2, cin, size, size))
        for h in hooks:
            h.remove()
        if tuple(out.shape) != (2, classes):
            problems.append(f"{size}x{size} input: output {tuple(out.shape)}, expected (2, {classes})")
        for stage, shape in seen.items():
            c, div = STAGE_OUTPUTS[stage]
            if shape[1:] != (c, size // div, size // div):
                problems.append(f"{size}x{size} input: {stage} gives {shape[1:]}, spec {(c, size // div, size // div)}")
    return model, problems


def main():
    ap = argparse.ArgumentParser(description="list and check the state_dict names of BnDist's PyTorch twins")
    ap.add_argument("--list", metavar="MODEL", choices=tm.ARCHITECTURES, help="print every name and shape of MODEL")
    ap.add_argument("--in-channels", type=int, default=1)
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.list:
        model = tm.build(args.list, in_channels=args.in_channels, classes=args.classes)
        state = model.state_dict()
        for k, v in state.items():
            print(f"{k:48} {str(tuple(v.shape)):18} {str(v.dtype).replace('torch.', '')}")
        params = sum(p.numel() for p in model.parameters())
        print(f"{args.list}: {len(state)} tensors ({len(list(model.parameters()))} parameters, "
              f"{len(state) - len(list(model.parameters()))} buffers), {params:,} parameter values")
        return 0
    failed = False
    for name in SPEC_MODELS:
        model, problems = check(name, args.in_channels, args.classes)
        state = model.state_dict()
        params = sum(p.numel() for p in model.parameters())
        convs = sum(1 for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        bns = sum(1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        verdict = "OK" if not problems else f"{len(problems)} PROBLEM(S)"
        print(f"{name:13} {len(state):4} tensors, {params:>9,} parameter values, {convs} convs, {bns} batch norms: {verdict}")
        for p in problems:
            print(f"    {p}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
