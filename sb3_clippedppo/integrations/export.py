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
import copy
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
from typing import Any, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecNormalize
from torch import nn

from sb3_clippedppo import __version__
from sb3_clippedppo.buffers import with_feature_axis
from sb3_clippedppo.clipped_ppo import ClippedPPO
from sb3_clippedppo.masking.layout import mask_dim
from sb3_clippedppo.masking.logits import masked_distribution

EXTRA = "export"
OBSERVATION_INPUT = "observation"
ACTION_MASK_INPUT = "action_mask"
ACTION_OUTPUT = "action"
OBSERVATION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


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


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """
    Check that a policy with these spaces can be exported.

    :raises TypeError: for an observation space other than ``Box``, ``Discrete``, ``MultiDiscrete``, ``MultiBinary`` or a
        ``Dict`` of them, or an action space other than ``Box``, ``Discrete``, ``MultiDiscrete`` or ``MultiBinary``.
    """
    entries = observation_space.spaces.values() if isinstance(observation_space, spaces.Dict) else [observation_space]
    for space in entries:
        if not isinstance(space, OBSERVATION_SPACES):
            raise TypeError(
                "export_onnx supports Box, Discrete, MultiDiscrete and MultiBinary observations and a Dict of them, "
                f"got {observation_space}"
            )
    if not isinstance(action_space, ACTION_SPACES):
        raise TypeError(f"export_onnx supports Box, Discrete, MultiDiscrete and MultiBinary actions, got {action_space}")


def input_names(observation_space: spaces.Space) -> list[str]:
    """The ONNX input names: ``["observation"]``, or the keys of a ``Dict`` observation space (in its order)."""
    if isinstance(observation_space, spaces.Dict):
        return [str(key) for key in observation_space.spaces]
    return [OBSERVATION_INPUT]


def input_dtype(space: spaces.Space) -> np.dtype:
    """The dtype an input takes: the space's dtype (int64 for ``Discrete``, whose samples are NumPy int64)."""
    if isinstance(space, spaces.Discrete):
        return np.dtype(np.int64)
    return np.dtype(space.dtype)


def example_observations(observation_space: spaces.Space, batch_size: int = 2) -> dict[str, np.ndarray]:
    """
    A batch of observations of ``observation_space`` in the file's input layout (name -> array of shape
    ``(batch_size, *shape)`` and :func:`input_dtype`), sampled from the space with a fixed seed.
    """
    observation_space = copy.deepcopy(observation_space)
    observation_space.seed(0)
    batch = [observation_space.sample() for _ in range(batch_size)]
    if isinstance(observation_space, spaces.Dict):
        return {
            str(key): np.stack([np.asarray(sample[key]) for sample in batch]).astype(input_dtype(space))
            for key, space in observation_space.spaces.items()
        }
    return {OBSERVATION_INPUT: np.stack([np.asarray(sample) for sample in batch]).astype(input_dtype(observation_space))}


def space_description(space: spaces.Space) -> dict[str, Any]:
    """A JSON-serializable description of a space: type, shape, dtype, and ``n``/``nvec``/bounds where they apply
    (bounds only for vector ``Box`` spaces of at most 1,024 entries)."""
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {str(key): space_description(value) for key, value in space.spaces.items()}}
    description: dict[str, Any] = {"type": type(space).__name__, "shape": list(space.shape or ()), "dtype": str(space.dtype)}
    if isinstance(space, spaces.Discrete):
        description.update(n=int(space.n), start=int(space.start))
    elif isinstance(space, spaces.MultiDiscrete):
        description["nvec"] = space.nvec.tolist()
    elif isinstance(space, spaces.Box) and space.low.size <= 1024:
        description.update(low=space.low.tolist(), high=space.high.tolist())
    return description


class VecNormalizeObservations(nn.Module):
    """
    ``VecNormalize.normalize_obs`` as a module: ``clip((x - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` in
    float64, returned as float32 (bit for bit what SB3 computes in NumPy).

    :param mean: running mean of the observations, shape ``obs_shape``.
    :param var: running variance, shape ``obs_shape``.
    :param epsilon: ``VecNormalize.epsilon``.
    :param clip_obs: ``VecNormalize.clip_obs``.
    """

    mean: th.Tensor
    std: th.Tensor

    def __init__(self, mean: np.ndarray, var: np.ndarray, epsilon: float, clip_obs: float):
        super().__init__()
        self.register_buffer("mean", th.as_tensor(np.asarray(mean, dtype=np.float64)))
        self.register_buffer("std", th.as_tensor(np.sqrt(np.asarray(var, dtype=np.float64) + epsilon)))
        self.clip_obs = float(clip_obs)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return th.clamp((x.to(th.float64) - self.mean) / self.std, -self.clip_obs, self.clip_obs).to(th.float32)


def vec_normalize_modules(vec_normalize: VecNormalize | None, observation_space: spaces.Space) -> dict[str, nn.Module]:
    """
    One :class:`VecNormalizeObservations` per input that ``vec_normalize`` normalizes (keyed by input name).

    :raises TypeError: when ``vec_normalize`` is not a ``VecNormalize``.
    :raises ValueError: when its observation space differs from the model's.
    """
    if vec_normalize is None:
        return {}
    if not isinstance(vec_normalize, VecNormalize):
        raise TypeError(f"vec_normalize must be a VecNormalize, a path to its .pkl file or None, got {type(vec_normalize)}")
    if not vec_normalize.norm_obs:
        return {}
    if vec_normalize.observation_space != observation_space:
        raise ValueError(
            f"vec_normalize's observation space {vec_normalize.observation_space} differs from the model's {observation_space}"
        )
    arguments = dict(epsilon=vec_normalize.epsilon, clip_obs=vec_normalize.clip_obs)
    if isinstance(observation_space, spaces.Dict):
        keys = vec_normalize.norm_obs_keys or []
        per_key = cast(dict[str, RunningMeanStd], vec_normalize.obs_rms)
        return {str(key): VecNormalizeObservations(per_key[key].mean, per_key[key].var, **arguments) for key in keys}
    statistics = cast(RunningMeanStd, vec_normalize.obs_rms)
    return {OBSERVATION_INPUT: VecNormalizeObservations(statistics.mean, statistics.var, **arguments)}


class DeterministicPolicy(nn.Module):
    """
    Raw observations to the actions of ``model.predict(obs, deterministic=True)``: the module that
    :func:`export_onnx` exports (see the module docstring for the steps). It holds a CPU copy of the policy, in
    evaluation mode; the model is left as it was.

    :param policy: the model's policy (``model.policy``).
    :param vec_normalize: ``VecNormalize`` whose observation statistics come first, or None.
    :param action_masks: take the action masks as a last input (``Discrete``, ``MultiDiscrete``, ``MultiBinary``
        actions, a policy that offers this package's distributions).
    :raises TypeError: for ``action_masks`` with actions or a policy that cannot be masked.
    """

    low: th.Tensor
    high: th.Tensor

    def __init__(self, policy: BasePolicy, vec_normalize: VecNormalize | None = None, action_masks: bool = False):
        super().__init__()
        self.observation_space: spaces.Space = policy.observation_space
        self.action_space: spaces.Space = policy.action_space
        check_spaces(self.observation_space, self.action_space)
        self.names = input_names(self.observation_space)
        self.action_masks = bool(action_masks)
        if self.action_masks:  # the mask input: sb3_clippedppo.masking's layout
            self.mask_dim = mask_dim(self.action_space)
            if not getattr(policy, "offers_distributions", False):
                raise TypeError(f"action_masks=True needs a policy that offers sb3_clippedppo's distributions, got "
                                f"{type(policy).__name__}")  # fmt: skip
        self.vec_normalize = nn.ModuleDict(vec_normalize_modules(vec_normalize, self.observation_space))
        self.policy = copy.deepcopy(policy, without_sampled_noise(policy)).to("cpu")
        for parameter in self.policy.parameters():
            parameter.requires_grad_(False)
        if isinstance(self.action_space, spaces.Box):
            self.register_buffer("low", th.as_tensor(self.action_space.low, dtype=th.float32))
            self.register_buffer("high", th.as_tensor(self.action_space.high, dtype=th.float32))
        self.eval()

    def forward(self, *observations: th.Tensor) -> th.Tensor:
        """
        :param observations: one tensor per input name, ``(B, *obs_shape)`` in the input dtypes (then the action masks,
            ``(B, mask_dim)`` bool, with ``action_masks``).
        :return: actions ``(B, *action_shape)``.
        """
        masks = observations[-1] if self.action_masks else None
        observations = observations[: len(self.names)]
        inputs = {
            name: self.vec_normalize[name](x) if name in self.vec_normalize else x
            for name, x in zip(self.names, observations, strict=True)
        }
        obs: Any = inputs if isinstance(self.observation_space, spaces.Dict) else inputs[OBSERVATION_INPUT]
        obs = with_feature_axis(obs, self.observation_space)
        if getattr(self.policy, "use_sde", False):
            actions = gsde_mean_actions(self.policy, obs)
        else:
            distribution = self.policy.get_distribution(obs)  # type: ignore[operator]
            if masks is not None:
                distribution = masked_distribution(distribution, masks)
            actions = distribution.mode()
        actions = actions.reshape(-1, *self.action_space.shape)  # type: ignore[misc]
        if isinstance(self.action_space, spaces.Box):
            if self.policy.squash_output:  # gSDE's tanh-squashed actions, rescaled to the bounds (SB3's unscale_action)
                actions = self.low + 0.5 * (actions + 1.0) * (self.high - self.low)
            else:
                actions = th.minimum(th.maximum(actions, self.low), self.high)
        return actions


def gsde_mean_actions(policy: Any, obs: Any) -> th.Tensor:
    """
    A gSDE policy's deterministic actions, ``action_net`` of the actor's latent features (``tanh`` of it with
    ``squash_output``): what ``get_distribution(obs).mode()`` gives, without building SB3's state-dependent noise
    distribution, whose argument checks the ONNX exporter cannot trace.

    :param policy: a policy with ``use_sde=True``.
    :param obs: observations, a tensor ``(B, *obs_shape)`` or a dict of them.
    :return: the actions, ``(B, action_dim)``.
    """
    features = BasePolicy.extract_features(policy, obs, policy.pi_features_extractor)
    mean = policy.action_net(policy.mlp_extractor.forward_actor(features))
    return th.tanh(mean) if policy.squash_output else mean


def without_sampled_noise(policy: BasePolicy) -> dict[int, Any]:
    """
    A ``copy.deepcopy`` memo that copies a gSDE policy's distribution without the exploration matrices it sampled: they
    carry autograd history (SB3 samples them with ``rsample``), which ``deepcopy`` refuses, and deterministic actions
    do not use them. Empty for other policies.

    :param policy: the policy to copy.
    """
    distribution = getattr(policy, "action_dist", None)
    if distribution is None:
        return {}
    clean = copy.copy(distribution)
    for name, value in vars(distribution).items():
        if isinstance(value, (th.Tensor, th.distributions.Distribution)):
            setattr(clean, name, None)
    return {id(distribution): clean}


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
