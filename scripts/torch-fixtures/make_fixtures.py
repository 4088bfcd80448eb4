#!/usr/bin/python3
"""PyTorch fixtures for the tiny MAE and DMAE: test/fixtures/torch/{mae,dmae}.json.

Reads test/fixtures/torch/inputs.json (scripts/torch-fixtures/export-inputs.ts), rebuilds both
models in float64 PyTorch as the method's reference code builds them (MAE's models_mae.py with
timm's Block; DMAE's teacher truncated at block kT, projection heads, F.normalize, L1/MSE), and
writes the loss, the pixel and distillation losses, every parameter gradient (timm names) and
the losses of `steps` AdamW steps. Self-contained: plain torch (Debian's python3-torch 1.13 will
do), no timm. Run from the repository root:

    /usr/bin/python3 scripts/torch-fixtures/make_fixtures.py

AdamW: torch.optim.AdamW(betas, eps, weight_decay) with two parameter groups, the decay group
being the tensors inputs.json lists (decayRanges' rule: matrices only; no decay on biases,
LayerNorm parameters, cls/mask tokens); the fixed sin-cos tables are not optimised
(requires_grad False). Fixed lr, no schedule, no gradient clipping; step t (0-based) uses the
masking ids maskings[t] on the same images; losses are recorded before each update.
"""
import json
import math
import os
import platform
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
FIXDIR = os.path.join(ROOT, 'test', 'fixtures', 'torch')
COMMAND = '/usr/bin/python3 scripts/torch-fixtures/make_fixtures.py'

torch.set_default_dtype(torch.float64)
torch.use_deterministic_algorithms(True)


# ------------------------------------------------------------------------------------------------
# timm's ViT pieces (timm 0.3.2, as MAE uses them): Attention with fused qkv, Mlp, pre-norm Block.
# ------------------------------------------------------------------------------------------------
class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact erf GELU (approximate='none')
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [N, L, D]


# ------------------------------------------------------------------------------------------------
# MAE (models_mae.py's MaskedAutoencoderViT), masking driven by given ids instead of noise.
# ------------------------------------------------------------------------------------------------
class MAE(nn.Module):
    def __init__(self, c, encoder_only=False):
        super().__init__()
        D, Dd, L = c['embedDim'], c['decoderEmbedDim'], (c['imgSize'] // c['patchSize']) ** 2
        self.c = c
        self.patch_embed = PatchEmbed(c['patchSize'], c['inChans'], D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, L + 1, D), requires_grad=False)  # fixed sin-cos
        self.blocks = nn.ModuleList([Block(D, c['numHeads'], c['mlpRatio']) for _ in range(c['depth'])])
        self.norm = nn.LayerNorm(D, eps=1e-6)
        if encoder_only:
            return
        self.decoder_embed = nn.Linear(D, Dd, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, L + 1, Dd), requires_grad=False)
        self.decoder_blocks = nn.ModuleList([Block(Dd, c['decoderNumHeads'], c['mlpRatio']) for _ in range(c['decoderDepth'])])
        self.decoder_norm = nn.LayerNorm(Dd, eps=1e-6)
        self.decoder_pred = nn.Linear(Dd, c['patchSize'] ** 2 * c['inChans'], bias=True)

    def patchify(self, imgs):
        p, C = self.c['patchSize'], self.c['inChans']
        h = w = imgs.shape[2] // p
        x = imgs.reshape(imgs.shape[0], C, h, p, w, p)
        x = torch.einsum('nchpwq->nhwpqc', x)
        return x.reshape(imgs.shape[0], h * w, p * p * C)

    @staticmethod
    def random_masking(x, ids_keep, ids_restore):
        """MAE's random_masking after the argsort: keep ids_keep, mask from ids_restore."""
        N, L, D = x.shape
        len_keep = ids_keep.shape[1]
        x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, D))
        mask = torch.ones([N, L], dtype=x.dtype)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        return x_masked, mask

    def forward_encoder(self, imgs, ids_keep, ids_restore, feature_blocks=(), stop_after_block=None):
        x = self.patch_embed(imgs)
        x = x + self.pos_embed[:, 1:, :]
        x, mask = self.random_masking(x, ids_keep, ids_restore)
        cls_token = self.cls_token + self.pos_embed[:, :1, :]
        x = torch.cat((cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        last = len(self.blocks) - 1 if stop_after_block is None else stop_after_block
        feats = {}
        for i in range(last + 1):
            x = self.blocks[i](x)
            if i in feature_blocks:
                feats[i] = x  # raw block output, before any norm, cls included
        latent = self.norm(x) if last == len(self.blocks) - 1 else None
        return latent, mask, feats

    def forward_decoder(self, x, ids_restore):
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        x = self.decoder_pred(x)
        return x[:, 1:, :]

    def forward_loss(self, imgs, pred, mask):
        target = self.patchify(imgs)
        if self.c['normPixLoss']:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)  # unbiased
            target = (target - mean) / (var + 1.e-6) ** .5
        loss = (pred - target) ** 2
        loss = loss.mean(dim=-1)
        return (loss * mask).sum() / mask.sum()


class DMAE(nn.Module):
    """DMAE's student: the MAE plus one projection Linear (student width → teacher width) per pair."""

    def __init__(self, c, teacher_dim, pairs):
        super().__init__()
        self.mae = MAE(c)
        self.aligned_feature_projection_heads = nn.ModuleList([nn.Linear(c['embedDim'], teacher_dim) for _ in pairs])

    def named_timm_parameters(self):
        for n, p in self.named_parameters():
            yield (n[len('mae.'):] if n.startswith('mae.') else n), p


def dmae_forward(student, teacher, d, imgs, ids_keep, ids_restore):
    """loss = L_pix + α·Σ_k L_dist(T_kT, head_k(S_kS)); the teacher sees the same visible ids, blocks 0..kT."""
    kT = max(p['teacherBlock'] for p in d['pairs'])
    with torch.no_grad():
        _, _, tfeats = teacher.forward_encoder(imgs, ids_keep, ids_restore, feature_blocks=[p['teacherBlock'] for p in d['pairs']], stop_after_block=kT)
    m = student.mae
    latent, mask, sfeats = m.forward_encoder(imgs, ids_keep, ids_restore, feature_blocks=[p['studentBlock'] for p in d['pairs']])
    pred = m.forward_decoder(latent, ids_restore)
    pix = m.forward_loss(imgs, pred, mask)
    dist = torch.zeros(())
    for k, p in enumerate(d['pairs']):
        s = F.normalize(student.aligned_feature_projection_heads[k](sfeats[p['studentBlock']]), dim=-1)
        t = F.normalize(tfeats[p['teacherBlock']], dim=-1)
        dist = dist + (F.l1_loss(s, t) if d['kind'] == 'l1' else F.mse_loss(s, t))  # mean over tokens (cls incl.) and channels
    return pix + d['alpha'] * dist, pix, dist, mask


# ------------------------------------------------------------------------------------------------
# Loading, checks, AdamW, output
# ------------------------------------------------------------------------------------------------
def load(named_params, tensors, allow_extra=False):
    """Copies inputs.json tensors into the module by timm name; shapes must agree exactly."""
    named = dict(named_params)
    missing = sorted(set(named) - set(tensors))
    extra = sorted(set(tensors) - set(named))
    if missing or (extra and not allow_extra):
        sys.exit(f'parameter names differ: missing {missing}, extra {extra}')
    with torch.no_grad():
        for n, p in named.items():
            t = tensors[n]
            if list(p.shape) != t['shape']:
                sys.exit(f'{n}: torch shape {list(p.shape)} vs table {t["shape"]}')
            p.copy_(torch.tensor(t['data'], dtype=torch.float64).reshape(p.shape))


def mae_sincos(D, grid):
    """MAE's util/pos_embed.py get_2d_sincos_pos_embed(D, grid, cls_token=True), float64 numpy."""
    def one_d(dim, pos):
        omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.)
        omega = 1. / 10000 ** omega
        out = np.einsum('m,d->md', pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    gh = np.arange(grid, dtype=np.float32)
    gw = np.arange(grid, dtype=np.float32)
    g = np.stack(np.meshgrid(gw, gh), axis=0).reshape([2, 1, grid, grid])
    emb = np.concatenate([one_d(D // 2, g[0]), one_d(D // 2, g[1])], axis=1)
    return np.concatenate([np.zeros([1, D]), emb], axis=0)


def masking_tensors(mk, N, L, V):
    ids_keep = torch.tensor(mk['idsKeep'], dtype=torch.long).reshape(N, V)
    ids_restore = torch.tensor(mk['idsRestore'], dtype=torch.long).reshape(N, L)
    # ids_restore = argsort(ids_shuffle) and ids_keep = ids_shuffle[:, :V]: consistent?
    ids_shuffle = torch.argsort(ids_restore, dim=1)
    assert torch.equal(ids_shuffle[:, :V], ids_keep), 'ids_keep is not ids_shuffle[:, :len_keep]'
    return ids_keep, ids_restore, torch.tensor(mk['mask'], dtype=torch.float64).reshape(N, L)


def adamw(named, o):
    decay = set(o['decay'])
    groups = [
        {'params': [p for n, p in named if p.requires_grad and n in decay], 'weight_decay': o['weightDecay']},
        {'params': [p for n, p in named if p.requires_grad and n not in decay], 'weight_decay': 0.0},
    ]
    return torch.optim.AdamW(groups, lr=o['lr'], betas=tuple(o['betas']), eps=o['eps'], foreach=False)


def flat(t):
    return t.detach().reshape(-1).tolist()


def header(case):
    return {
        'about': f'PyTorch float64 fixture of the tiny {case} (scripts/torch-fixtures/make_fixtures.py). Gradients and '
                 'parameters by timm name, flattened row-major in the table shape; the fixed sin-cos tables are not '
                 'trained and have no gradient here. Step losses are taken before each AdamW update.',
        'torch': torch.__version__, 'python': platform.python_version(), 'numpy': np.__version__,
        'command': COMMAND, 'dtype': 'float64',
        'adamw': 'torch.optim.AdamW(foreach=False), fixed lr, no schedule, no clipping; decay group = inputs.optimizer.decay',
    }


def pos_check(named, cfg):
    grid = cfg['imgSize'] // cfg['patchSize']
    out = {}
    for n in ('pos_embed', 'decoder_pos_embed'):
        if n in named:
            ref = mae_sincos(named[n].shape[-1], grid)
            out[n] = float(np.abs(named[n].detach().numpy().reshape(ref.shape) - ref).max())
    return out


def make_mae(inp):
    c, N, V, L = inp['config'], inp['N'], inp['V'], inp['L']
    model = MAE(c)
    load(model.named_parameters(), inp['params'])
    named = list(model.named_parameters())
    imgs = torch.tensor(inp['imgs']).reshape(N, c['inChans'], c['imgSize'], c['imgSize'])
    opt = adamw(named, inp['optimizer'])
    out = header('MAE')
    out['posEmbedMaxAbsDiffVsMaeNumpy'] = pos_check(dict(named), c)
    losses = []
    for t, mk in enumerate(inp['maskings']):
        ids_keep, ids_restore, mask_in = masking_tensors(mk, N, L, V)
        opt.zero_grad(set_to_none=True)
        latent, mask, _ = model.forward_encoder(imgs, ids_keep, ids_restore)
        assert torch.equal(mask, mask_in), 'mask from ids_restore differs from the exported mask'
        pred = model.forward_decoder(latent, ids_restore)
        loss = model.forward_loss(imgs, pred, mask)
        loss.backward()
        if t == 0:
            out['loss'] = loss.item()
            out['pred'] = flat(pred)
            out['grads'] = {n: flat(p.grad) for n, p in named if p.requires_grad}
        losses.append(loss.item())
        opt.step()
    out['stepLosses'] = losses
    out['paramsAfterSteps'] = {n: flat(p) for n, p in named if p.requires_grad}
    return out


def make_dmae(inp):
    c, tc, d, N, V, L = inp['config'], inp['teacherConfig'], inp['distill'], inp['N'], inp['V'], inp['L']
    student = DMAE(c, tc['embedDim'], d['pairs'])
    teacher = MAE(tc, encoder_only=True)
    load(student.named_timm_parameters(), inp['student'])
    load(teacher.named_parameters(), inp['teacher'], allow_extra=True)  # a whole MAE checkpoint; the decoder is unused
    for p in teacher.parameters():
        p.requires_grad_(False)
    named = list(student.named_timm_parameters())
    imgs = torch.tensor(inp['imgs']).reshape(N, c['inChans'], c['imgSize'], c['imgSize'])
    opt = adamw(named, inp['optimizer'])
    out = header('DMAE')
    out['posEmbedMaxAbsDiffVsMaeNumpy'] = pos_check(dict(named), c)
    losses, pix_losses, dist_losses = [], [], []
    for t, mk in enumerate(inp['maskings']):
        ids_keep, ids_restore, mask_in = masking_tensors(mk, N, L, V)
        opt.zero_grad(set_to_none=True)
        loss, pix, dist, mask = dmae_forward(student, teacher, d, imgs, ids_keep, ids_restore)
        assert torch.equal(mask, mask_in), 'mask from ids_restore differs from the exported mask'
        loss.backward()
        if t == 0:
            out['loss'], out['pixLoss'], out['distillLoss'] = loss.item(), pix.item(), dist.item()
            out['grads'] = {n: flat(p.grad) for n, p in named if p.requires_grad}
        losses.append(loss.item())
        pix_losses.append(pix.item())
        dist_losses.append(dist.item())
        opt.step()
    out['stepLosses'], out['stepPixLosses'], out['stepDistillLosses'] = losses, pix_losses, dist_losses
    out['paramsAfterSteps'] = {n: flat(p) for n, p in named if p.requires_grad}
    return out


def main():
    with open(os.path.join(FIXDIR, 'inputs.json')) as f:
        inp = json.load(f)
    for name, fn, key in (('mae', make_mae, 'mae'), ('dmae', make_dmae, 'dmae')):
        out = fn(inp[key])
        path = os.path.join(FIXDIR, f'{name}.json')
        with open(path, 'w') as f:
            json.dump(out, f)
            f.write('\n')
        print(f'wrote {path}: loss {out["loss"]!r}, step losses {out["stepLosses"]}')


if __name__ == '__main__':
    main()
