"""Documented op lists, used where running the real tool is not cheap or not possible.

Keys are the canonical op types of :mod:`edgeship.analysis.graph` (ONNX spelling). Each list is a
conservative summary of the runtime's documentation, not a promise: the preview labels results
drawn from these tables as ``"checked_with": "documented op list"``.

* ``TFLITE_CONVERTIBLE`` — ops litert-torch / the TFLite converter lower to TFLite builtins
  (directly, fused, or by decomposition). Sources: LiteRT "TensorFlow Lite and TensorFlow operator
  compatibility" and the builtin op list (``tflite/schema/schema.fbs``).
* ``TFLITE_XNNPACK`` — TFLite builtins the XNNPACK delegate takes (fp32), from
  ``tensorflow/lite/delegates/xnnpack/README.md``; used to name which canonical ops run there.
* ``COREML_ANE_FRIENDLY`` — op families the Apple Neural Engine runs (fp16), from Apple's
  "Deploying Transformers on the Apple Neural Engine" and coremltools' docs. Placement is decided
  by Core ML at load time on Apple hardware, so a share computed from it is an estimate.
"""

from __future__ import annotations

__all__ = ["TFLITE_CONVERTIBLE", "TFLITE_BUILTIN_OF", "TFLITE_XNNPACK", "TFLITE_XNNPACK_BUILTINS", "COREML_ANE_FRIENDLY", "SHAPE_ONLY"]

# ops that move no data worth counting (views, casts) and never decide a target's fate
SHAPE_ONLY = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Cast", "Shape"}

TFLITE_CONVERTIBLE = {
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Attention", "BatchNormalization", "LayerNormalization",
    "GroupNormalization", "InstanceNormalization", "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish",
    "Silu", "Tanh", "Gelu", "Softmax", "LogSoftmax", "LeakyRelu", "PRelu", "Elu", "Add", "Sub", "Mul", "Div",
    "Pow", "Sqrt", "Neg", "Abs", "Exp", "Log", "Where", "AveragePool", "MaxPool", "GlobalAveragePool",
    "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
    "Transpose", "Concat", "Slice", "Split", "Pad", "Dropout", "Gather", "Expand", "Cast", "Identity", "Resize",
    "DepthToSpace", "QuantizeLinear", "DequantizeLinear", "Erf",
}

#: ONNX op -> the TFLite builtin it becomes (checked against the installed schema's BuiltinOperator
#: by the tests; Reciprocal lowers to DIV, as litert-torch emits it)
TFLITE_BUILTIN_OF = {
    "Equal": "EQUAL", "Shape": "SHAPE", "Max": "MAXIMUM", "Min": "MINIMUM", "Greater": "GREATER", "Less": "LESS",
    "GreaterOrEqual": "GREATER_EQUAL", "LessOrEqual": "LESS_EQUAL", "Not": "LOGICAL_NOT", "And": "LOGICAL_AND",
    "Or": "LOGICAL_OR", "Floor": "FLOOR", "Ceil": "CEIL", "Round": "ROUND", "Sign": "SIGN", "Sin": "SIN", "Cos": "COS",
    "Tile": "TILE", "Range": "RANGE", "ReduceMin": "REDUCE_MIN", "ReduceProd": "REDUCE_PROD", "ArgMax": "ARG_MAX",
    "ArgMin": "ARG_MIN", "Reciprocal": "DIV", "ConstantOfShape": "FILL", "GatherND": "GATHER_ND",
    "ScatterND": "SCATTER_ND", "CumSum": "CUMSUM", "TopK": "TOPK_V2", "LSTM": "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "RNN": "UNIDIRECTIONAL_SEQUENCE_RNN", "Mod": "FLOOR_MOD",
}
TFLITE_CONVERTIBLE |= set(TFLITE_BUILTIN_OF)

TFLITE_XNNPACK_BUILTINS = {
    "ABS", "ADD", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CEIL", "CONCATENATION", "CONV_2D", "DEPTH_TO_SPACE",
    "DEPTHWISE_CONV_2D", "DEQUANTIZE", "DIV", "ELU", "EXP", "EXPAND_DIMS", "FLOOR", "FULLY_CONNECTED", "GELU",
    "HARD_SWISH", "LEAKY_RELU", "LOGISTIC", "MAX_POOL_2D", "MAXIMUM", "MEAN", "MINIMUM", "MUL", "NEG", "PAD",
    "PADV2", "PRELU", "QUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "ROUND",
    "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQRT", "SQUARE", "SQUARED_DIFFERENCE", "SQUEEZE",
    "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
}

TFLITE_XNNPACK = {
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Attention", "BatchNormalization", "Relu", "Clip", "Sigmoid",
    "HardSwish", "Tanh", "Gelu", "Softmax", "LeakyRelu", "PRelu", "Elu", "Add", "Sub", "Mul", "Div", "Sqrt", "Neg",
    "Abs", "Exp", "AveragePool", "MaxPool", "GlobalAveragePool", "ReduceMean", "ReduceSum", "Reshape", "Flatten",
    "Squeeze", "Unsqueeze", "Transpose", "Concat", "Slice", "Split", "Pad", "Dropout", "Identity", "Resize",
    "DepthToSpace", "QuantizeLinear", "DequantizeLinear",
}

COREML_ANE_FRIENDLY = {
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Attention", "BatchNormalization", "LayerNormalization", "Relu",
    "Clip", "Sigmoid", "Tanh", "Gelu", "Silu", "HardSwish", "Softmax", "Add", "Mul", "AveragePool", "MaxPool",
    "GlobalAveragePool", "ReduceMean", "Concat", "Reshape", "Flatten", "Transpose", "Pad", "Resize",
}
