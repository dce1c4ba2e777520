"""A wheel built from the repository, installed non-editable in a fresh virtual environment: the Zoo hook and the
shipped hyperparameters work there too (``.pth`` handling differs between install modes)."""

import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.zoo_utils import check, run

# Builds and installs a wheel, then runs the RL Zoo (zoo extra); tests/slow/conftest.py marks it slow.

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    check(run(["-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)], cwd=base, timeout=600))
    wheels = list(dist.glob("sb3_clippedppo-*.whl"))
    assert len(wheels) == 1
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    site_packages = Path(
        check(run(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base, python=python)).stdout.strip()
    )
    # The wheel first, into the empty venv: pip must not see the test environment's own install of the package
    # (under a non-editable install it would take it for this one, skip the wheel and leave the .pth out).
    check(run(["-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheels[0])], base, python=python))
    # Then the dependencies (torch, SB3, the Zoo, ...) come from the test environment, as a plain path entry after the
    # venv's own site-packages: that entry's .pth files (including this checkout's editable install) are not processed,
    # and its copy of sb3_clippedppo, if any, comes after the wheel's.
    (site_packages / "test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return base, python, site_packages


def test_wheel_contains_the_hook_and_the_hyperparameters(wheel_venv):
    _, _, site_packages = wheel_venv
    assert (site_packages / "sb3_clippedppo_zoo.pth").read_text().startswith("import sys;")
    assert (site_packages / "sb3_clippedppo" / "hyperparams" / "clippedppo.yml").is_file()


def test_train_with_the_installed_wheel(wheel_venv):
    base, python, site_packages = wheel_venv
    where = check(run(["-c", "import sb3_clippedppo; print(sb3_clippedppo.__file__)"], base, python=python)).stdout
    assert where.strip().startswith(str(site_packages))  # the wheel's copy, not this checkout
    result = check(run(["-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", "CartPole-v1", "-n", "512",
                        "--eval-freq", "-1", "--hyperparams", "n_envs:2", "batch_size:64"], base, python=python))  # fmt: skip
    shipped = site_packages / "sb3_clippedppo" / "hyperparams" / "clippedppo.yml"
    # the wheel's own file is read: "Loading hyperparameters from: <it>", or, for an environment it has no entry for
    # (CartPole-v1 since the shipped entries that only repeated the Zoo's were removed), "no entry for ... in <it>"
    read = (f"Loading hyperparameters from: {shipped}", f"no entry for CartPole-v1 in {shipped}")
    assert any(line in result.stdout for line in read), result.stdout[-3000:]
    assert (base / "logs" / "clippedppo" / "CartPole-v1_1" / "CartPole-v1.zip").exists()


def test_hook_off_in_the_wheel_install(wheel_venv):
    base, python, _ = wheel_venv
    result = run(["-m", "rl_zoo3.train", "--algo", "clippedppo", "--env", "CartPole-v1"], base, python=python,
                 env={"SB3_CLIPPEDPPO_ZOO_HOOK": "off"})  # fmt: skip
    assert result.returncode == 2 and "invalid choice: 'clippedppo'" in result.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="venv layout checked on Linux only")
def test_venv_is_fresh(wheel_venv):
    _, python, _ = wheel_venv
    assert python != sys.executable
