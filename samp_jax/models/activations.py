"""The activations an HF checkpoint may name, and the epilogue activation samp-jax runs for each.

A GEMM site applies its activation in its fused epilogue, so every name here maps to one of
`pallas_kernels.numerics.ACTIVATIONS`, which the XLA reference and every kernel implement.
"""

# HF activation names (transformers' ACT2FN) and the epilogue activation each one means
# (`pallas_kernels.numerics.ACTIVATION_FUNCTIONS`). gelu_new, gelu_fast and gelu_accurate are
# three spellings of the tanh approximation; swish is SiLU.
SUPPORTED_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_accurate": "gelu_tanh",
    "quick_gelu": "quick_gelu",
    "silu": "silu",
    "swish": "silu",
    "relu": "relu",
}

# The activations of a classification head (ModernBERT's `classifier_activation`, DeBERTa's
# `pooler_hidden_act`): the FFN's, and tanh (BERT's pooler); and the HF name each one is
# exported as.
HEAD_ACTIVATIONS = SUPPORTED_ACTIVATIONS | {"tanh": "tanh"}
HF_HEAD_ACTIVATION = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "quick_gelu": "quick_gelu",
                      "silu": "silu", "relu": "relu", "tanh": "tanh"}
