"""jaxwm: ownership protection of datasets and models in JAX/Flax."""

import setuptools

setuptools.setup(
    name="jaxwm",
    version="0.1.0",
    description=(
        "Dataset and model watermarks, availability poisons, stealing and "
        "removal attacks, and ownership verification in JAX/Flax."
    ),
    packages=setuptools.find_packages(include=["jaxwm", "jaxwm.*"]),
    entry_points={"console_scripts": ["jaxwm = jaxwm.cli:main"]},
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.4.35",
        "flax>=0.10.0",
        "optax>=0.2.3",
        "chex>=0.1.87",
        "numpy>=1.26",
        "scipy>=1.11",
        "absl-py>=2.1",
        "ml_collections>=0.1.1",
        "orbax-checkpoint>=0.6.4",
        "scikit-learn>=1.3",
        "Pillow>=10.0",
        "tqdm>=4.66",
    ],
    extras_require={
        # Pictures (matplotlib) and a TensorBoard log without TensorFlow
        # (tensorboardX: numpy and protobuf). Without them every run still
        # runs and says once what it did not draw.
        "plots": ["matplotlib>=3.8", "tensorboardX>=2.6"],
        # nbclient, nbformat and ipykernel execute the colab/ notebooks;
        # pytest-xdist runs the suite on every core.
        "dev": ["pytest>=8.0", "pytest-xdist>=3.5", "matplotlib>=3.8",
                "tensorboardX>=2.6", "nbclient>=0.10", "nbformat>=5.9",
                "ipykernel>=6.29"],
        # importlib_resources: tfds imports it for dataset builders that
        # live in a package (jaxwm.data.streaming.write_array_record).
        "tfds": ["tensorflow-datasets>=4.9.6", "array_record>=0.5",
                 "importlib_resources>=6.0"],
        "bench": ["torch>=2.4"],
    },
)
