"""The project's packaging: one dependency list, and a documented public API."""

import inspect
import re
import sys
from pathlib import Path

import pytest

import dtp_eqx

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_agrees_with_pyproject():
    yaml = pytest.importorskip("yaml")
    rattler = pytest.importorskip("rattler")
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    project = _pyproject()["project"]
    conda, pip = [], []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip.extend(dep["pip"])
        else:
            conda.append(dep)
    specs = {rattler.MatchSpec(dep).name.normalized: dep for dep in conda}  # each must parse
    assert set(specs) == {"python", "pip"}, "conda brings only python and pip"
    python = specs["python"].removeprefix("python")
    assert python == project["requires-python"], "the same minimum Python"
    # pyproject.toml is the one dependency list: pip installs the package with every extra
    assert len(pip) == 1
    match = re.fullmatch(r"-e \.\[([a-z,]+)\]", pip[0])
    assert match, f"expected '-e .[extras]', got {pip[0]!r}"
    assert set(match.group(1).split(",")) == set(project["optional-dependencies"])


def test_runtime_dependencies():
    deps = {re.split(r"[<>=!~ \[]", d)[0] for d in _pyproject()["project"]["dependencies"]}
    assert deps == {"jax", "equinox", "optax", "jaxtyping", "numpy", "tqdm", "matplotlib"}


PUBLIC = ["DTPLayer", "DTPNetwork", "compute_targets", "fit", "train_epoch", "evaluate",
          "reconstruction_loss", "layer_loss", "angles_to_backprop", "reconstruction_errors",
          "load_mnist", "load_fashion_mnist", "load_cifar10", "make_step"]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_names_document_shapes(name):
    obj = getattr(dtp_eqx, name)
    doc = inspect.getdoc(obj)
    assert doc and len(doc) > 200, f"{name} needs a docstring"
    assert re.search(r"shape|\(n, |\(batch", doc), f"{name}'s docstring gives no shapes"


def test_every_public_name_has_a_docstring():
    missing = [
        name for name in dir(dtp_eqx)
        if not name.startswith("_") and (inspect.isfunction(getattr(dtp_eqx, name))
                                         or inspect.isclass(getattr(dtp_eqx, name)))
        and not inspect.getdoc(getattr(dtp_eqx, name))
    ]
    assert missing == []


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_benchmark_scripts_parse():
    """The benchmark command answers --help and the GPU check is valid bash (both run
    for real only on demand: they time things, which tests must not)."""
    import subprocess

    bench = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert bench.returncode == 0, bench.stderr
    assert "--seeds" in bench.stdout and "--quick" in bench.stdout
    bad = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--repeats", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and "--repeats must be positive" in bad.stderr
    check = subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    for script, flag in (("rules_cost.py", "--quick"), ("vgg_cifar10.py", "--resume")):
        helped = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"],
                                capture_output=True, text=True, timeout=120)
        assert helped.returncode == 0 and flag in helped.stdout, helped.stderr
    bad = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "vgg_cifar10.py"), "--epochs", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and "--epochs=0 must be a positive integer" in bad.stderr


def test_api_reference_lists_every_public_name():
    text = (ROOT / "book" / "api.md").read_text()
    public = [n for n in dir(dtp_eqx)
              if not n.startswith("_") and not inspect.ismodule(getattr(dtp_eqx, n))]
    missing = [n for n in public if f"dtp_eqx.{n}" not in text]
    assert missing == [], f"book/api.md does not document {missing}"


def test_make_lab_opens_pages_as_notebooks_without_autosave():
    """`make lab` installs book/jupyterlab/overrides.json as JupyterLab's settings
    defaults: a double-clicked MyST page opens as a notebook (jupytext's viewer), and
    autosave, which would write a jupytext round trip back into the tracked .md, is off."""
    import json

    overrides = json.loads((ROOT / "book" / "jupyterlab" / "overrides.json").read_text())
    docmanager = overrides["@jupyterlab/docmanager-extension:plugin"]
    assert docmanager["defaultViewers"] == {"markdown": "Jupytext Notebook",
                                            "myst": "Jupytext Notebook"}
    assert docmanager["autosave"] is False
    makefile = (ROOT / "Makefile").read_text()
    assert "share/jupyter/lab/settings/overrides.json" in makefile
    assert re.search(r"^lab: .*\$\(LAB_SETTINGS\)", makefile, re.M)
