"""Tiny ONNX files that emit known tensors, to test decoders exactly (no pretrained weights needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def constant_model(path: Path, output: np.ndarray | dict[str, np.ndarray],
                   input_shape: tuple[int | str, ...] = (1, 3, 640, 640), input_name: str = "images",
                   output_name: str = "output0", metadata: dict[str, str] | None = None) -> Path:
    """A model whose outputs are the given arrays (plus 0 x the mean of its input, so it is read).

    ``output`` is one array (named ``output_name``) or a ``{name: array}`` mapping, kept in order.
    """
    outputs = output if isinstance(output, dict) else {output_name: output}
    nodes = [helper.make_node("ReduceMean", [input_name], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    outs = []
    for i, (name, value) in enumerate(outputs.items()):
        inits.append(numpy_helper.from_array(value.astype(np.float32), f"known{i}"))
        nodes.append(helper.make_node("Add", [f"known{i}", "nothing"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(
        nodes, "known_output",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))], outs,
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def dynamic_batch_model(path: Path, known: np.ndarray, per_image_gain: np.ndarray,
                        size: int = 640) -> Path:
    """Input ``[batch, 3, size, size]``; output ``known + mean(image) * per_image_gain`` per image.

    Each image's output depends on its own pixels, so a batched run that mixed images up shows.
    """
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Reshape", ["mean", "col"], ["mean3"]),
        helper.make_node("Mul", ["mean3", "gain"], ["delta"]),
        helper.make_node("Add", ["known", "delta"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "dynamic_batch",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", *known.shape[1:]])],
        initializer=[numpy_helper.from_array(known.astype(np.float32), "known"),
                     numpy_helper.from_array(per_image_gain.astype(np.float32), "gain"),
                     numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "col")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
