"""Training routers: data, fitting, calibration, operating points, evaluation and reports.

What `coe train` and `coe eval` run. Nothing here is imported by a running gateway: a trained
router is served from its artifact by `routers.trained` with numpy alone.

    datasets.py          labelled queries / routing outcomes, seeded splits
    loaders.py           read them from JSONL / CSV files
    embed_cache.py       embeddings of training texts cached on disk
    splits.py            fit / val / dev rows
    kinds.py             what `--router KIND` trains, typed hyper-parameters per kind
    tfidf.py             fit TF-IDF vocabularies (scikit-learn)
    fit_classifiers.py   fit category classifiers     fit_scorers.py   fit expert scorers
    fit_coe.py           fit the CoE category -> expert map under a budget
    calibration.py       temperature scaling, ECE, isotonic calibration
    operating.py         cost-weight sweeps and operating points (--max-cost, --min-quality)
    evaluation.py        metrics and curves (accuracy, AIQ, APGR, CPT, baselines)
    report.py            the metrics dicts a manifest stores     plots.py   their PNG
    train.py             `train`                                 evaluate.py `evaluate`
"""

from routers.training.datasets import DatasetError, LabelledQueries, RoutingOutcomes
from routers.training.evaluate import evaluate, evaluate_baselines
from routers.training.kinds import Hyper, TrainKind, hyper_for
from routers.training.splits import SplitSpec
from routers.training.train import TrainOptions, TrainResult, train

__all__ = [
    "DatasetError",
    "Hyper",
    "LabelledQueries",
    "RoutingOutcomes",
    "SplitSpec",
    "TrainKind",
    "TrainOptions",
    "TrainResult",
    "evaluate",
    "evaluate_baselines",
    "hyper_for",
    "train",
]
