"""docs/config.md is generated from the config models and cannot drift from them."""

from pathlib import Path

from nasspeech.config import RunConfig
from nasspeech.workflow.config_reference import render, sections

PAGE = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_the_checked_in_reference_is_the_generated_one():
    assert PAGE.read_text() == render(), (
        "docs/config.md is stale: run `python -m nasspeech.workflow.config_reference > "
        "docs/config.md`")


def test_the_reference_lists_every_field_with_its_default_and_constraints():
    page = render()
    for path, model in sections(RunConfig):
        for name in model.model_fields:
            assert f"| `{path + '.' if path else ''}{name}` |" in page, (path, name)
    assert "| `search.lr` | number | `0.025` | > 0.0 |" in page
    assert "| `train.data` | \"train\" \\| \"search+train\" | `\"train\"` |" in page
    assert "| `space.components[].cells` | integer | **required** | ≥ 1, ≤ 1000 |" in page
