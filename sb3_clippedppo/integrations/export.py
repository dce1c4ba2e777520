"""Export a trained ClippedPPO policy to ONNX: one file that maps raw observations to the actions of
``model.predict(obs, deterministic=True)``, for deployment without Python RL dependencies (onnxruntime, or any ONNX
runtime, in C++, C#, Java, JavaScript or on a robot).

The file computes, in order:

1. ``VecNormalize``'s observation normalization, when given: ``clip((obs - mean) / sqrt(var + epsilon), -clip_obs,
   clip_obs)`` in float64, then float32, exactly as ``VecNormalize.normalize_obs`` (only its ``norm_obs_keys`` for
   ``Dict`` observations);
2. the policy's own forward pass, as ``predict`` runs it: Stable-Baselines3's preprocessing (float cast, images divided
   by 255 when ``normalize_images``, one-hot for ``Discrete`` and ``MultiDiscrete``, flattening), the running
   statistics of ``normalize_observations`` (:mod:`sb3_clippedppo.normalization`), the feature extractor, the actor's
   MLP and ``action_net``;
3. the deterministic action, as ``predict`` maps it: the Gaussian mean clipped to the ``Box`` bounds, the argmax for
   ``Discrete``, the per-dimension argmax for ``MultiDiscrete``, ``logit > 0`` for ``MultiBinary``.

Inputs: one per observation (``"observation"``, or one per key of a ``Dict`` space, named by the key), of shape
``(batch, *obs_shape)`` and the observation space's dtype (``Discrete``: int64 of shape ``(batch,)``), the batch size
free; with ``action_masks=True`` (``--action-masks``), a last input ``"action_mask"``, bool ``(batch, mask_dim)`` in
sb3-contrib's layout (True where an action is valid; :mod:`sb3_clippedppo.masking`), and the action is the most likely
valid one, as ``model.predict(obs, deterministic=True, action_masks=masks)``. Output ``"action"``:
``(batch, *action_shape)``, float32 for ``Box`` and ``MultiBinary``, int64 for ``Discrete`` and ``MultiDiscrete`` (the
dtypes ``predict`` returns). Image inputs have the layout of the model's observation space (channels first, as SB3's
``VecTransposeImage`` gives them). The file's metadata (``metadata_props``) records the observation and action spaces,
the input names and the package version.

Command for RL Baselines3 Zoo runs (the run folder's model zip and, if present, its ``vecnormalize.pkl``)::

    python -m sb3_clippedppo.export logs/clippedppo/HalfCheetah-v4_1 policy.onnx

Needs the ``export`` extra: ``pip install "sb3_clippedppo[export]"`` (onnx, onnxscript for ``torch.onnx``'s exporter,
onnxruntime).
"""

import argparse
import contextlib
import importlib
import json
import logging
import os
import pickle
import re
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3.common.vec_env import VecNormalize

from sb3_clippedppo import __version__
from sb3_clippedppo.clipped_ppo import ClippedPPO
from sb3_clippedppo.integrations.onnx_policy import (
    ACTION_MASK_INPUT,
    ACTION_OUTPUT,
    DeterministicPolicy,
    check_spaces,
    example_observations,
    input_dtype,
    input_names,
    space_description,
)

EXTRA = "export"
# The traced module and its inputs (names importable from here too, as before)
__all__ = ["ACTION_MASK_INPUT", "ACTION_OUTPUT", "DeterministicPolicy", "check_spaces", "example_observations",
           "export_onnx", "input_dtype", "input_names", "main", "space_description", "zoo_run_files"]  # fmt: skip


def require(module: str) -> Any:
    """
    Import ``module``, one of the ``export`` extra's packages.

    :raises ModuleNotFoundError: naming the extra to install, when it is missing.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"ONNX export needs {module!r}, which is not installed; install the export extra: "
            f'pip install "sb3_clippedppo[{EXTRA}]"'
        ) from error


def load_vec_normalize(vec_normalize: VecNormalize | str | os.PathLike | None) -> VecNormalize | None:
    """A ``VecNormalize`` (returned as is), or one unpickled from the ``.pkl`` file ``VecNormalize.save`` wrote (no
    environment attached: only its statistics are used)."""
    if vec_normalize is None or isinstance(vec_normalize, VecNormalize):
        return vec_normalize
    if not isinstance(vec_normalize, (str, os.PathLike)):
        raise TypeError(f"vec_normalize must be a VecNormalize, a path to its .pkl file or None, got {type(vec_normalize)}")
    with open(vec_normalize, "rb") as file:
        loaded = pickle.load(file)
    if not isinstance(loaded, VecNormalize):
        raise TypeError(f"{vec_normalize} does not hold a VecNormalize, got {type(loaded)}")
    return loaded


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence what ``torch.onnx``'s exporter logs and warns about itself (missing torchvision operators, deprecations
    inside torch) while it runs; warnings about the model still show."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*treespec.*LeafSpec", category=FutureWarning)
            # every input's batch axis is the same dimension, named once
            warnings.filterwarnings("ignore", message=r".*axis name.*shares the same shape constraints", category=UserWarning)
            yield
    finally:
        logger.setLevel(level)


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    vec_normalize: VecNormalize | str | os.PathLike | None = None,
    opset: int | None = None,
    metadata: dict[str, str] | None = None,
    action_masks: bool = False,
) -> Path:
    """
    Write ``model``'s deterministic policy as an ONNX file: raw observations in, the actions of
    ``model.predict(obs, deterministic=True)`` out, with ``vec_normalize``'s and ``normalize_observations``' statistics
    inside (see the module docstring for the inputs, outputs and steps). The file is written to a temporary file and
    renamed over ``path`` (a previous file there is replaced only by a complete one, as ``model.save`` does).

    :param model: a trained :class:`~sb3_clippedppo.ClippedPPO` (``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy`` or
        a custom SB3 policy that ``torch.onnx`` can trace; fast-path models included), on any device.
    :param path: the ``.onnx`` file to write.
    :param vec_normalize: the ``VecNormalize`` the model was trained in (or the path of its ``vecnormalize.pkl``), whose
        observation statistics the file applies first; None when observations reach the model unnormalized.
    :param opset: ONNX opset version (17 or above); None: the exporter's default.
    :param metadata: more ``metadata_props`` entries for the file (e.g. the environment's id).
    :param action_masks: a last input ``"action_mask"`` (bool ``(batch, mask_dim)``, True where an action is valid):
        the file returns the most likely valid action (invalid-action masking, :mod:`sb3_clippedppo.masking`).
    :return: the path written.
    :raises TypeError: for a model that is not a ClippedPPO, an unsupported observation or action space, or a
        ``vec_normalize`` of the wrong type.
    :raises ValueError: when ``vec_normalize``'s observation space differs from the model's.
    :raises ModuleNotFoundError: when the ``export`` extra (onnx, onnxscript) is missing.
    """
    if not isinstance(model, ClippedPPO):
        raise TypeError(f"export_onnx exports ClippedPPO models, got {type(model).__name__}")
    if opset is not None and (not isinstance(opset, int) or opset < 17):
        raise ValueError(f"opset must be None or an int >= 17 (torch.onnx's exporter supports 17 and above), got {opset!r}")
    onnx = require("onnx")
    require("onnxscript")
    module = DeterministicPolicy(model.policy, load_vec_normalize(vec_normalize), action_masks=action_masks)
    examples = example_observations(module.observation_space)
    arguments = tuple(th.as_tensor(examples[name]) for name in module.names)
    names = list(module.names)
    if module.action_masks:
        arguments, names = (*arguments, th.ones((2, module.mask_dim), dtype=th.bool)), [*names, ACTION_MASK_INPUT]
    batch = th.export.Dim("batch")
    with quiet_exporter():
        program = th.onnx.export(
            module,
            arguments,
            dynamo=True,
            input_names=names,
            output_names=[ACTION_OUTPUT],
            dynamic_shapes=(tuple({0: batch} for _ in arguments),),  # forward(*observations): one tuple of them
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
    if program is None:  # dynamo=True always returns the program
        raise RuntimeError("torch.onnx.export returned no program")
    proto = program.model_proto
    onnx.helper.set_model_props(
        proto,
        {
            "observation_space": json.dumps(space_description(module.observation_space)),
            "action_space": json.dumps(space_description(module.action_space)),
            "inputs": json.dumps(names),
            "vec_normalize": json.dumps(bool(module.vec_normalize)),
            "producer": f"sb3_clippedppo {__version__}",
            **(metadata or {}),
        },
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(descriptor)
    try:
        onnx.save(proto, temporary)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return target


def zoo_run_files(
    run_folder: str | os.PathLike, load_best: bool = False, load_checkpoint: int | None = None
) -> dict[str, Any]:
    """
    The files of an RL Baselines3 Zoo run folder (``logs/<algo>/<env name>_<id>``), as ``rl_zoo3.enjoy`` finds them:
    the model (``<env name>.zip``, ``best_model.zip`` or ``rl_model_<steps>_steps.zip``) and, in the ``<env name>``
    subfolder, ``vecnormalize.pkl`` (None when absent) and the run's ``env_kwargs`` (from ``args.yml``; empty when absent).

    :param run_folder: the run folder.
    :param load_best: take ``best_model.zip`` (the Zoo's ``--load-best``).
    :param load_checkpoint: take the checkpoint of this many steps (the Zoo's ``--load-checkpoint``).
    :return: ``{"model": Path, "vec_normalize": Path | None, "env_id": str | None, "env_kwargs": dict}``.
    :raises ValueError: when the folder does not exist or holds no such model.
    """
    folder = Path(run_folder)
    if not folder.is_dir():
        raise ValueError(
            f"run folder {folder} does not exist (expected an RL Zoo run folder such as logs/clippedppo/HalfCheetah-v4_1)"
        )
    env_name = re.sub(r"_\d+$", "", folder.name)
    if load_best:
        model = folder / "best_model.zip"
    elif load_checkpoint is not None:
        model = folder / f"rl_model_{load_checkpoint}_steps.zip"
    else:
        model = folder / f"{env_name}.zip"
    if not model.is_file():
        found = sorted(path.name for path in folder.glob("*.zip"))
        raise ValueError(f"no model {model.name} in {folder} (model files there: {found or 'none'})")
    params = folder / env_name
    vec_normalize = params / "vecnormalize.pkl"
    env_id, env_kwargs = None, {}  # type: ignore[var-annotated]
    if (params / "args.yml").is_file():
        import yaml

        with open(params / "args.yml") as file:
            args = dict(yaml.load(file, Loader=yaml.UnsafeLoader))  # the Zoo writes an OrderedDict of its arguments
        env_id, env_kwargs = args.get("env"), args.get("env_kwargs") or {}
    return {
        "model": model,
        "vec_normalize": vec_normalize if vec_normalize.is_file() else None,
        "env_id": env_id,
        "env_kwargs": env_kwargs,
    }


def check_model_file(path: Path) -> None:
    """
    Check that ``path`` is a model zip saved by ClippedPPO (``ClippedPPO.load`` would also read other algorithms' zips).

    :raises ValueError: when it is not a Stable-Baselines3 model zip.
    :raises TypeError: when another algorithm saved it.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a Stable-Baselines3 model zip ({error})") from error
    if "policy_objective" not in data:  # an argument of ClippedPPO that SB3's algorithms do not have (all versions)
        raise TypeError(
            f"{path} was not saved by ClippedPPO (another algorithm's model); export_onnx exports ClippedPPO models"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sb3_clippedppo.export RUN_FOLDER OUTPUT.onnx``: export an RL Zoo run (or a model zip) to ONNX."""
    parser = argparse.ArgumentParser(
        prog="python -m sb3_clippedppo.export",
        description="Export a ClippedPPO policy (an RL Baselines3 Zoo run folder, or a model .zip) to ONNX: raw observations "
        "in, deterministic actions out, the run's VecNormalize statistics included.",
    )
    parser.add_argument("run", help="RL Zoo run folder (e.g. logs/clippedppo/HalfCheetah-v4_1) or a model .zip")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument("--load-best", action="store_true", help="export best_model.zip (as the Zoo's enjoy)")
    parser.add_argument("--load-checkpoint", type=int, help="export the checkpoint of this many steps")
    parser.add_argument("--vec-normalize", help="a vecnormalize.pkl (default: the run folder's, if any)")
    parser.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    parser.add_argument("--action-masks", action="store_true",
                        help="a last input 'action_mask' (bool, batch x mask_dim): the most likely valid action")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        parser.error(f"{output} exists; pass --overwrite to replace it")
    try:
        if Path(args.run).is_file():
            files: dict[str, Any] = {"model": Path(args.run), "vec_normalize": None, "env_id": None, "env_kwargs": {}}
        else:
            files = zoo_run_files(args.run, args.load_best, args.load_checkpoint)
        check_model_file(files["model"])
        model = ClippedPPO.load(files["model"], device="cpu")
        vec_normalize = args.vec_normalize or files["vec_normalize"]
        metadata = {"env_id": str(files["env_id"]), "env_kwargs": json.dumps(files["env_kwargs"], default=str)}
        export_onnx(model, output, vec_normalize, args.opset, metadata=metadata if files["env_id"] else None,
                    action_masks=args.action_masks)  # fmt: skip
    except (ValueError, TypeError, ModuleNotFoundError) as error:
        parser.error(str(error))
    print(f"Wrote {output} (model {files['model']}, VecNormalize {vec_normalize or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
