#!/usr/bin/python3
"""Reference outputs of the UNETR semantic head, from plain torch.nn modules.

Test tool only. The decoder is written here from the description in
shared/docs/REFERENCE.md §2.10 (torch_em's UNETR decoder without skip
connections, the layout of micro_sam's `decoder_state`), with its own module
names chosen so that state_dict() has exactly those keys. unetr_test.cpp runs
it with Debian's python3-torch:

  make_unetr_fixture.py make OUT --embed E --features F --classes C --grid G
                        [--transpose] --input H W --original H W --seed S
      random weights (BatchNorm running stats too), a random neck tensor;
      writes OUT/neck.npy (1,E,G,G), OUT/logits.npy (1,C,16G,16G),
      OUT/post.npy (1,C,H0,W0) after the SAM-style postprocessing, and
      OUT/decoder.pth (torch.save of the state dict, micro_sam's decoder file).
  make_unetr_fixture.py check FILE OUT --embed ... (same shape options)
      loads FILE's "decoder_state" (a joint checkpoint written by medicosam)
      strictly into the module, runs it on OUT/neck.npy and writes
      OUT/check_logits.npy.
  make_unetr_fixture.py batch LINES --embed 0 --features 0 --classes 0 --grid 0
      runs each line of LINES ("make OUT ..." / "check FILE OUT ...") in this
      one process (importing torch once).
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Upsample2x(nn.Module):
    """Bilinear x2 then a 1x1 conv ("conv"), or a stride-2 transposed conv ("block")."""

    def __init__(self, cin, cout, transpose):
        super().__init__()
        self.transpose = transpose
        if transpose:
            self.block = nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2)
        else:
            self.conv = nn.Conv2d(cin, cout, kernel_size=1)

    def forward(self, x):
        if self.transpose:
            return self.block(x)
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))


class Conv3x3(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.block = nn.Conv2d(cin, cout, kernel_size=3, padding=1)

    def forward(self, x):
        return self.block(x)


class UpBlock(nn.Module):
    """Upsample x2, 3x3 conv, batch norm, ReLU."""

    def __init__(self, cin, cout, transpose):
        super().__init__()
        self.block = nn.Sequential(Upsample2x(cin, cout, transpose), Conv3x3(cout, cout),
                                   nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        return self.block(x)


class DoubleConv(nn.Module):
    """(instance norm without affine, 3x3 conv, ReLU) twice."""

    def __init__(self, cin, cout):
        super().__init__()
        self.block = nn.Sequential(nn.InstanceNorm2d(cin), nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(),
                                   nn.InstanceNorm2d(cout), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return self.block(x)


def crop_like(x, shape):
    """Centre crop of every dimension of x that is larger than shape (channels too)."""
    for d, want in enumerate(shape):
        extra = (x.shape[d] - want) // 2
        if extra > 0:
            x = x.narrow(d, extra, x.shape[d] - 2 * extra)
    return x


class Stages(nn.Module):
    def __init__(self, feats, transpose):
        super().__init__()
        pairs = list(zip(feats[:-1], feats[1:]))
        self.blocks = nn.ModuleList([DoubleConv(a, b) for a, b in pairs])
        self.samplers = nn.ModuleList([Upsample2x(a, b, transpose) for a, b in pairs])

    def forward(self, x, skips):
        for block, sampler, skip in zip(self.blocks, self.samplers, skips):
            x = sampler(x)
            x = block(torch.cat([x, crop_like(skip, x.shape)], dim=1))
        return x


class SemanticDecoder(nn.Module):
    def __init__(self, embed, f, classes, transpose):
        super().__init__()
        feats = [8 * f, 4 * f, 2 * f, f]
        self.decoder = Stages(feats, transpose)
        self.deconv1 = UpBlock(embed, feats[0], transpose)
        self.deconv2 = UpBlock(feats[0], feats[1], transpose)
        self.deconv3 = UpBlock(feats[1], feats[2], transpose)
        self.deconv4 = UpBlock(feats[2], feats[3], transpose)
        self.base = DoubleConv(embed, feats[0])
        self.out_conv = nn.Conv2d(f, classes, 1)
        self.deconv_out = Upsample2x(f, f, transpose)
        self.decoder_head = DoubleConv(2 * f, f)

    def forward(self, z12):
        z9 = self.deconv1(z12)
        z6 = self.deconv2(z9)
        z3 = self.deconv3(z6)
        z0 = self.deconv4(z3)
        x = self.decoder(self.base(z12), [z9, z6, z3])
        x = self.decoder_head(torch.cat([self.deconv_out(x), z0], dim=1))
        return self.out_conv(x)


def postprocess(logits, img_size, input_hw, original_hw):
    x = F.interpolate(logits, (img_size, img_size), mode="bilinear", align_corners=False)
    x = x[..., :input_hw[0], :input_hw[1]]
    return F.interpolate(x, tuple(original_hw), mode="bilinear", align_corners=False)


def randomise(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = max(1, p[0].numel()) if p.dim() > 1 else 1
            scale = (1.0 / fan_in) ** 0.5 if p.dim() > 1 else 0.1
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.weight.add_(1.0)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["make", "check", "batch"])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--embed", type=int, required=True)
    ap.add_argument("--features", type=int, required=True)
    ap.add_argument("--classes", type=int, required=True)
    ap.add_argument("--grid", type=int, required=True)
    ap.add_argument("--transpose", action="store_true")
    ap.add_argument("--input", type=int, nargs=2, default=None)
    ap.add_argument("--original", type=int, nargs=2, default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    if a.mode == "batch":  # one command line per line of the file, in one process
        with open(a.paths[0]) as f:
            for line in f:
                if line.strip():
                    main(line.split())
        return
    model = SemanticDecoder(a.embed, a.features, a.classes, a.transpose).eval()
    if a.mode == "make":
        (out,) = a.paths
        os.makedirs(out, exist_ok=True)
        gen = torch.Generator().manual_seed(a.seed)
        randomise(model, gen)
        neck = torch.randn((1, a.embed, a.grid, a.grid), generator=gen)
        with torch.no_grad():
            logits = model(neck)
            post = postprocess(logits, 16 * a.grid, a.input, a.original)
        np.save(os.path.join(out, "neck.npy"), neck.numpy())
        np.save(os.path.join(out, "logits.npy"), logits.numpy())
        np.save(os.path.join(out, "post.npy"), post.numpy())
        torch.save(model.state_dict(), os.path.join(out, "decoder.pth"))
    else:
        ckpt, out = a.paths
        state = torch.load(ckpt, map_location="cpu")
        model.load_state_dict(state["decoder_state"], strict=True)
        neck = torch.from_numpy(np.load(os.path.join(out, "neck.npy")))
        with torch.no_grad():
            np.save(os.path.join(out, "check_logits.npy"), model(neck).numpy())


if __name__ == "__main__":
    main()
