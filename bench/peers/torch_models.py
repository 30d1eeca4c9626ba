"""PyTorch twins of BnDist's models, its checkpoint loader and a Fashion-MNIST (IDX) loader.

The models mirror src/Core/Models/ModelFactory.cs layer for layer, with the same module
names, so `model.state_dict()` has exactly the keys of a BnDist checkpoint:

  convnet:   conv1 (1->32, 3x3, pad 1, no bias) -> bn1 -> ReLU -> maxpool 2
             -> conv2 (32->64, 3x3, pad 1, no bias) -> bn2 -> ReLU -> maxpool 2 -> flatten
             -> fc1 (3136->128, no bias) -> bn3 (BatchNorm1d) -> ReLU -> fc2 (128->10, bias)
  mlp-paper: flatten -> fc1 (784->100, no bias) -> bn1 -> sigmoid -> fc2 (100->100) -> bn2
             -> sigmoid -> fc3 (100->100) -> bn3 -> sigmoid -> fc4 (100->10, bias)
  resnet20, resnet56: He et al.'s CIFAR ResNets with torchvision's names (torch_resnet.py)
  bn-inception:       BN-Inception scaled to 28x28, GoogLeNet's names (torch_inception.py)

in_channels and classes (1 and 10 for Fashion-MNIST) size the first and the last layer; convnet
and mlp-paper assume 28x28 inputs. norm="bn" (the default) is what BnDist trains by default;
"gn" (GroupNorm, min(8, C) groups, modules gn1...; like BnDist it rejects mlp-paper, whose 100
channels do not split into 8) and "none" (the layers get biases) follow ModelFactory too, for
convnet and mlp-paper only. `python3 torch_model_names.py` lists and checks every model's names. Initialization is PyTorch's own; load a
BnDist checkpoint to start from BnDist's (load_into).

    import torch_models as tm
    model = tm.build("convnet")
    state, momentum, meta = tm.load_checkpoint("init.safetensors")
    model.load_state_dict(state)
    x, y = tm.load_fashion_mnist("data/fashion-mnist", train=True)   # [N,1,28,28] f32, [N] i64

Used by bench/peers/torch_step.py, torch_train.py and tests/Core.Tests/Interop/torch_parity.py.
stdlib + torch only.
"""
import gzip
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import safetensors_io
import torch_inception
import torch_resnet

ARCHITECTURES = ("convnet", "mlp-paper", "resnet20", "resnet56", "bn-inception")
CLASSES = 10  # Fashion-MNIST's (load_fashion_mnist rejects any other label)
NORMALIZATIONS = ("bn", "gn", "none")

# Fashion-MNIST training-set pixel statistics after scaling to [0, 1] (src/Core/Data/Dataset.cs).
MEAN = 0.2860
STD = 0.3530

CHECKPOINT_FORMAT = "bndist-checkpoint/1"
MOMENTUM_PREFIX = "optimizer.momentum_buffer."


def _norm(kind, index, channels, two_d):
    """(module name, module) of the index-th normalization: bn<i> (BatchNorm2d on feature maps,
    BatchNorm1d on features, eps 1e-5, momentum 0.1 as BnDist), gn<i>, or None for 'none'."""
    if kind == "bn":
        return f"bn{index}", (nn.BatchNorm2d(channels) if two_d else nn.BatchNorm1d(channels))
    if kind == "gn":
        return f"gn{index}", nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return None
    raise ValueError(f"unknown normalization {kind!r} (expected {', '.join(NORMALIZATIONS)})")


class _Chain(nn.Module):
    """Registers layers in BnDist's layer order (so state_dict() lists them in that order)."""

    def __init__(self, norm):
        super().__init__()
        self._kind = norm
        self._norms = {}

    def _norm(self, index, channels, two_d):
        named = _norm(self._kind, index, channels, two_d)
        if named is not None:
            self.add_module(*named)
            self._norms[index] = named[0]

    def n(self, index, x):
        """The index-th normalization applied to x (x itself for norm='none')."""
        name = self._norms.get(index)
        return x if name is None else getattr(self, name)(x)


class ConvNet(_Chain):
    def __init__(self, norm="bn", in_channels=1, classes=10):
        super().__init__(norm)
        biased = norm == "none"
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1, bias=biased)
        self._norm(1, 32, True)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=biased)
        self._norm(2, 64, True)
        self.fc1 = nn.Linear(64 * 7 * 7, 128, bias=biased)
        self._norm(3, 128, False)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.n(1, self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.n(2, self.conv2(x))), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.n(3, self.fc1(x)))
        return self.fc2(x)


class PaperMlp(_Chain):
    """The BN paper's MNIST network (section 4.1): weights from N(0, 0.01^2) as in BnDist."""

    def __init__(self, norm="bn", in_channels=1, classes=10):
        super().__init__(norm)
        biased = norm == "none"
        widths = [in_channels * 784, 100, 100, 100]
        for i in range(3):
            setattr(self, f"fc{i + 1}", nn.Linear(widths[i], widths[i + 1], bias=biased))
            self._norm(i + 1, widths[i + 1], False)
        self.fc4 = nn.Linear(100, classes)
        for fc in (self.fc1, self.fc2, self.fc3, self.fc4):
            nn.init.normal_(fc.weight, 0.0, 0.01)
            if fc.bias is not None:
                nn.init.zeros_(fc.bias)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = torch.sigmoid(self.n(1, self.fc1(x)))
        x = torch.sigmoid(self.n(2, self.fc2(x)))
        x = torch.sigmoid(self.n(3, self.fc3(x)))
        return self.fc4(x)


def build(architecture, norm="bn", in_channels=1, classes=10):
    """The twin of BnDist's `architecture` for inputs of in_channels channels and classes classes."""
    if architecture == "convnet":
        return ConvNet(norm, in_channels, classes)
    if architecture == "mlp-paper":
        return PaperMlp(norm, in_channels, classes)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown model {architecture!r} (expected {', '.join(ARCHITECTURES)})")
    if norm != "bn":
        raise ValueError(f"{architecture}: only norm 'bn' is defined (got {norm!r})")
    if architecture == "bn-inception":
        return torch_inception.build(in_channels, classes)
    return torch_resnet.build(architecture, in_channels, classes)


# ---- BnDist checkpoints -------------------------------------------------------------------

def load_checkpoint(path):
    """Reads a BnDist checkpoint (src/Core/Checkpoints/Checkpoint.cs).

    Returns (state_dict, momentum, metadata): state_dict maps state names to tensors (F32
    parameters and running statistics, I64 0-d num_batches_tracked), ready for
    model.load_state_dict(..., strict=True); momentum maps parameter names to SGD momentum
    buffers (empty when the checkpoint has none); metadata is the safetensors metadata
    (format, model, norm, step, config).
    """
    tensors, metadata = safetensors_io.read(path)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a BnDist checkpoint (format {metadata.get('format')!r}, expected {CHECKPOINT_FORMAT})")
    state, momentum = {}, {}
    for name, t in tensors.items():
        if name.startswith(MOMENTUM_PREFIX):
            momentum[name[len(MOMENTUM_PREFIX):]] = t
        else:
            if t.dtype not in (torch.float32, torch.int64):
                raise ValueError(f"{path}: {name} is {t.dtype}, expected float32 (or int64 num_batches_tracked)")
            state[name] = t
    return state, momentum, metadata


def check_names(model, state, source):
    """Raises ValueError naming every key of model.state_dict() that state lacks, every key of
    state the model does not have, and every shape that differs (source names state's origin)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: {tuple(state[k].shape)}, model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        lines = [f"{source} does not fit the PyTorch twin {type(model).__name__} "
                 f"({len(state)} tensors, the twin has {len(expected)}):"]
        lines += [f"  missing from {source}: {k}" for k in missing]
        lines += [f"  unexpected in {source}: {k}" for k in unexpected]
        lines += [f"  shape differs: {s}" for s in shapes]
        raise ValueError("\n".join(lines))


def load_into(model, path, optimizer=None):
    """Loads a BnDist checkpoint into model (strict: every key must match, else a ValueError
    names each missing, unexpected or misshapen key) and, when an optimizer (torch.optim.SGD
    over model.parameters()) is given and the checkpoint has them, its momentum buffers.
    Returns the checkpoint metadata."""
    state, momentum, metadata = load_checkpoint(path)
    check_names(model, state, path)
    model.load_state_dict(state, strict=True)
    if optimizer is not None and momentum:
        for name, p in model.named_parameters():
            optimizer.state[p]["momentum_buffer"] = momentum[name].clone()
    return metadata


def momentum_state(model, optimizer):
    """{MOMENTUM_PREFIX + name: buffer} for the parameters that have one (as BnDist saves them)."""
    out = {}
    for name, p in model.named_parameters():
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            out[MOMENTUM_PREFIX + name] = buf
    return out


# ---- Fashion-MNIST -------------------------------------------------------------------------

def _open(path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _find(directory, name):
    for candidate in (os.path.join(directory, name + ".gz"), os.path.join(directory, name)):
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(f"{name}(.gz) not found in {directory!r}")


def read_idx(path):
    """Reads an IDX file of unsigned bytes (raw or gzip): returns (dims, bytes)."""
    with _open(path) as f:
        blob = f.read()
    if len(blob) < 4:
        raise ValueError(f"{path}: truncated header")
    zero, dtype, rank = struct.unpack_from(">HBB", blob, 0)
    if zero != 0 or dtype != 0x08 or rank not in (1, 3):
        raise ValueError(f"{path}: bad magic {blob[:4].hex()} (expected IDX unsigned bytes, rank 1 or 3)")
    dims = struct.unpack_from(f">{rank}I", blob, 4)
    count = 1
    for d in dims:
        count *= d
    payload = blob[4 + 4 * rank:]
    if len(payload) != count:
        raise ValueError(f"{path}: payload is {len(payload)} bytes, header says {dims} = {count}")
    return dims, payload


def _f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def normalize_table():
    """float32 value of each pixel 0..255, (p/255 - MEAN)/STD, bit-identical to BnDist's
    Dataset.Normalize: every step rounded to float32, as C#'s float arithmetic does. (Each
    op is done in double and rounded: for +, -, / of floats that is the correctly rounded
    float result, since 53 >= 2*24 + 2. Torch's tensor/scalar division multiplies by the
    reciprocal instead, which can differ by an ulp.)"""
    mean, std = _f32(MEAN), _f32(STD)
    return torch.tensor([_f32(_f32(_f32(p / 255.0) - mean) / std) for p in range(256)], dtype=torch.float32)


def load_fashion_mnist(directory, train):
    """(images [N, 1, 28, 28] float32 normalized, labels [N] int64) of the training split
    (train-*) or the test split (t10k-*) in directory (IDX files, .gz preferred)."""
    prefix = "train" if train else "t10k"
    dims, pixels = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
    (count,), labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
    if len(dims) != 3 or dims[0] != count:
        raise ValueError(f"{directory}: {dims} images but {count} labels")
    raw = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).long()
    images = normalize_table()[raw].reshape(count, 1, dims[1], dims[2])
    labels = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    if count and int(labels.max()) >= 10:
        raise ValueError(f"{directory}: a label is not in [0, 10)")
    return images, labels


def setup_threads(threads):
    """torch.set_num_threads(threads), with a warning on stderr when OMP_NUM_THREADS disagrees
    (OpenBLAS's OpenMP pool is sized from it when the library loads)."""
    torch.set_num_threads(threads)
    env = os.environ.get("OMP_NUM_THREADS")
    if env != str(threads):
        print(f"warning: OMP_NUM_THREADS={env} but {threads} threads asked; run with OMP_NUM_THREADS={threads} "
              "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp", file=sys.stderr)


def blas_library():
    """The BLAS shared object this process loaded (Debian's alternatives differ 2x in speed), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line.rsplit("/", 1)[-1]}
    except OSError:
        return None
    return ", ".join(sorted(os.path.realpath(p) for p in paths)) or None


def runtime_info():
    """What a benchmark should report about the PyTorch it ran on."""
    return {
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "blas": blas_library(),
        "mkldnn": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
    }


def step_flops(model, batch, sample_shape=(1, 28, 28)):
    """2 x multiply-adds of the convolutions and linear layers in one training step, counted as
    `bndist bench step` counts them (BenchCommand.StepFlops): forward, weight gradient and
    input gradient, but no input gradient for the first layer."""
    macs = []  # per layer: multiply-adds of its forward pass

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            per_output = module.weight[0].numel()  # Cin/groups * KH * KW
            macs.append(output.numel() * per_output)
        elif isinstance(module, nn.Linear):
            macs.append(output.shape[0] * module.weight.numel())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(batch, *sample_shape, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return sum(2 * m * (2 if i == 0 else 3) for i, m in enumerate(macs))
