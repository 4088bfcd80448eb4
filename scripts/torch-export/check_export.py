#!/usr/bin/python3
"""PyTorch check of the studio's exports (src/io/export.ts), with Debian's python3-torch, no timm.

Reads the folder written by `npx tsx scripts/torch-export/make-files.ts <dir>` and
  1. loads mae.safetensors (full export) into a PyTorch MAE written from the reference
     (scripts/torch-fixtures/make_fixtures.py's models_mae.py twin) with load_state_dict(strict=True),
     runs the engine's batch and mask, and prints both losses;
  2. loads dmae.safetensors (student + aligned_feature_projection_heads, top-level names as in
     DMAE's models_mae_distill.py) and teacher.safetensors the same way, and prints both DMAE losses;
  3. checks that vit.safetensors has exactly the names and shapes of timm's VisionTransformer
     (num_classes=0, global_pool='token', class_token=True, qkv_bias=True) built from config.json's
     model_args, loads it with strict=True into a timm-compatible ViT, runs all patches and
     compares the tokens with the engine's.
Exits 1 on any mismatch. Usage:

    npx tsx scripts/torch-export/make-files.ts /tmp/x && /usr/bin/python3 scripts/torch-export/check_export.py /tmp/x
"""
import importlib.util
import json
import os
import struct
import sys
import types

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location('mf', os.path.join(HERE, '..', 'torch-fixtures', 'make_fixtures.py'))
mf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mf)  # float64 default dtype, deterministic algorithms

DTYPES = {'F64': '<f8', 'F32': '<f4', 'F16': '<f2', 'I64': '<i8', 'I32': '<i4', 'U8': 'u1'}


def load_safetensors(path):
    """The format: u64 header length, JSON header, packed little-endian tensors."""
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n].decode('utf-8'))
    meta = header.pop('__metadata__', {})
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        b, end = e['data_offsets']
        a = np.frombuffer(data[b:end], dtype=DTYPES[e['dtype']]).reshape(e['shape'])
        out[name] = torch.from_numpy(a.astype(np.float64))
    return out, meta


class DmaeStudent(mf.MAE):
    """DMAE's student as its reference builds it: the MAE with top-level projection heads."""

    def __init__(self, c, teacher_dim, pairs):
        super().__init__(c)
        self.aligned_feature_projection_heads = nn.ModuleList([nn.Linear(c['embedDim'], teacher_dim) for _ in pairs])


def timm_vit_keys(depth):
    """timm VisionTransformer(num_classes=0, global_pool='token', class_token=True, qkv_bias=True,
    no layer scale, no qk norm, no register tokens) state_dict keys: head/fc_norm are Identity."""
    keys = ['cls_token', 'pos_embed', 'patch_embed.proj.weight', 'patch_embed.proj.bias']
    for i in range(depth):
        for k in ('norm1', 'attn.qkv', 'attn.proj', 'norm2', 'mlp.fc1', 'mlp.fc2'):
            keys += [f'blocks.{i}.{k}.weight', f'blocks.{i}.{k}.bias']
    return keys + ['norm.weight', 'norm.bias']


def strict_load(model, sd, what):
    res = model.load_state_dict(sd, strict=True)  # raises on any missing/unexpected/shape mismatch
    print(f'{what}: load_state_dict(strict=True) ok, {len(sd)} tensors, missing {list(res.missing_keys)}, unexpected {list(res.unexpected_keys)}')


def close(a, b, rtol=1e-9):
    return abs(a - b) <= rtol * max(1.0, abs(a), abs(b))


def gpu_check(what, torch_loss, gpu_loss, adapter):
    """The WebGPU engine's float32 loss, when make-files.ts had an adapter: float32 accuracy."""
    if gpu_loss is None:
        print(f'{what} loss: no GPU-model loss in case.json (no WebGPU adapter when the files were made)')
        return True
    good = abs(torch_loss - gpu_loss) <= 1e-4 * max(1.0, abs(torch_loss))
    print(f"{what} loss: PyTorch {torch_loss!r}  engine (WebGPU model, float32, {adapter}) {gpu_loss!r}  rel diff {abs(torch_loss - gpu_loss) / abs(torch_loss):.2e}  {'OK' if good else 'MISMATCH'}")
    return good


def main(d):
    case = json.load(open(os.path.join(d, 'case.json')))
    c, tc, dist, N, V, L = case['config'], case['teacherConfig'], case['distill'], case['N'], case['V'], case['L']
    imgs = torch.tensor(case['imgs']).reshape(N, c['inChans'], c['imgSize'], c['imgSize'])
    ids_keep, ids_restore, mask_in = mf.masking_tensors(case, N, L, V)
    ok = True

    # 1. MAE
    sd, meta = load_safetensors(os.path.join(d, 'mae.safetensors'))
    print(f"mae.safetensors metadata: format={meta.get('format')}, dmae_studio config present: {'dmae_studio' in meta}")
    mae = mf.MAE(c)
    strict_load(mae, sd, 'MAE')
    with torch.no_grad():
        latent, mask, _ = mae.forward_encoder(imgs, ids_keep, ids_restore)
        assert torch.equal(mask, mask_in)
        loss = mae.forward_loss(imgs, mae.forward_decoder(latent, ids_restore), mask).item()
    good = close(loss, case['maeLoss'])
    ok &= good
    print(f"MAE loss: PyTorch {loss!r}  engine (float64 reference) {case['maeLoss']!r}  rel diff {abs(loss - case['maeLoss']) / abs(loss):.2e}  {'OK' if good else 'MISMATCH'}")
    ok &= gpu_check('MAE', loss, case.get('gpuMaeLoss'), case.get('gpu'))

    # 2. DMAE
    ssd, _ = load_safetensors(os.path.join(d, 'dmae.safetensors'))
    tsd, _ = load_safetensors(os.path.join(d, 'teacher.safetensors'))
    student = DmaeStudent(c, tc['embedDim'], dist['pairs'])
    strict_load(student, ssd, 'DMAE student')
    teacher = mf.MAE(tc)
    strict_load(teacher, tsd, 'DMAE teacher')
    with torch.no_grad():
        shim = types.SimpleNamespace(mae=student, aligned_feature_projection_heads=student.aligned_feature_projection_heads)
        dloss, pix, dl, _ = mf.dmae_forward(shim, teacher, dist, imgs, ids_keep, ids_restore)
    dloss = dloss.item()
    good = close(dloss, case['dmaeLoss'])
    ok &= good
    print(f"DMAE loss: PyTorch {dloss!r} (pix {pix.item():.6f}, dist {dl.item():.6f})  engine (float64 reference) {case['dmaeLoss']!r}  rel diff {abs(dloss - case['dmaeLoss']) / abs(dloss):.2e}  {'OK' if good else 'MISMATCH'}")
    ok &= gpu_check('DMAE', dloss, case.get('gpuDmaeLoss'), case.get('gpu'))

    # 3. timm encoder
    cfg = json.load(open(os.path.join(d, 'config.json')))
    a = cfg['model_args']
    vsd, _ = load_safetensors(os.path.join(d, 'vit.safetensors'))
    want = timm_vit_keys(a['depth'])
    same_names = list(vsd.keys()) == want
    D, p, C, g = a['embed_dim'], a['patch_size'], a['in_chans'], a['img_size'] // a['patch_size']
    hidden = int(D * a['mlp_ratio'])
    shapes = {'cls_token': [1, 1, D], 'pos_embed': [1, 1 + g * g, D], 'patch_embed.proj.weight': [D, C, p, p], 'norm.weight': [D], 'norm.bias': [D]}
    for k in want:
        if k.startswith('blocks.'):
            sub = k.split('.', 2)[2]
            shapes[k] = {'norm1.weight': [D], 'norm1.bias': [D], 'attn.qkv.weight': [3 * D, D], 'attn.qkv.bias': [3 * D], 'attn.proj.weight': [D, D],
                         'attn.proj.bias': [D], 'norm2.weight': [D], 'norm2.bias': [D], 'mlp.fc1.weight': [hidden, D], 'mlp.fc1.bias': [hidden],
                         'mlp.fc2.weight': [D, hidden], 'mlp.fc2.bias': [D]}[sub]
    shapes['patch_embed.proj.bias'] = [D]
    same_shapes = all(list(vsd[k].shape) == shapes[k] for k in want if k in vsd)
    print(f"timm ViT ({cfg['architecture']}, model_args {a}): names {'match' if same_names else 'DIFFER'} timm's, shapes {'match' if same_shapes else 'DIFFER'}")
    ok &= same_names and same_shapes
    vc = {'imgSize': a['img_size'], 'patchSize': p, 'inChans': C, 'embedDim': D, 'depth': a['depth'], 'numHeads': a['num_heads'], 'mlpRatio': a['mlp_ratio'], 'decoderEmbedDim': D}  # decoder size unused: encoder_only
    vit = mf.MAE(vc, encoder_only=True)  # timm's ViT modules and names; class token, pos_embed, pre-norm blocks, final norm
    strict_load(vit, vsd, 'timm ViT')
    with torch.no_grad():
        all_ids = torch.arange(L).repeat(N, 1)
        tokens, _, _ = vit.forward_encoder(imgs, all_ids, all_ids)
    ref = torch.tensor(case['timmTokens']).reshape(tokens.shape)
    diff = (tokens - ref).abs().max().item()
    good = diff < 1e-9
    ok &= good
    print(f"timm ViT tokens [{N}, {1 + L}, {D}] (all patches): max |PyTorch − engine| = {diff:.2e}  {'OK' if good else 'MISMATCH'}")
    print('ALL OK' if ok else 'FAILED')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, '..', '..', 'runs', 'torch-export-check')))
