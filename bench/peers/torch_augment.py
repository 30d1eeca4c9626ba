"""Training-time augmentation of a batch, as `bndist train --augment crop:P,flip` defines it.

  crop:P   pad each image with P zeros on every side, AFTER normalization (so the border is the
           dataset's mean pixel, not black), then cut a random HxW window: its top-left corner is
           drawn uniformly from the (2P+1)^2 positions, independently per sample (torchvision's
           RandomCrop(H, padding=P) on a normalized tensor)
  flip     mirror left-right with probability 0.5, independently per sample
           (RandomHorizontalFlip(0.5))

Both apply to each sample of each training batch, fresh every time it is visited; evaluation
sees the images unchanged. The draws come from a torch.Generator: the same distribution as
BnDist's counter-based draws, not the same samples.

    spec = parse("crop:4,flip")          # {"crop": 4, "flip": True}
    x = augment(x, spec, generator)      # x: [N, C, H, W] normalized float
"""
import torch
import torch.nn.functional as F


def parse(text):
    """{"crop": P, "flip": bool} of "crop:P,flip" (either part, any order; "" or "none": nothing)."""
    spec = {"crop": 0, "flip": False}
    if text in (None, "", "none"):
        return spec
    for item in text.split(","):
        name, _, value = item.strip().partition(":")
        if name == "crop" and value.isdigit() and int(value) >= 1:
            spec["crop"] = int(value)
        elif name == "flip" and not value:
            spec["flip"] = True
        else:
            raise ValueError(f"augmentation {item!r}: expected crop:P (P >= 1) or flip")
    return spec


def describe(spec):
    parts = []
    if spec["crop"]:
        parts.append(f"pad {spec['crop']} zeros after normalization + random crop")
    if spec["flip"]:
        parts.append("horizontal flip p=0.5")
    return ", ".join(parts) or "none"


def augment(x, spec, generator):
    """x [N, C, H, W] augmented per spec: a new tensor (x itself when spec asks for nothing)."""
    pad, flip = spec["crop"], spec["flip"]
    if not pad and not flip:
        return x
    n, _, h, w = x.shape
    rows = torch.arange(h).expand(n, h)
    cols = torch.arange(w).expand(n, w)
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))  # zeros: the mean pixel, since x is normalized
        rows = rows + torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
        cols = cols + torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    if flip:
        mirrored = torch.rand(n, 1, generator=generator) < 0.5
        cols = torch.where(mirrored, cols.flip(1), cols)
    # advanced indexing around the channel slice puts the indexed dimensions first: [N, H, W, C]
    out = x[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
