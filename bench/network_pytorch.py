"""Kestrel's network in PyTorch, for `kestrel bench network` to compare against.

The same architecture as crates/kestrel-model/src/network.rs (stride-2 stem, two residual
stages of two blocks each, 1x1 heads for classes, heading and size), the same loss on the
centre cell (cross-entropy + squared errors of heading and log size), Adam, the same batch and
chip size, 2 threads. Prints one JSON object. Needs torch (see bench/README.md); not run in CI.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBn(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Residual(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.first = ConvBn(cin, cout, stride)
        self.second = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.second_bn = nn.BatchNorm2d(cout)
        self.skip = nn.Conv2d(cin, cout, 1, stride, bias=False) if (cin != cout or stride != 1) else None

    def forward(self, x):
        y = self.second_bn(self.second(self.first(x)))
        return F.relu(y + (self.skip(x) if self.skip is not None else x))


class Network(nn.Module):
    def __init__(self, in_channels=3, classes=1, widths=(16, 32, 64)):
        super().__init__()
        w0, w1, w2 = widths
        self.stem = ConvBn(in_channels, w0, 2)
        self.stage1 = Residual(w0, w1, 2)
        self.stage1b = Residual(w1, w1, 1)
        self.stage2 = Residual(w1, w2, 2)
        self.stage2b = Residual(w2, w2, 1)
        self.head_class = nn.Conv2d(w2, classes + 1, 1)
        self.head_heading = nn.Conv2d(w2, 2, 1)
        self.head_size = nn.Conv2d(w2, 2, 1)

    def forward(self, x):
        f = self.stem(x)
        f = self.stage1b(self.stage1(f))
        f = self.stage2b(self.stage2(f))
        return self.head_class(f), self.head_heading(f), self.head_size(f)


def centre(t):
    _, _, h, w = t.shape
    return t[:, :, h // 2, w // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--chip", type=int, default=52)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    dev = torch.device(a.device)
    # A GPU queues work and returns at once: wait for it before reading the clock.
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    net = Network().to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    params = sum(p.numel() for p in net.parameters())
    y = (torch.arange(a.batch) % 2).to(dev)
    train_s = []
    net.train()
    for i in range(a.steps + 2):
        x = torch.rand(a.batch, 3, a.chip, a.chip, device=dev)
        h = torch.rand(a.batch, 2, device=dev) * 2 - 1
        s = torch.rand(a.batch, 2, device=dev) * 2
        sync()
        t = time.perf_counter()
        logits, heading, size = net(x)
        loss = F.cross_entropy(centre(logits), y) + 0.5 * ((centre(heading) - h) ** 2).sum() / a.batch + 0.5 * ((centre(size) - s) ** 2).sum() / a.batch
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        if i >= 2:
            train_s.append(time.perf_counter() - t)
    net.eval()
    infer_s, tile_s = [], []
    with torch.no_grad():
        for i in range(a.steps + 2):
            x = torch.rand(a.batch, 3, a.chip, a.chip, device=dev)
            sync()
            t = time.perf_counter()
            net(x)
            sync()
            if i >= 2:
                infer_s.append(time.perf_counter() - t)
        for i in range(max(a.steps // 2, 1) + 1):
            x = torch.rand(1, 3, a.tile, a.tile, device=dev)
            sync()
            t = time.perf_counter()
            net(x)
            sync()
            if i >= 1:
                tile_s.append(time.perf_counter() - t)
    tile = statistics.median(tile_s)
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU",
        "parameters": params,
        "train_images_per_s": a.batch / statistics.median(train_s),
        "infer_images_per_s": a.batch / statistics.median(infer_s),
        "tile_px": a.tile,
        "tile_seconds": tile,
        "tile_mpx_per_s": a.tile * a.tile / 1e6 / tile,
    }))


if __name__ == "__main__":
    main()
