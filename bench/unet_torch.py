#!/usr/bin/env python3
"""PyTorch reference for the U-Net of `crates/libs/unet`: training-step (or inference) throughput and
peak memory on CPU, with the same architecture, loss and optimiser as the burn model.

Mirrors `crates/libs/unet/src/model.rs` (UNetConfig with upsample Transposed, dropout 0) and
`crates/libs/unet/src/training.rs` (loss, AdamW, gradient clipping):

  * ConvBlock(c_in, c_out): [3x3 'same' conv (bias only when norm is none) -> norm -> ReLU] x 2.
  * encoders l = 0..depth-1: ConvBlock(l == 0 ? in : w(l-1), w(l)), w(l) = base << l; each is
    followed by 2x2 max pooling (stride 2); the block's output is the skip.
  * bottleneck: ConvBlock(w(depth-1), w(depth)); dropout 0 (identity).
  * decoder l = depth-1..0: ConvTranspose2d(w(l+1) -> w(l), 2x2, stride 2, with bias),
    cat([up, skip], dim=1), ConvBlock(2 w(l), w(l)).
  * head: 1x1 conv with bias, w(0) -> out.
  * norm batch: BatchNorm2d (eps 1e-5, momentum 0.1, gamma + beta); group: GroupNorm with the
    largest g in 8..1 dividing the channels (eps 1e-5, affine).
  * loss: mean BCE-with-logits + (1 - soft Dice), soft Dice per channel
    (2 sum(p t) + 1) / (sum p + sum t + 1) over N, H, W, averaged over channels, p = sigmoid.
  * AdamW(lr 2e-3, betas (0.9, 0.999), eps 1e-5 [burn's default], weight_decay 1e-4), gradient
    clipping to norm 1.0. burn 0.22's GradientClippingConfig::Norm clips EACH PARAMETER TENSOR's
    gradient to that norm (burn-optim ModuleOptimizer calls clip_gradient per parameter), not the
    global norm; `--clip per-param` (default) does the same, `--clip global` uses
    torch.nn.utils.clip_grad_norm_.
  * burn's training step reads the loss back (`into_scalar`): so does this one (`.item()`).
    The learning rate is constant here (burn's cosine schedule only changes a scalar).

Input sizes are multiples of 2^depth here, so burn's reflect padding / cropping is a no-op.

Usage:
  python3 bench/unet_torch.py --batch 8 --size 128 --depth 3 --base 16 --norm batch \
      --threads 2 --steps 20 --warmup 3 --mode train --json

Install: see bench/unet_torch_requirements.txt.
"""

import argparse
import json
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# Peak RSS right after `import torch` (the CPU-and-CUDA PyPI build maps ~0.7 GiB on import alone).
IMPORT_RSS_MIB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def groups_for(channels: int) -> int:
    return next(g for g in range(8, 0, -1) if channels % g == 0)


def make_norm(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)
    if norm == "group":
        return nn.GroupNorm(groups_for(channels), channels, eps=1e-5, affine=True)
    return nn.Identity()


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, norm: str):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding="same", bias=bias)
        self.norm1 = make_norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding="same", bias=bias)
        self.norm2 = make_norm(norm, c_out)

    def forward(self, x):
        x = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(x)))


class UNet(nn.Module):
    def __init__(self, in_channels=1, out_channels=2, depth=3, base=16, norm="batch"):
        super().__init__()
        w = lambda level: base << level  # noqa: E731
        self.encoders = nn.ModuleList(
            ConvBlock(in_channels if l == 0 else w(l - 1), w(l), norm) for l in range(depth)
        )
        self.pool = nn.MaxPool2d(2, 2)
        self.bottleneck = ConvBlock(w(max(depth - 1, 0)), w(depth), norm)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(w(l + 1), w(l), 2, stride=2, bias=True) for l in reversed(range(depth))
        )
        self.decoders = nn.ModuleList(ConvBlock(2 * w(l), w(l), norm) for l in reversed(range(depth)))
        self.head = nn.Conv2d(w(0), out_channels, 1, bias=True)

    def forward(self, x):
        skips = []
        for enc in self.encoders:
            y = enc(x)
            x = self.pool(y)
            skips.append(y)
        x = self.bottleneck(x)  # dropout 0: identity
        for up, dec in zip(self.ups, self.decoders):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


def expected_params(in_channels: int, out_channels: int, depth: int, base: int, norm: str) -> int:
    """The parameter count of burn's UNet (`UNet::num_params()`), worked out from model.rs.

    With w(l) = base << l and n = 1 if norm is none else 0 (conv bias only without norm):
      ConvBlock(ci, co) = 9 ci co + 9 co co            (two 3x3 conv weights)
                          + n * 2 co                   (their biases, norm none only)
                          + (1 - n) * 2 * 2 co         (two norms x gamma + beta; BatchNorm's
                                                        running mean / var are buffers, not params)
      total = sum_{l<depth} ConvBlock(l == 0 ? in : w(l-1), w(l))          encoders
            + ConvBlock(w(depth-1), w(depth))                              bottleneck
            + sum_{l<depth} [4 w(l+1) w(l) + w(l)]                         transposed convs + bias
            + sum_{l<depth} ConvBlock(2 w(l), w(l))                        decoders
            + w(0) out + out                                               1x1 head + bias
    depth 3, base 16, in 1, out 2, batch/group norm: 2512 + 13952 + 55552 + 221696 (bottleneck)
      + 43120 (ups) + 145600 (decoders) + 34 (head) = 482,466.
    """
    w = lambda level: base << level  # noqa: E731
    has_norm = norm != "none"

    def block(ci, co):
        return 9 * ci * co + 9 * co * co + (4 * co if has_norm else 2 * co)

    total = sum(block(in_channels if l == 0 else w(l - 1), w(l)) for l in range(depth))
    total += block(w(max(depth - 1, 0)), w(depth))
    total += sum(4 * w(l + 1) * w(l) + w(l) for l in range(depth))
    total += sum(block(2 * w(l), w(l)) for l in range(depth))
    total += w(0) * out_channels + out_channels
    return total


def loss_fn(logits, target):
    bce = F.binary_cross_entropy_with_logits(logits, target)  # mean over all elements
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(0, 2, 3))
    total = p.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3))
    dice = ((2.0 * inter + 1.0) / (total + 1.0)).mean()
    return bce + (1.0 - dice)


def clip_per_param_(params, max_norm: float):
    # burn: clip_coef = threshold / (norm + f32::MIN_POSITIVE); scale only when norm > threshold.
    with torch.no_grad():
        for p in params:
            if p.grad is None:
                continue
            n = torch.linalg.vector_norm(p.grad)
            coef = torch.clamp(max_norm / (n + torch.finfo(torch.float32).tiny), max=1.0)
            p.grad.mul_(coef)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--in-channels", type=int, default=1)
    ap.add_argument("--out-channels", type=int, default=2)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--norm", choices=["batch", "group", "none"], default="batch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--clip", choices=["per-param", "global"], default="per-param")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    a = ap.parse_args(argv)

    if a.size % (1 << a.depth) != 0:
        ap.error(f"--size must be a multiple of 2^depth = {1 << a.depth}")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    model = UNet(a.in_channels, a.out_channels, a.depth, a.base, a.norm)
    n_params = sum(p.numel() for p in model.parameters())
    expected = expected_params(a.in_channels, a.out_channels, a.depth, a.base, a.norm)
    print(f"parameters: {n_params} (burn expected {expected})", file=sys.stderr)
    if n_params != expected:
        sys.exit(f"parameter count {n_params} != burn's {expected}")

    g = torch.Generator().manual_seed(a.seed)
    x = torch.rand(a.batch, a.in_channels, a.size, a.size, generator=g)
    y = (torch.rand(a.batch, a.out_channels, a.size, a.size, generator=g) < 0.3).float()

    if a.mode == "train":
        model.train()
        params = [p for p in model.parameters()]
        opt = torch.optim.AdamW(params, lr=2e-3, betas=(0.9, 0.999), eps=1e-5, weight_decay=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            if a.clip == "global":
                torch.nn.utils.clip_grad_norm_(params, 1.0)
            else:
                clip_per_param_(params, 1.0)
            opt.step()
            return loss.item()

        for _ in range(a.warmup):
            step()
        t0 = time.perf_counter()
        last = None
        for _ in range(a.steps):
            last = step()
        seconds = time.perf_counter() - t0
        if last is not None and not (last == last):  # NaN check
            sys.exit("loss became NaN")
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                return float(model(x)[0, 0, 0, 0])

        for _ in range(a.warmup):
            step()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        seconds = time.perf_counter() - t0

    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sps = a.steps / seconds if seconds > 0 else float("nan")
    out = {
        "framework": "pytorch",
        "version": torch.__version__,
        "mode": a.mode,
        "batch": a.batch,
        "size": a.size,
        "depth": a.depth,
        "base": a.base,
        "norm": a.norm,
        "threads": a.threads,
        "steps": a.steps,
        "seconds": round(seconds, 4),
        "steps_per_second": round(sps, 4),
        "images_per_second": round(sps * a.batch, 3),
        "peak_rss_mib": round(peak_rss_mib, 1),
        "import_rss_mib": round(IMPORT_RSS_MIB, 1),
        "params": n_params,
        "clip": a.clip if a.mode == "train" else None,
    }
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
