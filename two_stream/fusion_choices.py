"""The names a fusion table offers (methods, normalisations, stacking models), in a module that
imports nothing: `benchmarks/fuse.py --help` builds its choices from here without loading
numpy, scipy or pandas."""

NORMS = ("none", "softmax", "log_softmax", "zscore", "l2")
FIXED_METHODS = ("average", "max", "weighted", "product", "var", "var_topk")
LEARNED_METHODS = ("search", "stack")
METHODS = FIXED_METHODS + LEARNED_METHODS
STACK_MODELS = ("structured", "full")  # `stack`: S*C + C parameters, or the [S*C x C] model
