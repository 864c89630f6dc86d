"""The names in run and sweep folders: defined once in scaling_study/layout.py and spelled nowhere else."""
import ast
from pathlib import Path

from scaling_study import layout

PACKAGE = Path(layout.__file__).parent


def _file_names() -> dict[str, str]:
    """layout's file names (value -> constant); folder names such as "trials" are also ordinary
    words (a status document's key, a report section), so only names with a suffix are sought."""
    return {v: k for k, v in vars(layout).items() if k.isupper() and isinstance(v, str) and "." in v}


def _literals(tree: ast.AST):
    """(line, text) of every string literal that is not a docstring."""
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_no_module_spells_a_folder_file_name_itself():
    names = _file_names()
    assert {"records.csv", "trials.csv", "asha_state.json", "job.yaml", "tuner.pkl"} <= set(names)
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{line} {text!r} (layout.{names[text]})"
                 for path in sorted(PACKAGE.rglob("*.py")) if path.name != "layout.py"
                 for line, text in _literals(ast.parse(path.read_text())) if text in names]
    assert not offenders, "import these names from scaling_study.layout: " + ", ".join(offenders)


def test_a_stop_request_names_its_trial_and_nothing_else_does():
    name = layout.stop_trial_file("t_00001")
    assert layout.trial_to_stop(name) == "t_00001"
    for other in (layout.STOP_SWEEP, layout.STATUS_FILE, layout.stop_trial_file(""), "stop-trial-t_1.json.tmp"):
        assert layout.trial_to_stop(other) is None, other
