"""README's "Adding a method", followed: its example method, written to a folder outside the package and
named in THINWIRE_METHODS, appears in `thinwire list` and passes the tests every registered method
passes (tests/test_methods.py, tests/test_conformance.py) with no test file of its own. A copy that
declares it cannot run under MPI has that reason reported as the skip.
"""

import os
import re
import subprocess
import sys

from launch import BIN, ROOT, run
from thinwire.algorithms.registry import PLUGIN_ENV

NO_MPI_REASON = "a toy that declares MPI out of scope"


def readme_example() -> str:
    """The first Python block of README's "Adding a method" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Adding a method"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_example_method_is_listed_and_passes_conformance(tmp_path):
    example = readme_example()
    folder = tmp_path / "my_methods"
    folder.mkdir()
    (folder / "toy_mean.py").write_text(example)
    no_mpi = example.replace('name = "toy-mean"', 'name = "toy-mean-no-mpi"\n'
                             f'    unsupported_modes: ClassVar[dict[str, str]] = {{"mpi": "{NO_MPI_REASON}"}}')
    assert no_mpi != example, "README's example no longer names its method 'toy-mean'"
    (folder / "toy_mean_no_mpi.py").write_text(no_mpi.replace("class ToyMean(", "class ToyMeanNoMPI("))
    env = {PLUGIN_ENV: str(folder)}

    listed = run([str(BIN / "thinwire"), "list"], tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert {"method\ttoy-mean", "method\ttoy-mean-no-mpi"} <= set(listed.stdout.splitlines())
    assert "toy-mean" not in run([str(BIN / "thinwire"), "list"], tmp_path).stdout  # only where it is named

    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / "pytest"), "tests/test_methods.py", "tests/test_conformance.py",
                           "-k", "toy-mean"], cwd=ROOT, capture_output=True, text=True, timeout=280,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env}, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]
    passed = set(re.findall(r"^PASSED (\S+)", proc.stdout, re.MULTILINE))
    for name in ("toy-mean", "toy-mean-no-mpi"):
        assert f"tests/test_conformance.py::test_logged_bytes_equal_stated_bits[{name}]" in passed
        assert f"tests/test_conformance.py::test_real_ranks_follow_the_simulator[{name}-gloo]" in passed
        for test in ("test_logged_bytes_equal_stated_bits_per_parameter", "test_method_decreases_the_loss",
                     "test_numpy_and_torch_namespaces_agree", "test_defaults_are_valid_and_unknown_params_named",
                     "test_performance_model_prices_what_the_method_sent"):
            assert any(p.startswith(f"tests/test_methods.py::{test}[") and name in p for p in passed), (test, name)
    assert "tests/test_conformance.py::test_real_ranks_follow_the_simulator[toy-mean-mpi]" in passed
    skipped = re.findall(r"^SKIPPED \[1\] (.*)$", proc.stdout, re.MULTILINE)
    assert len(skipped) == 1 and f"toy-mean-no-mpi does not run under mpi: {NO_MPI_REASON}" in skipped[0], skipped
    assert not re.search(r"^(FAILED|ERROR) ", proc.stdout, re.MULTILINE)


def test_a_missing_or_broken_method_file_is_named(tmp_path):
    missing = run([str(BIN / "thinwire"), "list"], tmp_path, env={PLUGIN_ENV: str(tmp_path / "nowhere")})
    assert missing.returncode == 2 and f"{PLUGIN_ENV} names" in missing.stderr and "does not exist" in missing.stderr
    (tmp_path / "broken.py").write_text("import thinwire.no_such_module\n")
    broken = run([str(BIN / "thinwire"), "list"], tmp_path, env={PLUGIN_ENV: str(tmp_path / "broken.py")})
    assert broken.returncode == 2 and len(broken.stderr.strip().splitlines()) == 1
    assert "broken.py" in broken.stderr and "ModuleNotFoundError" in broken.stderr


def test_a_method_file_may_not_take_a_registered_name(tmp_path):
    (tmp_path / "mine.py").write_text(readme_example().replace('name = "toy-mean"', 'name = "sgd"'))
    taken = run([str(BIN / "thinwire"), "list"], tmp_path, env={PLUGIN_ENV: str(tmp_path)})
    assert taken.returncode == 2 and "method name 'sgd' is taken by thinwire.algorithms.sgd.DenseSGD" in taken.stderr
