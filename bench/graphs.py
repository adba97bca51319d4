"""Graph rewrites measured by the benchmarks (each exact: the same numbers, a cheaper way to get them).

``softmax_last_axis``: the exported annealed-mean decoding is ``Softmax(axis=1)`` over the bins of an NCHW tensor
followed by ``Einsum("nqhw,qc->nchw")``. ONNX Runtime's CPU Softmax is written for the last axis; on any other
axis it transposes internally and runs several times slower, and the Einsum is a generic kernel. The same
function as ``Transpose → Softmax(axis=-1) → MatMul → Transpose`` is what train/model.py would export from

    logits = out.permute(0, 2, 3, 1) / self.args.annealed_t  # (N, h, w, Q)
    probs = F.softmax(logits, dim=-1)
    return (probs @ self.bin_centres).permute(0, 3, 1, 2)  # (N, 2, h, w)
"""

from __future__ import annotations

import onnx
from onnx import helper


def _attr(node: onnx.NodeProto, name: str) -> object:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def softmax_last_axis(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    """The model with its bin softmax on the last axis, and whether anything changed (False: no such pattern)."""
    nodes = list(model.graph.node)
    consumers = {name: [n for n in nodes if name in n.input] for n in nodes for name in n.output}
    for softmax in (n for n in nodes if n.op_type == "Softmax" and _attr(n, "axis") == 1):
        users = consumers.get(softmax.output[0], [])
        if len(users) != 1 or users[0].op_type != "Einsum":
            continue
        einsum = users[0]
        equation = _attr(einsum, "equation")
        if isinstance(equation, bytes):
            equation = equation.decode()
        if str(equation).replace(" ", "") != "nqhw,qc->nchw" or einsum.input[0] != softmax.output[0]:
            continue
        prefix = softmax.name or "softmax"
        logits, probs, ab = (f"{prefix}/{s}" for s in ("logits_nhwq", "probs_nhwq", "ab_nhwc"))
        replacement = [
            helper.make_node("Transpose", [softmax.input[0]], [logits], f"{prefix}/to_nhwq", perm=[0, 2, 3, 1]),
            helper.make_node("Softmax", [logits], [probs], f"{prefix}/softmax_last", axis=-1),
            helper.make_node("MatMul", [probs, einsum.input[1]], [ab], f"{prefix}/bins"),
            helper.make_node("Transpose", [ab], [einsum.output[0]], f"{prefix}/to_nchw", perm=[0, 3, 1, 2]),
        ]
        rewritten = []
        for node in nodes:
            if node is softmax:
                rewritten += replacement
            elif node is not einsum:
                rewritten.append(node)
        out = onnx.ModelProto()
        out.CopyFrom(model)
        del out.graph.node[:]
        out.graph.node.extend(rewritten)
        onnx.checker.check_model(out)
        return out, True
    return model, False
