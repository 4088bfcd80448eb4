#!/usr/bin/python3
"""ONNX's own checker on our exports (Debian's python3-onnx, 1.12): check_model(full_check=True)
and strict shape inference, printing the inferred output shapes. Usage:

    npm run dmae -- export <checkpoint> --format onnx --out DIR && /usr/bin/python3 scripts/torch-export/check_onnx.py DIR/*.onnx
"""
import sys

import onnx

ok = True
for path in sys.argv[1:]:
    m = onnx.load(path)
    try:
        onnx.checker.check_model(m, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        outs = [(o.name, [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim]) for o in inferred.graph.output]
        print(f'{path}: OK (ir {m.ir_version}, opset {m.opset_import[0].version}, {len(m.graph.node)} nodes), outputs {outs}')
    except Exception as e:  # noqa: BLE001 - report every file
        ok = False
        print(f'{path}: FAILED {e}')
sys.exit(0 if ok else 1)
