"""The names a fusion table offers (methods, normalisations, stacking models), in a module that
imports nothing: `benchmarks/fuse.py --help` builds its choices from here without loading
numpy, scipy or pandas."""

NORMS = ("none", "softmax", "log_softmax", "zscore", "l2")
FIXED_METHODS = ("average", "max", "weighted", "product", "var", "var_topk")
LEARNED_METHODS = ("search", "stack")
METHODS = FIXED_METHODS + LEARNED_METHODS
# `stack`: the inner CV chooses between the structured model (S*C + C parameters) and, where
# it is small, the full [S*C x C] one; or either of them alone
STACK_MODELS = ("auto", "structured", "full")
FULL_CANDIDATE_MAX = 10_000  # S*C*C weights up to which `auto` weighs the full model (70 classes)
