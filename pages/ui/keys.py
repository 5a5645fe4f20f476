"""Every widget key and query-parameter name of the app, and the session-only state keys.

A widget bound to the address (`bind="query-params"`) uses its key as the parameter's name, so
`/browse?data=voc&voc=data/VOC2007&split=val&image=000042` restores that view: these strings
are part of every shared link, and changing one breaks the old links. Keys starting with "_"
live in the session only.
"""

from __future__ import annotations

# --- the dataset picker (sidebar; the Train form uses the same names after TRAIN) -------------
DATA_KIND = "data"  # demo | voc | coco
VOC_DIR = "voc"
COCO_JSON = "coco"
COCO_IMAGES = "images"
SPLIT = "split"
SELECTION = "_dataset_selection"  # the sidebar's (spec, split), or why there is none

# --- shared by several pages ------------------------------------------------------------------
IMAGE = "image"  # the image shown
CHECKPOINT = "ckpt"  # a shipped file name, or "run:<name>" for a run's best.pt
CHECKPOINT_UPLOAD = "checkpoint-upload"
PRESET = "preset"  # anchor preset, or "custom"
GRIDS = "grids"  # custom anchors: text fields
ZOOMS = "zooms"
SHAPES = "shapes"
LEVEL = "level"  # an anchor level
ANCHOR = "anchor"  # the selected anchor
IOU = "iou"  # matching threshold
ALPHA = "alpha"  # focal alpha and gamma
GAMMA = "gamma"
FIGURE_HTML = "-html"  # after a figure's name: its "save as HTML" button
URL_CHECKED = "_url_checked"  # the opening link's parameters were read

# --- Browse -------------------------------------------------------------------------------------
CLASSES = "cls"
OBJECTS = "objs"
SIZE = "size"
DIFFICULT = "hard"
PAGE = "pg"
PAGE_SIZE = "per"
SHOW_LARGEST = "largest"
SHOW_MULTILABEL = "multilabel"
OPEN_IMAGE = "open-"  # before a grid position: the thumbnail's button
AUGMENT_COPIES = "aug-copies"
AUGMENT_SEED = "aug-seed"
AUGMENT_SIZE = "aug-size"

# --- Anchors ------------------------------------------------------------------------------------
OVERLAY = "overlay"  # grid | level | cell
ROW = "row"
COL = "col"
COMPARE = "compare"  # presets to compare coverage with
SHOW_MATCHED = "anchors-matched"
SHOW_WORST = "anchors-worst"
ANCHORS_JSON = "anchors-json"  # the "download as JSON" button
DESIGNED_ANCHORS = "_anchors_designed"  # session only: (name, AnchorConfig.to_dict()) the page shows last

# --- Matching -----------------------------------------------------------------------------------
STEP = "step"  # step of the rule
NEGATIVES = "negatives"  # draw negative anchors
ONLY_TOUCHING = "matching-touching"
IMAGE_CHART = "matching-image"  # clickable figures: their selection picks the anchor
HEATMAP_CHART = "matching-heatmap"

# --- Losses -------------------------------------------------------------------------------------
LOSS_VIEW = "lossview"  # class | box | total
SYNTHETIC_POSITIVE = "synthetic-positive"
SYNTHETIC_NEGATIVE = "synthetic-negative"
SYNTHETIC_SPREAD = "synthetic-spread"

# --- Lesson -------------------------------------------------------------------------------------
STAGE = "stage"  # the stage shown
LESSON_GRID_MODE = "lesson-grid-mode"
LESSON_THRESHOLD = "lesson-threshold"
LESSON_LEVEL = "lesson-level"
LESSON_GAMMA = "lesson-gamma"
LESSON_NMS = "lesson-nms"
LESSON_SCORE = "lesson-score"
LESSON_MODEL = "lesson-model-"  # + the stage's model file: which model a stage shows (shipped or a run's)
LESSON_ML_THRESHOLD = "lesson-ml-threshold"
LESSON_GRID_SCORE = "lesson-grid-score"
LESSON_COMPARE_SCORE = "lesson-compare-score"
LESSON_LOSS_LEVEL = "lesson-loss-level"
LESSON_NMS_MODEL = "lesson-nms-model"

# --- Predictions / Evaluate ---------------------------------------------------------------------
SCORE = "score"  # score threshold
NMS_IOU = "nms"  # NMS IoU threshold
MAX_DETS = "maxdet"  # detections kept per image
ONLY = "only"  # classes shown
EVAL_IOU = "eval_iou"  # IoU a detection needs to count as a true positive
SUBSET = "subset"  # validation images the live mAP uses
NMS_STEP = "nmsstep"  # Predictions: the NMS step shown
DETECTIONS_CHART = "detections"  # Predictions: the clickable detections figure (also its file name)
CANDIDATES = "candidates"  # Predictions: the candidates table, a row picks one
SELECTED = "_prediction_candidate"  # Predictions: the candidate clicked or picked in the table
IMAGE_UPLOAD = "image_upload"  # Predictions: images of the user's own, without ground truth
OWN_IMAGE = "own_image"  # Predictions: which uploaded image is shown ("" : the dataset's)

# --- Train --------------------------------------------------------------------------------------
RUN = "run"  # the run watched
TRAIN = "train_"  # before the form's dataset picker keys: ?train_data=voc&train_voc=...
TRAIN_FORM = {  # TrainConfig field -> its widget's key in the form
    "model": "train_model",
    "backbone": "train_backbone",
    "pretrained": "train_pretrained",
    "init_backbone": "train_init",
    "anchors": "train_anchors",
    "coding": "train_coding",
    "loss": "train_loss",
    "alpha": "train_alpha",
    "gamma": "train_gamma",
    "epochs": "train_epochs",
    "lr": "train_lr",
    "batch_size": "train_batch",
    "image_size": "train_size",
    "freeze_epochs": "train_freeze",
    "weight_decay": "train_wd",
    "warmup": "train_warmup",
    "lr_divisors": "train_lr_div",
    "augment": "train_augment",
    "max_steps": "train_max_steps",
    "seed": "train_seed",
    "device": "train_device",
    "amp": "train_amp",
    "name": "train_name",
}
TRAIN_VIEW = "train_view"  # New run | Watch | Runs
TRAIN_COCO_VAL = "train_coco_val"
TRAIN_VAL_SPLIT = "train_val_split"
TRAIN_GPUS = "train_gpus"
TRAIN_COMPARE = "train_compare"
TRAIN_DELETE = "train_delete"
TRAIN_DELETE_SURE = "train_delete_sure"
TRAIN_CANCEL = "train-cancel-"  # before a run's name: its Cancel button
TRAIN_RESUME = "train-resume-"  # before a run's name: its Resume button
TRAIN_ANCHORS_FILE = "train_anchors_file"  # the form's anchors JSON uploader (not in the URL)
TRAIN_USE_RATE = "train-use-"  # before a finder run's name: its "use this rate" button
TRAIN_NOTICE = "_train_notice"  # (level, text) left by a button's callback
TRAIN_FOLLOWER = "_train_follower"  # the watched run's MetricsFollower
TRAIN_SNAPSHOTS = "train-snap-"  # before a run's name: the Watch view's epoch scrubber (pages/ui/snapshots.py)

# --- the epoch scrubber (pages/ui/snapshots.py), after the caller's key prefix ------------------
SNAPSHOT_EPOCH = "-epoch"  # the epoch slider
SNAPSHOT_IMAGE = "-image"  # the image choice
SNAPSHOT_LAST = "-last"  # session only: the last epoch offered (the slider follows new epochs from it)

# --- A/B comparison (Predictions, Evaluate): ?ckpt= is model A --------------------------------
CHECKPOINT_B = "ckpt_b"  # model B: a shipped file name or "run:<name>"; "none" (the default) compares nothing
SWAP_AB = "ab-swap"  # the "swap A and B" button
SPLIT_CHOSEN = "_split_chosen_"  # before a split widget's key: session only, the user (or the opening link) chose it
