"""The Python examples in the docs run as written."""

import re
from pathlib import Path

import pytest
import yaml

from nasspeech.space import SearchSpace

ROOT = Path(__file__).resolve().parents[2]


def blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("doc", ["docs/compose.md"])
def test_python_blocks_run(doc, capsys):
    code = blocks(ROOT / doc, "python")
    assert code, f"{doc} has no python example"
    for block in code:
        exec(compile(block, doc, "exec"), {"__name__": "__doc_example__"})


def test_compose_yaml_matches_python_example():
    yaml_space = SearchSpace.model_validate(yaml.safe_load(blocks(ROOT / "docs/compose.md",
                                                                  "yaml")[0]))
    assert [c.name for c in yaml_space.components] == ["cnn", "seq"]
    assert yaml_space.components[1].handover.name == "mean_over_time"


def test_compose_error_example_is_what_the_code_says():
    """The unknown-op message shown in docs/compose.md (with ``...`` for the op list, which
    depends on the installed plugins) is the one the YAML example gives with ``lstm_5``."""
    from pydantic import ValidationError

    data = yaml.safe_load(blocks(ROOT / "docs/compose.md", "yaml")[0])
    data["components"][1]["ops"][0] = "lstm_5"
    with pytest.raises(ValidationError) as err:
        SearchSpace.model_validate(data)
    shown = blocks(ROOT / "docs/compose.md", "text")[0].strip().splitlines()
    assert len(shown) == 2
    for line in shown:
        assert line.split("...")[0].rstrip() in str(err.value)
