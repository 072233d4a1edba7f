"""Every option vocabulary and default of the CLI and the config dataclasses, in one place.

Imports nothing heavy (no torch), so ``gloss --help`` can list the choices. ``graphs/`` never imports
``pipeline`` and keeps its own defaults; ``tests/pipeline/test_options.py`` checks the two sides agree.
"""

from __future__ import annotations

# --- methods and losses -------------------------------------------------------------------------------
METHODS = ("finetune", "textgcn", "bertgcn", "tfidf", "frozen")
DEFAULT_METHOD = "finetune"
# The name a method's runs carry in manifests, metrics and `gloss compare` tables (fine-tuning: its --loss).
REPORTED_METHODS = {"textgcn": "textgcn", "bertgcn": "bertgcn", "tfidf": "tfidf-lr", "frozen": "frozen-lr"}
METHOD_HELP = ("Fine-tune the encoder with --loss, or train a baseline: textgcn, bertgcn, tfidf (TF-IDF + logistic "
               "regression, tfidf-lr) or frozen (the pre-trained encoder's embeddings + logistic regression, "
               "frozen-lr).")
LOSSES = ("ce", "gloss", "gloss+ce", "scl+ce", "lcl+ce", "triplet", "cosine")
DEFAULT_LOSS = "gloss+ce"
G_LOSSES = ("gloss", "gloss+ce")  # the losses that build a G-Loss batch graph (and use --sigma)

# --- G-Loss --------------------------------------------------------------------------------------------
GRAPH_MODES = ("dense", "knn", "bank")
UNLABELED_SPLITS = ("test", "val+test")  # --unlabeled: these prepared splits' texts (else a file)
DEFAULT_GRAPH_MODE = "dense"
LOSS_FORMS = ("nll", "released")  # of --variant gloss only
DEFAULT_LOSS_FORM = "nll"
VARIANTS = ("gloss", "released")  # gloss's G-Loss, or the released code's computation (dense graph only)
DEFAULT_VARIANT = "gloss"
GAMMA = 0.6  # share of batch nodes whose labels stay visible
LAMBDA = 0.8  # weight of the graph/contrastive part
K = 10  # neighbours: G-Loss kNN batch graphs, the corpus graph, evaluate's propagation, inspect
BANK_INDEXES = ("flat", "ivf")  # --graph bank's search: exact, or a FAISS IVF index (graphs.memory_bank agrees)
DEFAULT_BANK_INDEX = "flat"
NPROBE = 8  # inverted lists an ivf bank search visits (graphs.memory_bank agrees)

# Sigma. The corpus heuristics are computed once by `gloss embed` on the pre-trained train embeddings; the
# batch heuristics are recomputed by G-Loss on every batch's (L2-normalised) embeddings.
CORPUS_SIGMA_HEURISTICS = ("sqrt", "dicm")
BATCH_SIGMA_HEURISTICS = ("batch-sqrt", "batch-dicm")
SIGMA_HEURISTICS = CORPUS_SIGMA_HEURISTICS + BATCH_SIGMA_HEURISTICS
DEFAULT_SIGMA = "sqrt"
# The library losses' default (GLoss, GLossST): the per-batch form of DEFAULT_SIGMA, as a loss sees no corpus.
LIBRARY_SIGMA = "batch-sqrt"

# Class weights of CE, G-Loss and SupCon: none, or scikit-learn's "balanced" (n / (C * n_c)) computed once on
# the whole training split (as the released code does).
CLASS_WEIGHTS = ("none", "balanced")
DEFAULT_CLASS_WEIGHTS = "none"
MIN_USEFUL_SIGMA = 0.01  # a corpus sigma below it falls back to the sqrt heuristic (graphs.sigma agrees)

# --- comparison losses ---------------------------------------------------------------------------------
TEMPERATURE = 0.1  # SupCon (and LCL's tau unless LOSS_DEFAULTS says otherwise)
MARGIN = 0.5  # batch-all triplet
# LCL (lcl+ce): the weighting network g whose softmax weighs the negatives. "separate": a second copy of the
# encoder with its own linear head, trained jointly (the paper; twice the encoder cost); "head": the main
# head's logits (no second encoder; a cheaper variant of gloss's).
LCL_WEIGHTINGS = ("separate", "head")
DEFAULT_LCL_WEIGHTING = "separate"
LCL_TEMPERATURE = 0.3  # the official LCL code's (graphs.losses.LabelAwareContrastiveLoss agrees)
LCL_LAMBDA = 0.5  # the official code's lambda_loss 0.5 on CE is gloss's 0.5 on the contrastive part

# Options whose default depends on --loss: None on the command line / in the config dataclass means "unset",
# resolved by loss_default() (these first, else PER_LOSS_OPTIONS). Shown by --help and in the train manifest.
PER_LOSS_OPTIONS: dict[str, float] = {"lam": LAMBDA, "temperature": TEMPERATURE}
LOSS_DEFAULTS: dict[str, dict[str, float]] = {
    "lcl+ce": {"lam": LCL_LAMBDA, "temperature": LCL_TEMPERATURE},
}


def loss_default(loss: str, name: str) -> float:
    """The default of option ``name`` (``"lam"``, ``"temperature"``) for ``loss``."""
    return LOSS_DEFAULTS.get(loss, {}).get(name, PER_LOSS_OPTIONS[name])


def loss_default_text(name: str) -> str:
    """``--help``'s default of a per-loss option: ``0.8; lcl+ce: 0.5``."""
    special = "; ".join(f"{loss}: {values[name]}" for loss, values in LOSS_DEFAULTS.items() if name in values)
    return f"{PER_LOSS_OPTIONS[name]}" + (f"; {special}" if special else "")


# --- encoder -------------------------------------------------------------------------------------------
DEFAULT_MODEL = "all-MiniLM-L6-v2"
POOLINGS = ("mean", "cls")
DEFAULT_POOLING = "mean"
MAX_LENGTH = 128
DEVICE = "auto"

# --- the fine-tuning loop ------------------------------------------------------------------------------
EPOCHS = 3
BATCH_SIZE = 32
EVAL_BATCH_SIZE = 64
LR = 2e-5
HEAD_LR = 1e-3
OPTIMIZERS = ("adamw", "adam")
DEFAULT_OPTIMIZER = "adamw"
WEIGHT_DECAY = 0.01
SCHEDULES = ("linear", "cosine", "constant", "multistep")
DEFAULT_SCHEDULE = "linear"
WARMUP_RATIO = 0.1  # of linear and cosine
MILESTONES = "30"  # multistep: the learning rates are multiplied by MULTISTEP_GAMMA after each of these epochs
MULTISTEP_GAMMA = 0.1
GRAD_CLIP = 1.0
PATIENCE = 2
SEED = 0

# --- TextGCN / BertGCN ---------------------------------------------------------------------------------
GCN_EPOCHS = 200
GCN_LR = 0.02
GCN_HIDDEN = 200
GCN_DROPOUT = 0.5
GCN_EARLY_STOPPING = 10
GCN_WINDOW = 20
PAIR_COUNTS = ("windows", "positions")
TEXTGCN_SELECTS = ("val_loss", "val_acc")  # the epoch whose test predictions are reported
TEXTGCN_SELECT = "val_loss"
TEXTGCN_MODELS = ("sparse", "pyg")  # precomputed sparse matmul or PyG GCNConv
TEXTGCN_MODEL = "sparse"
DEFAULT_PAIR_COUNT = "windows"
BERTGCN_M = 0.7
BERTGCN_LR = 1e-3
BERTGCN_ENCODER_LR = 1e-5
BERTGCN_ACTIVATIONS = ("relu", "elu")  # between the GCN layers; the original BertGCN uses ELU
BERTGCN_ACTIVATION = "relu"
BERTGCN_SCHEDULES = ("constant", "multistep")  # the original: x0.1 after epoch 30 (MultiStepLR)
BERTGCN_SCHEDULE = "constant"
BERTGCN_MILESTONES = (30,)  # of BERTGCN_SCHEDULES "multistep"
# --method tfidf|frozen: logistic regression whose C is chosen on val macro-F1 (ties: the smaller C).
LR_C_GRID = "0.01,0.1,1,10,100,1000,10000"
LR_MAX_ITER = 1000

# --- prepare / run -------------------------------------------------------------------------------------------
VAL_FRACTION = 0.1
DEFAULT_DATASET = "R8"  # of `gloss run`

# --- kNN search (graph, evaluate, inspect) -------------------------------------------------------------
METRICS = ("cosine", "l2")
DEFAULT_METRIC = "cosine"
BACKENDS = ("auto", "faiss", "torch")
DEFAULT_BACKEND = "auto"

# --- evaluate ------------------------------------------------------------------------------------------
TSNE_MAX = 2000
PROBES = ("sklearn", "reference", "both")  # scikit-learn logistic regression, the released code's probe, or both
DEFAULT_PROBE = "sklearn"
# gloss evaluate / predict: what predicts the labels (the head, or the kNN graph of the embeddings)
PREDICTORS = ("head", "knn", "lpa", "mix")
DEFAULT_PREDICTOR = "head"
REFERENCE_PROBE_LR = 1e-4  # the released code's standalone probe: full-batch Adam on frozen embeddings,
REFERENCE_PROBE_EPOCHS = 50  # at most this many epochs,
REFERENCE_PROBE_PATIENCE = 10  # stopping after this many epochs without a better val macro-F1

# --- inspect -------------------------------------------------------------------------------------------
INSPECT_SOURCES = ("pretrained", "trained")
DEFAULT_INSPECT_SOURCE = "pretrained"
INSPECT_BATCHES = 5
HOLDOUT = 0.2
LAYOUT_NODES = 200
EXPORT_FORMATS = ("csv", "npz", "graphml")
DEFAULT_EXPORT = "csv,graphml"
DISTANCE_SAMPLE = 2000  # rows of the pairwise-distance histogram
SILHOUETTE_SAMPLE = 2000  # rows scored by the silhouette

# --- compare -------------------------------------------------------------------------------------------
DEFAULT_PAIR = "gloss+ce:ce"
COMPARE_OUT = "runs/compare"

# --- presets -------------------------------------------------------------------------------------------
# A preset sets option defaults of `gloss train` / `gloss run` (and is recorded in the train manifest).
# Precedence: flags > --config file > preset > the defaults above. Keys are option names (underscores).
PRESETS: dict[str, dict[str, object]] = {
    # The released G-Loss code ("Combined with CE"): Adam(lr 1e-5) over encoder and head, no weight decay,
    # MultiStepLR(milestones=[30], gamma=0.1) stepped per epoch, clip_grad_norm 1.0, batch 128, length 128,
    # balanced class weights (whole training set) in CE and G-Loss, CLS pooling, a second encoder forward of
    # the batch for the G-Loss term, 200 epochs with patience 10 on val macro-F1, shuffled (not
    # length-bucketed) batches, its G-Loss computation.
    "reference": {
        "variant": "released",
        "class_weights": "balanced",
        "pooling": "cls",
        "optimizer": "adam",
        "lr": 1e-5,
        "head_lr": 1e-5,
        "weight_decay": 0.0,
        "schedule": "multistep",
        "milestones": "30",
        "warmup_ratio": 0.0,
        "grad_clip": 1.0,
        "batch_size": 128,
        "max_length": 128,
        "second_forward": True,
        "epochs": 200,
        "patience": 10,
        "bucket": False,
        "probe": "both",
    },
}


def choice_error(option: str, value: object, choices: tuple[str, ...]) -> str:
    """The one-line message for a value outside a vocabulary: ``--loss foo: expected one of ce, gloss``."""
    return f"{option} {value}: expected one of {', '.join(choices)}"


def sigma_error(sigma: float | str) -> str | None:
    """The one-line message for a ``--sigma`` that is neither a heuristic's name nor a positive number, else
    ``None`` (checked by the command line before anything heavy is imported, and by the train stage)."""
    if isinstance(sigma, str):
        return None if sigma in SIGMA_HEURISTICS else choice_error("--sigma", sigma, SIGMA_HEURISTICS) + \
            ", or a positive number"
    return None if sigma > 0 else f"--sigma {sigma}: must be positive"


# --- reading user files (prepare, run, predict) --------------------------------------------------------
ENCODING = "auto"  # UTF-8, else the encoding charset-normalizer detects (logged); or any Python codec name
ENCODING_THRESHOLD = 0.2  # charset-normalizer's default: the most "mess" a detected decoding may show


# --- the shared cache (pipeline/cache.py, `gloss cache`) -----------------------------------------------
CACHE_EMBEDDINGS = "embeddings"  # one split's pre-trained embeddings (`gloss embed`)
CACHE_ENCODER_HASH = "encoder-hash"  # the sha256 of a model folder's files, by their sizes and times
CACHE_FROZEN_LAYERS = "frozen-layers"  # per-token states of an encoder's frozen lower layers, per split (fp16)
CACHE_KINDS = (CACHE_EMBEDDINGS, CACHE_ENCODER_HASH, CACHE_FROZEN_LAYERS)


# --- tune (`gloss tune`, pipeline/tuning/) -------------------------------------------------------------
# Tuned parameters by option name -> (config section, field); the losses each applies to (None: every loss).
# Listing lcl+ce is harmless where that loss is absent: spaces are validated against LOSSES.
TUNE_PARAM_FIELDS: dict[str, tuple[str, str]] = {
    "lr": ("loop", "lr"),
    "head-lr": ("loop", "head_lr"),
    "sigma": ("objective", "sigma"),
    "lambda": ("objective", "lam"),
    "gamma": ("objective", "gamma"),
    "temperature": ("objective", "temperature"),
}
TUNE_PARAMS = tuple(TUNE_PARAM_FIELDS)
# The learning rate the shared grid searches (phase 1): --lr, or --head-lr at --train-layers 0 (the adapter and
# head learn at --head-lr). "lr" is never a parameter of a space: every loss is offered the same values.
TUNE_GRID_PARAM = "lr"
TUNE_GRID_PARAM_ADAPTER = "head-lr"
SPACE_PARAMS = tuple(name for name in TUNE_PARAMS if name != TUNE_GRID_PARAM)
TUNE_PARAM_LOSSES: dict[str, tuple[str, ...] | None] = {
    "lr": None,
    "head-lr": None,
    "sigma": G_LOSSES,
    "gamma": G_LOSSES,
    "lambda": ("gloss+ce", "scl+ce", "lcl+ce"),
    "temperature": ("scl+ce", "lcl+ce"),
}
# Open/closed bounds a range must stay within: (lowest, highest, low exclusive, high exclusive).
TUNE_PARAM_LIMITS: dict[str, tuple[float, float | None, bool, bool]] = {
    "lr": (0.0, None, True, False),
    "head-lr": (0.0, None, True, False),
    "sigma": (0.0, None, True, False),
    "lambda": (0.0, 1.0, False, False),
    "gamma": (0.0, 1.0, True, True),
    "temperature": (0.0, None, True, False),
}
TUNE_LR_GRID = "1e-5,3e-5,1e-4,3e-4"  # phase 1: half-decades around the paper's 2e-5, for every loss
TUNE_HEAD_LR_GRID = "3e-4,1e-3,3e-3,1e-2"  # phase 1 at --train-layers 0 (around the default --head-lr 1e-3)
TUNE_TRIALS = 8  # phase 2: trials of each loss's own parameters at the best grid value (the same N for every loss)
TUNE_SEED = 0  # of the scrambled Sobol sequence (and the random draws of conditional parameters)
TUNE_PRUNER_STARTUP = 5  # median pruner: completed trials before it prunes (optuna's default)
TUNE_PRUNER_WARMUP = 0  # median pruner: epochs of a trial before it may be pruned (never at its last epoch)
TUNE_HEARTBEAT = 30  # seconds; a running trial silent for twice this is taken as killed and retried
TUNE_MAX_RETRIES = 2  # of one killed or interrupted trial
# Schedules whose learning rate at an epoch does not depend on --epochs, so a trial of E epochs is exactly the
# first E epochs of a final run (linear and cosine decay to zero at --epochs).
CAP_FREE_SCHEDULES = ("constant", "multistep")

# --- fast fine-tuning (issue 14): partial fine-tuning on cached frozen layers, mixed precision -----------
# --train-layers: "all" (full fine-tuning), N (freeze the embeddings and all but the top N transformer layers;
# the frozen part's per-token outputs are cached once), 0 (a Dense projection on frozen pooled embeddings),
# or "auto": full fine-tuning on CUDA, TRAIN_LAYERS_CPU on a CPU (chosen from results/bench_train/).
TRAIN_LAYERS_AUTO = "auto"
TRAIN_LAYERS_ALL = "all"
TRAIN_LAYERS = TRAIN_LAYERS_AUTO
TRAIN_LAYERS_CPU = "0"  # the affordable CPU default: R8 x 3 epochs of `make demo` in minutes on 2 cores
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # auto: bf16 on CUDA where supported, else fp16; fp32 on a CPU
DEFAULT_PRECISION = "auto"
FROZEN_IN_MEMORY_MB = 1024  # cached frozen-layer states up to this size are read into memory, larger memory-mapped
