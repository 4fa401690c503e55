"""podzoo: a JAX/Flax, TPU-first model zoo and T5X-style training framework."""

import setuptools

CORE = [
    "jax>=0.10,<0.12",
    "flax>=0.12,<0.13",
    "optax>=0.2.6,<0.3",
    "orbax-checkpoint>=0.12,<0.13",
    "gin-config>=0.5",
    "sentencepiece>=0.2",
    "numpy>=1.26",
    "tensorboardX>=2.6",
]
TASKS = [
    "seqio>=0.0.20,<0.1",
    "tensorflow>=2.21,<2.22",
    "tensorflow-text>=2.21,<2.22",
    "tensorflow-datasets>=4.9",
    "importlib_resources>=6",  # TFDS builders import it; TFDS does not declare it
    "sacrebleu>=2.4,<3",
    "jiwer>=3.0,<5",
    "rouge-score>=0.1.2,<0.2",
    "num2words>=0.5.13,<0.6",
    "wordfreq>=3.1,<4",
    # The SPAE image data (tasks/spae): scikit-learn ships the handwritten digits, Pillow
    # draws the images.
    "scikit-learn>=1.4,<2",
    "pillow>=10,<14",
]
# Language identifiers that podzoo's LangID is compared with (tools/langid_compare.py).
LANGID_PEERS = ["langid>=1.1.6", "lingua-language-detector>=2.1,<3", "pycld2>=0.42"]
# The multi-model server (trainers/serving): the Starlette ASGI app, run by uvicorn.
SERVE = ["starlette>=1.0,<2", "uvicorn>=0.30,<1"]
# Serving beyond one machine: the placement's groups as Ray Serve deployments.
RAY = ["ray[serve]>=2.50,<3"]
TEST = [
    "pytest>=8",
    "scikit-image>=0.24",  # SSIM, the reference of SPAE's structural loss
    "httpx>=0.27,<1",  # the serving tests' HTTP client
]
# Offline preprocessing (python -m trainers.cache_tasks): SeqIO's cache job on Apache Beam.
# Not in [test]: Beam needs protobuf < 7, and sentencepiece 0.2.3 (whose vocabularies the
# README's figures come from) protobuf 7; install [beam] in an environment of its own, with
# sentencepiece < 0.2.3 (which retrains the cached vocabularies once).
BEAM = ["apache-beam[tfrecord]>=2.60,<3", "sentencepiece>=0.2,<0.2.3"]
# Plots of the experiments under tools/ (e.g. tools/moe_experiment.py).
EXPERIMENTS = ["matplotlib>=3.8"]
# The TensorBoard viewer for the event files runs write (tensorboardX writes them; nothing
# imports tensorboard). 2.21 is the release that goes with the tensorflow pinned above.
TENSORBOARD = ["tensorboard>=2.21"]

setuptools.setup(
    name="podzoo",
    version="0.1.0",
    description=__doc__,
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["model_zoo*", "trainers*", "tasks*", "tools*"]),
    package_data={"tasks": ["data/*.txt", "data/README.md"]},
    install_requires=CORE,
    extras_require={
        "tasks": TASKS,
        "langid_peers": LANGID_PEERS,
        "experiments": EXPERIMENTS,
        "beam": TASKS + BEAM,
        "serve": SERVE,
        "ray": SERVE + RAY,
        "test": TASKS + LANGID_PEERS + EXPERIMENTS + SERVE + RAY + TEST,
        "gpu": ["jax[cuda12]>=0.10,<0.12"],
        "tensorboard": TENSORBOARD,
    },
    entry_points={
        "console_scripts": [
            "podzoo-train=trainers.train:console_main",
            "podzoo-eval=trainers.eval:console_main",
            "podzoo-infer=trainers.infer:console_main",
        ]
    },
)
