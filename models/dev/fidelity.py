#!/usr/bin/env python3
"""Dev-only numerical fidelity check (not run by tests/CI). Needs python3-torch, python3-torchvision, and a
built tree (`npx tsc -p .`). Run from the repository root: python3 models/dev/fidelity.py

1. EfficientNet-B0: torchvision efficientnet_b0 with random weights *and* random BN running stats, saved with
   torch.save; imported by our importer, built to ONNX, run in onnxruntime-node on random uint8 tiles; compared with
   torch: F.interpolate(bilinear, align_corners=False, antialias=False) to 224, /255, ImageNet mean/std,
   model.features, then mean / amax over H,W.
2. ResNet50-trunc: torchvision resnet50 (random weights and BN stats) through layer3, mean / amax over H,W.
3. ViT-B/16: torchvision vit_b_16 (random weights), keys mapped onto timm names; and a small plain-torch
   timm-named ViT with 4 registers, no_embed_class, LayerScale, packed and split SwiGLU (RefVit below).
4. StainNet: the public checkpoint (../shared/testdata/stainnet/...) in torch vs our ONNX, on random pixels.
"""
import json, math, os, subprocess, sys, tempfile
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
STAINNET = os.path.join(ROOT, '..', 'shared', 'testdata', 'stainnet', 'StainNet-Public_layer3_ch32.pth')

NODE = r"""
import { readFileSync, writeFileSync } from 'node:fs';
import ort from 'onnxruntime-node';
import { importEfficientNetB0, importStainNet } from './dist/models/weights/import.js';
import { buildEfficientNetB0, buildStainNet } from './dist/models/build.js';
import { importEmbedder } from './dist/models/embedders.js';
const job = JSON.parse(process.argv[1]);
const kind = job.kind;
let bytes;
if (kind === 'embedder') bytes = (await importEmbedder(job.weights, job.arch)).bytes;
else if (kind === 'efficientnet') bytes = buildEfficientNetB0(await importEfficientNetB0(job.weights));
else bytes = buildStainNet(await importStainNet(job.weights));
const s = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'all', intraOpNumThreads: 2 });
const x = new Uint8Array(readFileSync(job.input));
const r = await s.run({ tiles: new ort.Tensor('uint8', x, job.shape) });
for (const name of job.outputs) writeFileSync(`${job.out}.${name}`, r[name].data);
"""


def run_node(job):
    subprocess.run(['node', '--input-type=module', '-e', NODE, json.dumps(job)], cwd=ROOT, check=True)
    return {n: np.fromfile(f"{job['out']}.{n}", dtype=np.float32) for n in job['outputs']}


def efficientnet(tmp, rng):
    torch.manual_seed(0)
    model = torchvision.models.efficientnet_b0().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    pth = os.path.join(tmp, 'effnet_random.pth')
    torch.save(model.state_dict(), pth)
    results = []
    for n, size in [(4, 448), (2, 300), (2, 224)]:
        tiles = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
        inp = os.path.join(tmp, f'tiles{size}.bin')
        tiles.tofile(inp)
        ours = run_node({'kind': 'efficientnet', 'weights': pth, 'input': inp, 'shape': [n, size, size, 3],
                         'out': os.path.join(tmp, f'eff{size}'), 'outputs': ['avg', 'max']})
        with torch.no_grad():
            x = torch.from_numpy(tiles).float().permute(0, 3, 1, 2)
            x = F.interpolate(x, size=(224, 224), mode='bilinear', align_corners=False, antialias=False)
            x = x / 255.0
            mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
            std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
            f = model.features((x - mean) / std)
            ref = {'avg': f.mean(dim=(2, 3)).numpy().ravel(), 'max': f.amax(dim=(2, 3)).numpy().ravel()}
        for k in ('avg', 'max'):
            err = float(np.abs(ours[k] - ref[k]).max())
            scale = float(np.abs(ref[k]).max())
            results.append((f'EfficientNet-B0 {k} S={size} N={n}', err, scale))
    return results


def randomize_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)


def imagenet_input(tiles, size, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    x = torch.from_numpy(tiles).float().permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(size, size), mode='bilinear', align_corners=False, antialias=False) / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def compare(label, ours, ref):
    rows = []
    for k in ref:
        err = float(np.abs(ours[k] - ref[k]).max())
        rows.append((f'{label} {k}', err, float(np.abs(ref[k]).max())))
    return rows


def resnet50_trunc(tmp, rng):
    """torchvision resnet50 (random weights, random BN stats) up to layer3, avg/max pooled; saved whole (layer4/fc too)."""
    torch.manual_seed(1)
    model = torchvision.models.resnet50().eval()
    randomize_bn(model)
    pth = os.path.join(tmp, 'resnet50_random.pth')
    torch.save(model.state_dict(), pth)
    trunk = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3)
    results = []
    for n, size in [(2, 448), (2, 224)]:
        tiles = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
        inp = os.path.join(tmp, f'rn{size}.bin')
        tiles.tofile(inp)
        ours = run_node({'kind': 'embedder', 'weights': pth, 'input': inp, 'shape': [n, size, size, 3],
                         'out': os.path.join(tmp, f'rn{size}'), 'outputs': ['avg', 'max']})
        with torch.no_grad():
            f = trunk(imagenet_input(tiles, 224))
            ref = {'avg': f.mean(dim=(2, 3)).numpy().ravel(), 'max': f.amax(dim=(2, 3)).numpy().ravel()}
        results += compare(f'ResNet50-trunc S={size} N={n}', ours, ref)
    return results


def tv_vit_to_timm(sd):
    """torchvision vit_b_16 state dict keys -> timm VisionTransformer keys (heads.* dropped)."""
    out = {'patch_embed.proj.weight': sd['conv_proj.weight'], 'patch_embed.proj.bias': sd['conv_proj.bias'],
           'cls_token': sd['class_token'], 'pos_embed': sd['encoder.pos_embedding'],
           'norm.weight': sd['encoder.ln.weight'], 'norm.bias': sd['encoder.ln.bias']}
    i = 0
    while f'encoder.layers.encoder_layer_{i}.ln_1.weight' in sd:
        p, b = f'encoder.layers.encoder_layer_{i}.', f'blocks.{i}.'
        for src, dst in [('ln_1', 'norm1'), ('ln_2', 'norm2'), ('self_attention.out_proj', 'attn.proj'),
                         ('mlp.0', 'mlp.fc1'), ('mlp.3', 'mlp.fc2')]:
            for t in ('weight', 'bias'):
                out[f'{b}{dst}.{t}'] = sd[f'{p}{src}.{t}']
        out[f'{b}attn.qkv.weight'] = sd[f'{p}self_attention.in_proj_weight']
        out[f'{b}attn.qkv.bias'] = sd[f'{p}self_attention.in_proj_bias']
        i += 1
    return {k: v.contiguous() for k, v in out.items()}


def vit_b_16(tmp, rng):
    """torchvision vit_b_16 (random weights, non-trivial LayerNorm/cls/pos), keys mapped to timm names."""
    torch.manual_seed(2)
    model = torchvision.models.vit_b_16().eval()
    with torch.no_grad():
        for name, prm in model.named_parameters():
            if name.startswith('heads'):
                continue
            if 'ln' in name and name.endswith('weight'):
                prm.uniform_(0.5, 1.5)
            elif name.endswith('bias') or name in ('class_token', 'encoder.pos_embedding'):
                prm.normal_(0, 0.1 if name.endswith('bias') else 0.5)
    pth = os.path.join(tmp, 'vit_b_16_timm.pth')
    torch.save(tv_vit_to_timm(model.state_dict()), pth)
    results = []
    for n, size in [(2, 448), (2, 224)]:
        tiles = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
        inp = os.path.join(tmp, f'vit{size}.bin')
        tiles.tofile(inp)
        ours = run_node({'kind': 'embedder', 'weights': pth, 'input': inp, 'shape': [n, size, size, 3],
                         'out': os.path.join(tmp, f'vit{size}'), 'outputs': ['cls', 'mean']})
        with torch.no_grad():
            x = model._process_input(imagenet_input(tiles, 224))
            x = torch.cat([model.class_token.expand(n, -1, -1), x], dim=1)
            f = model.encoder(x)
            ref = {'cls': f[:, 0].numpy().ravel(), 'mean': f[:, 1:].mean(dim=1).numpy().ravel()}
        results += compare(f'ViT-B/16 (torchvision) S={size} N={n}', ours, ref)
    return results


class RefBlock(nn.Module):
    """timm-named pre-norm block: LayerScale, and a packed (fc1 [2H,D]) or split (fc1_g/fc1_x) SwiGLU MLP."""
    def __init__(self, d, heads, hidden, split):
        super().__init__()
        self.heads, self.split = heads, split
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv, self.attn.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ls1, self.ls2 = nn.Module(), nn.Module()
        self.ls1.gamma = nn.Parameter(torch.rand(d) + 0.5)
        self.ls2.gamma = nn.Parameter(torch.rand(d) + 0.5)
        self.mlp = nn.Module()
        if split:
            self.mlp.fc1_g, self.mlp.fc1_x = nn.Linear(d, hidden), nn.Linear(d, hidden)
        else:
            self.mlp.fc1 = nn.Linear(d, 2 * hidden)
        self.mlp.fc2 = nn.Linear(hidden, d)

    def forward(self, x):
        n, t, d = x.shape
        qkv = self.attn.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1) @ v
        x = x + self.ls1.gamma * self.attn.proj(a.transpose(1, 2).reshape(n, t, d))
        h = self.norm2(x)
        if self.split:
            g = F.silu(self.mlp.fc1_g(h)) * self.mlp.fc1_x(h)
        else:
            x1, x2 = self.mlp.fc1(h).chunk(2, dim=-1)
            g = F.silu(x1) * x2
        return x + self.ls2.gamma * self.mlp.fc2(g)


class RefVit(nn.Module):
    """Registers (after the class token), no_embed_class position embedding, patch 14, final norm."""
    def __init__(self, d=192, depth=3, heads=3, regs=4, patch=14, grid=16, hidden=512):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.5)
        self.reg_token = nn.Parameter(torch.randn(1, regs, d) * 0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid, d) * 0.5)
        self.blocks = nn.ModuleList([RefBlock(d, heads, hidden, i % 2 == 1) for i in range(depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.regs, self.grid, self.patch = regs, grid, patch

    def forward(self, x):
        t = self.patch_embed.proj(x).flatten(2).transpose(1, 2) + self.pos_embed
        n = t.shape[0]
        x = torch.cat([self.cls_token.expand(n, -1, -1), self.reg_token.expand(n, -1, -1), t], dim=1)
        for b in self.blocks:
            x = b(x)
        x = self.norm(x)
        return {'cls': x[:, 0], 'mean': x[:, 1 + self.regs:].mean(dim=1)}


def vit_gated(tmp, rng):
    torch.manual_seed(3)
    model = RefVit().eval()
    with torch.no_grad():
        for name, prm in model.named_parameters():
            if name.startswith('norm') or '.norm' in name:
                (prm.uniform_(0.5, 1.5) if name.endswith('weight') else prm.normal_(0, 0.1))
    pth = os.path.join(tmp, 'vit_gated.pth')
    torch.save(model.state_dict(), pth)
    tiles = rng.integers(0, 256, size=(2, 448, 448, 3), dtype=np.uint8)
    inp = os.path.join(tmp, 'vitg.bin')
    tiles.tofile(inp)
    ours = run_node({'kind': 'embedder', 'weights': pth, 'input': inp, 'shape': [2, 448, 448, 3], 'arch': 'vit',
                     'out': os.path.join(tmp, 'vitg'), 'outputs': ['cls', 'mean']})
    with torch.no_grad():
        r = model(imagenet_input(tiles, model.grid * model.patch))
    # heads: our default is D/64 = 3 for D=192, the module's 3.
    return compare('ViT registers+LayerScale+SwiGLU (plain torch, D=192, 3 blocks) S=448 N=2', ours,
                   {k: v.numpy().ravel() for k, v in r.items()})


def stainnet(tmp, rng):
    if not os.path.exists(STAINNET):
        print(f'skip StainNet: {STAINNET} absent')
        return []
    net = nn.Sequential(nn.Conv2d(3, 32, 1), nn.ReLU(), nn.Conv2d(32, 32, 1), nn.ReLU(), nn.Conv2d(32, 3, 1))
    sd = torch.load(STAINNET, map_location='cpu')
    net.load_state_dict({k.replace('rgb_trans.', ''): v for k, v in sd.items()})
    net.eval()
    px = rng.integers(0, 256, size=(1, 512, 512, 3), dtype=np.uint8)
    inp = os.path.join(tmp, 'px.bin')
    px.tofile(inp)
    ours = run_node({'kind': 'stainnet', 'weights': STAINNET, 'input': inp, 'shape': [1, 512, 512, 3],
                     'out': os.path.join(tmp, 'stain'), 'outputs': ['normalized']})['normalized']
    with torch.no_grad():
        x = torch.from_numpy(px).float().permute(0, 3, 1, 2)
        y = net((x / 255.0 - 0.5) / 0.5)
        y = (y * 0.5 + 0.5).clamp(0, 1) * 255.0
        ref = y.permute(0, 2, 3, 1).numpy().ravel()
    err = float(np.abs(ours - ref).max())
    rounded = int((np.floor(ours + 0.5) != np.floor(ref + 0.5)).sum())
    return [('StainNet public checkpoint (0..255)', err, 255.0), (f'StainNet uint8 values differing after rounding (of {ref.size})', rounded, 0)]


def main():
    rng = np.random.default_rng(1234)
    with tempfile.TemporaryDirectory() as tmp:
        rows = efficientnet(tmp, rng) + stainnet(tmp, rng) + resnet50_trunc(tmp, rng) + vit_b_16(tmp, rng) + vit_gated(tmp, rng)
    print(f'torch {torch.__version__}, torchvision {torchvision.__version__}')
    print('| comparison | max abs error | max abs reference value |')
    print('|---|---|---|')
    for name, err, scale in rows:
        print(f'| {name} | {err:.3g} | {scale:.3g} |')
    # 1e-4 relative to the output's scale (absolute below scale 1).
    eff_ok = all(err <= 1e-4 * max(scale, 1.0) for name, err, scale in rows if not name.startswith('StainNet'))
    st_ok = all(err <= 0.5 for name, err, _ in rows if name.startswith('StainNet public'))
    print('PASS' if eff_ok and st_ok else 'FAIL')
    sys.exit(0 if eff_ok and st_ok else 1)


if __name__ == '__main__':
    main()
