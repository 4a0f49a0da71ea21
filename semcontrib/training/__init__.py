"""Training the multitask classifier: labels, splits, augmentation, cached features, the loop, evaluation.

Modules, one concern each (data flows down the list)::

    labels        labels CSV + image folder -> LabelledSet (targets int64 N x T, -1 unlabelled), data_hash
    split         LabelledSet -> Split (train / val / test indices), stratified, by group on request
    augmentation  uint8 HxWx3 -> augmented view (random resized crop, flip, colour jitter)
    features      backbone output per image and view, cached on disk (frozen backbone), backbone_key
    concepts      region source -> concept areas per image (SIAM supervision)
    config        TrainConfig, TrainingData, StateFile, EpochJob, History: what a run takes and returns
    losses        the task-balanced loss and the SIAM concept loss
    epochs        ONE epoch loop (run_epochs) for head fitting and fine-tuning; device, AMP,
                  early stopping, per-epoch state and resume
    loop          fit_heads (cached features) and fine_tune (images in DataLoader workers) over run_epochs
    predict       head logits of image files (timed) or of cached features
    evaluation    metrics, reports, the comparison table across backbones (pure, no torch)
    run           train(...) and evaluate_model(...): the whole run
    sample        a small labelled set from the bundled photographs
    cli           the ``semcontrib train`` and ``semcontrib evaluate`` subcommands

Conventions: ``rgb`` is uint8 HxWx3; ``tensor`` is float NCHW normalised with the model's mean
and std; images are squashed (no crop) to ``input_size`` x ``input_size``, bicubic, as everywhere
in semcontrib. Missing labels are ``-1`` in ``targets``.

The loss is *task-balanced*: for each task the cross-entropy is averaged over the examples that
have a label for that task and divided by ``log(K_t)`` (the loss of a uniform guess over the
task's ``K_t`` classes), and these per-task losses are averaged with equal weight.

Library code reports progress through a ``progress(stage, done, total)`` callback and logs
through :mod:`logging`; only the CLI prints.
"""

from semcontrib.training.augmentation import AugmentConfig, augment_rgb, augment_view, crop_box
from semcontrib.training.concepts import ConceptAreas, concept_areas, label_areas
from semcontrib.training.features import (
    FeatureJob,
    FeatureSet,
    Progress,
    backbone_key,
    backbone_output_shape,
    extract_features,
    image_views,
    to_tensor,
)
from semcontrib.training.labels import (
    ID_COLUMNS,
    REPORT_COUNT_KEYS,
    LabelledSet,
    LabelReport,
    class_counts,
    data_hash,
    drop_unreadable,
    read_labels,
)
from semcontrib.training.loop import (
    CONCEPT_TARGETS,
    DEVICES,
    AugmentedImages,
    ConceptLoss,
    EpochJob,
    History,
    StateFile,
    TrainConfig,
    TrainingData,
    concept_loss,
    fine_tune,
    fit_heads,
    load_working_images,
    reset_heads,
    resolve_device,
    run_epochs,
    task_balanced_loss,
)
from semcontrib.training.predict import (
    PathPredictions,
    predict_concept_presence,
    predict_features,
    predict_paths,
    predict_paths_timed,
)
from semcontrib.training.run import ModelSetup, RunOptions, TrainOutcome, evaluate_model, state_path, train
from semcontrib.training.sample import build_sample_dataset
from semcontrib.training.split import Split, split_examples

__all__ = [
    "FeatureJob",
    "CONCEPT_TARGETS", "DEVICES", "ID_COLUMNS", "REPORT_COUNT_KEYS",
    "AugmentConfig", "AugmentedImages", "ConceptAreas", "ConceptLoss", "EpochJob", "FeatureSet", "History",
    "LabelReport", "LabelledSet", "ModelSetup", "PathPredictions", "Progress", "RunOptions", "Split",
    "StateFile", "TrainConfig", "TrainOutcome", "TrainingData",
    "augment_rgb", "augment_view", "backbone_key", "backbone_output_shape", "build_sample_dataset",
    "class_counts", "concept_areas", "concept_loss", "crop_box", "data_hash", "drop_unreadable",
    "evaluate_model", "extract_features", "fine_tune", "fit_heads", "image_views", "label_areas",
    "load_working_images", "predict_concept_presence", "predict_features", "predict_paths",
    "predict_paths_timed", "read_labels", "reset_heads", "resolve_device", "run_epochs", "split_examples",
    "state_path", "task_balanced_loss", "to_tensor", "train",
]
