"""Every option vocabulary and default of the CLI and the config dataclasses, in one place.

Imports nothing heavy (no torch), so ``gloss --help`` can list the choices. ``graphs/`` never imports
``pipeline`` and keeps its own defaults; ``tests/pipeline/test_options.py`` checks the two sides agree.
"""

from __future__ import annotations

# --- methods and losses -------------------------------------------------------------------------------
METHODS = ("finetune", "textgcn", "bertgcn")
DEFAULT_METHOD = "finetune"
LOSSES = ("ce", "gloss", "gloss+ce", "scl+ce", "triplet", "cosine")
DEFAULT_LOSS = "gloss+ce"
G_LOSSES = ("gloss", "gloss+ce")  # the losses that build a G-Loss batch graph (and use --sigma)

# --- G-Loss --------------------------------------------------------------------------------------------
GRAPH_MODES = ("dense", "knn", "bank")
DEFAULT_GRAPH_MODE = "dense"
LOSS_FORMS = ("nll", "released")
DEFAULT_LOSS_FORM = "nll"
GAMMA = 0.6  # share of batch nodes whose labels stay visible
LAMBDA = 0.8  # weight of the graph/contrastive part
K = 10  # neighbours: G-Loss kNN batch graphs, the corpus graph, evaluate's propagation, inspect

# Sigma. The corpus heuristics are computed once by `gloss embed` on the pre-trained train embeddings; the
# batch heuristics are recomputed by G-Loss on every batch's (L2-normalised) embeddings.
CORPUS_SIGMA_HEURISTICS = ("sqrt", "dicm")
BATCH_SIGMA_HEURISTICS = ("batch-sqrt", "batch-dicm")
SIGMA_HEURISTICS = CORPUS_SIGMA_HEURISTICS + BATCH_SIGMA_HEURISTICS
DEFAULT_SIGMA = "sqrt"

# --- comparison losses ---------------------------------------------------------------------------------
TEMPERATURE = 0.1  # SupCon
MARGIN = 0.5  # batch-all triplet

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
SCHEDULES = ("linear", "cosine", "constant")
DEFAULT_SCHEDULE = "linear"
WARMUP_RATIO = 0.1
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


def choice_error(option: str, value: object, choices: tuple[str, ...]) -> str:
    """The one-line message for a value outside a vocabulary: ``--loss foo: expected one of ce, gloss``."""
    return f"{option} {value}: expected one of {', '.join(choices)}"


# --- reading user files (prepare, run, predict) --------------------------------------------------------
ENCODING = "auto"  # UTF-8, else the encoding charset-normalizer detects (logged); or any Python codec name
ENCODING_THRESHOLD = 0.2  # charset-normalizer's default: the most "mess" a detected decoding may show


# --- the shared cache (pipeline/cache.py, `gloss cache`) -----------------------------------------------
CACHE_EMBEDDINGS = "embeddings"  # one split's pre-trained embeddings (`gloss embed`)
CACHE_ENCODER_HASH = "encoder-hash"  # the sha256 of a model folder's files, by their sizes and times
CACHE_KINDS = (CACHE_EMBEDDINGS, CACHE_ENCODER_HASH)
